"""`load_plan`: the runtime's one way to read a plan. The file is checked against schema.json before anything
uses it, so a truncated, hand-edited or newer plan stops with the file, the JSON path and the broken rule,
before any model loads. jsonschema is imported here only, so the compile path never pays for it."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from .contract import PLAN_FILE, SCHEMA_VERSION, UserError
from .sections import Plan

MAX_REPORTED = 5
RECOMPILE = "recompile the recipe with this ftc (ftc compile RECIPE)"


class PlanError(UserError):
    """A plan.json the runtime cannot use: missing, unreadable, or not what schema.json describes."""


@lru_cache(maxsize=1)
def read_schema() -> dict[str, Any]:
    return json.loads(resources.files(__package__).joinpath("schema.json").read_text(encoding="utf-8"))


def _json_path(error) -> str:
    """Where the broken rule applies, as a JSON path; a missing key is named in the path itself."""
    path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [k for k in error.validator_value if k not in error.instance]
        if missing:
            path += f".{missing[0]}"
    return path


def plan_errors(raw: Any) -> list[str]:
    """Every way `raw` breaks the schema, as `JSON-path: message (rule R)`, in document order."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(read_schema())
    found = sorted(validator.iter_errors(raw), key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{_json_path(e)}: {e.message} (rule `{e.validator}`)" for e in found]


def _version_problem(raw: dict) -> str | None:
    version = raw.get("schema_version")
    if isinstance(version, int) and not isinstance(version, bool) and version != SCHEMA_VERSION:
        age = "newer" if version > SCHEMA_VERSION else "older"
        return (f"$.schema_version: version {version} is {age} than the version this ftc reads "
                f"({SCHEMA_VERSION}) (rule `const`)")
    return None


def _read(file: Path) -> Any:
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(f"{file}: cannot read the plan: {exc}") from None
    try:
        return text, json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanError(f"{file}:{exc.lineno}:{exc.colno}: not valid JSON, truncated or damaged ({exc.msg}); "
                        f"{RECOMPILE}") from None


def load_plan(path: str | Path) -> Plan:
    """The plan in `path` (a compiled folder or its plan.json), validated and frozen; PlanError otherwise."""
    path = Path(path)
    file = path / PLAN_FILE if path.is_dir() else path
    if not file.is_file():
        raise PlanError(f"no {PLAN_FILE} in {path} (compile the recipe first: ftc compile RECIPE)")
    text, raw = _read(file)
    return _validated(raw, text, file.parent.resolve(), file)


def plan_from_json(raw: Any, folder: str | Path) -> Plan:
    """A plan held in memory (a recipe compiled and not written), validated like a file; paths resolve
    against `folder`, the folder it was compiled for."""
    folder = Path(folder)
    return _validated(raw, json.dumps(raw, indent=2, sort_keys=True), folder.resolve(), folder / PLAN_FILE)


def _validated(raw: Any, text: str, folder: Path, file: Path) -> Plan:
    problems = [_version_problem(raw)] if isinstance(raw, dict) and _version_problem(raw) else plan_errors(raw)
    if problems:
        more = f"\n  ... and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED else ""
        listed = "\n".join(f"  {file}: {p}" for p in problems[:MAX_REPORTED])
        raise PlanError(f"{file} is not a plan this ftc can run; {RECOMPILE}:\n{listed}{more}")
    return Plan.from_json(raw, text, folder)
