"""`--resume auto|PATH`: find the checkpoint to continue from and the run folder it belongs to.
Only checkpoints whose manifest verifies are used; broken ones are skipped with a warning."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from .checkpoints import MANIFEST, newest_verified, verify
from .errors import RunError
from ftc.plan import Plan


@dataclass(frozen=True)
class ResumePoint:
    run_dir: Path
    checkpoint: Path
    step: int


def _warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr, flush=True)


def find_resume(plan: Plan, resume: str | None) -> ResumePoint | None:
    """None means start fresh. `auto` looks through this recipe's runs, newest first."""
    if not resume:
        return None
    if resume == "auto":
        parent = plan.runs_dir / plan.recipe_name
        runs = sorted((p for p in parent.iterdir() if p.is_dir()), key=lambda p: p.name, reverse=True) \
            if parent.is_dir() else []
        for run_dir in runs:
            found = newest_verified(run_dir / "checkpoints", warn=_warn)
            if found is not None:
                return ResumePoint(run_dir, found.path, found.step)
        print(f"ftc: no complete checkpoint under {parent}; starting a new run", file=sys.stderr)
        return None
    path = Path(resume).resolve()
    if (path / MANIFEST).is_file() or path.name.startswith("checkpoint-"):
        problem = verify(path)
        if problem is not None:
            raise RunError(f"cannot resume from {path}: {problem}")
        return ResumePoint(path.parent.parent, path, int(path.name.split("-")[-1]))
    if (path / "checkpoints").is_dir():
        found = newest_verified(path / "checkpoints", warn=_warn)
        if found is None:
            raise RunError(f"no complete checkpoint in {path / 'checkpoints'}")
        return ResumePoint(path, found.path, found.step)
    raise RunError(f"--resume {resume}: not a checkpoint folder or a run folder")
