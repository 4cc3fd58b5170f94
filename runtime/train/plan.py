"""Reading `plan.json`: the only input of the runtime. Paths in the plan are relative to the
plan's folder, so the plan is resolved against that folder here, once."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import RunError

SCHEMA_VERSION = 1
REQUIRED = ("schema_version", "recipe", "model", "method", "data", "train", "batch", "precision",
            "hardware", "checkpoint", "tracking", "output", "launch")
# Every rank of a multi-process plan runs this same entry point; the launcher only starts the ranks.
LAUNCHERS = ("python", "accelerate", "torchrun", "deepspeed")


@dataclass(frozen=True)
class Plan:
    """A loaded plan: the parsed JSON (never mutated) and the folder its relative paths start from."""

    raw: dict[str, Any]
    folder: Path

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    @property
    def recipe_name(self) -> str:
        return str(self.raw["recipe"]["name"])

    def path(self, relative: str) -> Path:
        """A plan path resolved against the plan's folder (absolute paths are kept as they are)."""
        p = Path(relative)
        return p if p.is_absolute() else (self.folder / p).resolve()

    @property
    def runs_dir(self) -> Path:
        return self.path(self.raw["output"].get("runs_dir") or "runs")

    @property
    def world_size(self) -> int:
        """Processes the plan's batch arithmetic counts (all nodes together)."""
        return int((self.raw.get("distributed") or {}).get("world_size") or 1)

    @property
    def on_cpu(self) -> bool:
        return self.raw["hardware"].get("accelerator") == "cpu"


def load_plan(folder: Path) -> Plan:
    """Load and sanity-check `folder/plan.json`; raise RunError with a fix-it message on problems."""
    folder = Path(folder)
    file = folder / "plan.json" if folder.is_dir() else folder
    if not file.is_file():
        raise RunError(f"no plan.json in {folder} (compile the recipe first: ftc compile RECIPE)")
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunError(f"{file} is not a readable plan: {exc}") from None
    if not isinstance(raw, dict):
        raise RunError(f"{file} is not a plan: expected a JSON object")
    missing = [k for k in REQUIRED if k not in raw]
    if missing:
        raise RunError(f"{file} is missing {', '.join(missing)}; recompile the recipe")
    if raw["schema_version"] != SCHEMA_VERSION:
        raise RunError(f"{file} has schema version {raw['schema_version']}, this runtime reads "
                       f"version {SCHEMA_VERSION}; recompile the recipe with this ftc")
    launcher = raw["launch"].get("launcher", "python")
    if launcher not in LAUNCHERS:
        raise RunError(f"{file}: unknown launcher {launcher!r} ({' | '.join(LAUNCHERS)})")
    kind = raw["method"].get("kind")
    if kind not in ("full", "lora", "qlora"):
        raise RunError(f"{file}: unknown method {kind!r} (full | lora | qlora)")
    if kind in ("lora", "qlora") and not raw["method"].get("lora"):
        raise RunError(f"{file}: method {kind} needs its lora settings")
    if kind == "qlora" and not raw["method"].get("quantization"):
        raise RunError(f"{file}: method qlora needs its quantization settings")
    return Plan(raw=raw, folder=file.parent.resolve())
