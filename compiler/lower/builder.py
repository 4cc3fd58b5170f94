"""What every lowering pass shares: the recipe, the output folder, and the logs a pass appends to (its
diagnostics, its `auto` decisions, the provenance of derived values). No pass writes another's section:
each returns its own, frozen, and `lower` assembles the plan from them once."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from ftc.compiler.diagnostics import DiagnosticSink
from ftc.compiler.models.layout import Architecture
from ftc.compiler.models.resolve import ModelNotFound
from ftc.compiler.resolve import DERIVED, ResolvedRecipe

Section = Mapping[str, Any]  # one lowered plan section (a JSON object), read-only


def frozen(value: Any) -> Any:
    """A JSON value made read-only: objects become mappings that cannot be changed, arrays tuples."""
    if isinstance(value, dict):
        return MappingProxyType({k: frozen(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(frozen(v) for v in value)
    return value


def thawed(value: Any) -> Any:
    """The JSON value of a frozen section (mappings -> dicts, tuples -> lists), for the assembled plan."""
    if isinstance(value, Mapping):
        return {k: thawed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thawed(v) for v in value]
    return value


@dataclass
class Lowering:
    """The recipe being lowered and the append-only logs of its passes."""

    recipe: ResolvedRecipe
    out_dir: Path
    sink: DiagnosticSink
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

    @property
    def architecture(self) -> Architecture | None:
        """The model's architecture, as the decide stage resolved it (None when it is not known)."""
        resolved = self.recipe.resolved_model
        return None if resolved is None or isinstance(resolved, ModelNotFound) else resolved.architecture

    def span(self, key: str):
        """Where the recipe set `key` (its block when it was not written), for a diagnostic."""
        return self.recipe.span(key)


def plain_number(value) -> int | float:
    """3.0 -> 3, 0.5 -> 0.5: plan values read as the recipe wrote them."""
    return int(value) if float(value).is_integer() else float(value)
