"""The compile path in one call, for `ftc compile`, `ftc run` and `ftc data`: parse -> resolve -> check -> lower.

Imports no training library. Emitting files is separate (`ftc.compiler.emit.emit(plan)`), so a caller that only
needs the plan (the runtime, `ftc data`) does not render templates.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ftc.compiler.diagnostics import Diagnostic, DiagnosticSink
from ftc.compiler.load import SourceRegistry


@dataclass(frozen=True)
class Compiled:
    """What `compile_recipe` returns; unpacks as `(plan, diagnostics)`."""

    plan: dict | None  # None when any stage reported an error
    diagnostics: tuple[Diagnostic, ...]  # every stage's, sorted by position
    registry: SourceRegistry  # source texts, for rendering the diagnostics
    out_dir: Path  # the folder the plan's relative paths are relative to
    recipe: object = None  # the typed recipe (ResolvedRecipe), None when the front end could not build one

    def __iter__(self):
        return iter((self.plan, self.diagnostics))

    @property
    def ok(self) -> bool:
        return self.plan is not None


def default_out_dir(name: str) -> Path:
    """`build/<recipe name>/` under the working directory; the name is made safe as one path component."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "recipe"
    return Path("build") / safe


def compile_recipe(path: str | os.PathLike, overrides: tuple[str, ...] = (), *,
                   out_dir: str | os.PathLike | None = None) -> Compiled:
    """Compile the recipe at `path` (with `--set` overrides) into a plan for `out_dir`.

    `out_dir` matters because every path in the plan is relative to it; None means `build/<recipe name>/`.
    """
    from ftc.compiler.frontend import analyze
    from ftc.compiler.lower import lower

    analysis = analyze(path, tuple(overrides))
    recipe = analysis.recipe
    if not analysis.ok or recipe is None:
        target = Path(out_dir) if out_dir is not None else default_out_dir(recipe.name if recipe else Path(path).stem)
        return Compiled(None, analysis.diagnostics, analysis.registry, target, recipe)
    target = Path(out_dir) if out_dir is not None else default_out_dir(recipe.name)
    sink = DiagnosticSink(list(analysis.diagnostics))
    plan = lower(recipe, target, sink)
    if sink.has_errors:
        plan = None
    return Compiled(plan, tuple(sink.sorted()), analysis.registry, target, recipe)
