"""The plan under construction, shared by every lowering pass."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from ftc.compiler.diagnostics import DiagnosticSink
from ftc.compiler.models.layout import Architecture
from ftc.compiler.models.resolve import ModelNotFound
from ftc.compiler.resolve import DERIVED, ResolvedRecipe


@dataclass
class Lowering:
    """The plan under construction; passes fill `plan` in order and may read what earlier passes wrote."""

    recipe: ResolvedRecipe
    out_dir: Path
    sink: DiagnosticSink
    plan: dict = field(default_factory=dict)
    auto: list = field(default_factory=list)
    derived: dict = field(default_factory=dict)  # plan field -> "derived" provenance of lowered values

    def rel(self, path: str | os.PathLike, key: str | None = None) -> str:
        """`path` as a path relative to the output folder. A relative `path` is relative to the file that set
        `key` (a parent recipe's paths stay relative to the parent; `--set` values to the working directory)."""
        target = Path(os.path.expanduser(str(path)))
        if not target.is_absolute():
            target = (self.recipe.location(key) if key else self.recipe.base_dir) / target
        return Path(os.path.relpath(os.path.abspath(target), self.out_dir)).as_posix()

    def decide(self, field_name: str, value: Any, reason: str) -> Any:
        self.auto.append({"field": field_name, "value": value, "reason": reason})
        self.derived[field_name] = DERIVED
        return value

    @cached_property
    def architecture(self) -> Architecture | None:
        """The model's architecture when it resolves without the network (catalog, cache, local config)."""
        resolved = self.recipe.resolved_model
        return None if resolved is None or isinstance(resolved, ModelNotFound) else resolved.architecture

    def span(self, key: str):
        """Where the recipe set `key` (its block when it was not written), for a diagnostic."""
        return self.recipe.span(key)


def plain_number(value) -> int | float:
    """3.0 -> 3, 0.5 -> 0.5: plan values read as the recipe wrote them."""
    return int(value) if float(value).is_integer() else float(value)
