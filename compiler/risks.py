"""Recipes are data, often reviewed from a pull request. What a reviewer must see before running one:
the recipe's project (the git repository holding it, or its folder outside a repository), an `extends`
that leaves it (refused unless allowed), and the risk lines `ftc compile` and `ftc diff` print: a model
whose own Python code runs (`trust_remote_code = true`) and data read from outside the project."""

from __future__ import annotations

import os
from pathlib import Path

ALLOW_ENV = "FTC_ALLOW_OUTSIDE_PROJECT"  # set by `ftc --allow-outside-project`


def project_root(recipe: Path) -> Path:
    """The nearest folder above `recipe` holding `.git`, else the recipe's own folder."""
    folder = Path(recipe).resolve().parent
    for candidate in (folder, *folder.parents):
        if (candidate / ".git").exists():
            return candidate
    return folder


def inside(path: Path, root: Path) -> bool:
    try:
        Path(path).resolve().relative_to(root)
        return True
    except ValueError:
        return False


def outside_allowed() -> bool:
    return os.environ.get(ALLOW_ENV, "") not in ("", "0")


def _literal_prefix(entry: str) -> str:
    """A glob's folder part: `data/*.jsonl` reads from `data/`."""
    parts = Path(entry).parts
    kept = []
    for part in parts:
        if any(ch in part for ch in "*?["):
            break
        kept.append(part)
    return str(Path(*kept)) if kept else "."


def risks(plan: dict, plan_dir: Path, project: Path) -> list[str]:
    """One line per risk of a compiled plan (its relative paths are relative to `plan_dir`)."""
    lines = []
    model = plan.get("model") or {}
    if model.get("trust_remote_code"):
        name = str(model.get("name_or_path"))
        shown = (Path(plan_dir) / name).resolve().as_posix() if model.get("local") else name
        lines.append(f"model.trust_remote_code = true: Python code shipped with {shown} runs when the model loads")
    data = plan.get("data") or {}
    for key in ("train", "eval"):
        entries = data.get(key) or []
        for entry in [entries] if isinstance(entries, str) else entries:
            if not isinstance(entry, str) or entry.startswith("hf:"):
                continue
            path = (Path(plan_dir) / _literal_prefix(entry)).resolve()
            if not inside(path, project):
                lines.append(f"data.{key} reads {path.as_posix()}, outside the project {project.as_posix()}")
    return lines


def plan_project(plan: dict, plan_dir: Path) -> Path:
    """The project of the recipe a plan was compiled from (its last source is the root recipe)."""
    sources = (plan.get("recipe") or {}).get("sources") or []
    if sources and isinstance(sources[-1], dict) and sources[-1].get("path"):
        return project_root(Path(plan_dir) / sources[-1]["path"])
    return project_root(Path(plan_dir) / "plan.json")
