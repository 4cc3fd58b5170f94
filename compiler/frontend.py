"""The front end in one call: load (with extends) -> parse -> resolve (--set, types, defaults) -> decide (model,
automatic strategy) -> check."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ftc.compiler.check import run_checks
from ftc.compiler.decide import decide
from ftc.compiler.diagnostics import Diagnostic, DiagnosticSink
from ftc.compiler.load import SourceRegistry, load_chain
from ftc.compiler.resolve import ResolvedRecipe, resolve


@dataclass(frozen=True)
class Analysis:
    recipe: ResolvedRecipe | None  # None when a file of the chain could not be read or parsed
    diagnostics: tuple[Diagnostic, ...]  # sorted by position
    registry: SourceRegistry  # source texts, for rendering

    @property
    def ok(self) -> bool:
        return self.recipe is not None and not any(d.is_error for d in self.diagnostics)


def analyze(path: str | Path, overrides: tuple[str, ...] = ()) -> Analysis:
    """Every diagnostic of the recipe at `path`, collected across all stages, and the typed recipe."""
    sink = DiagnosticSink()
    registry = SourceRegistry()
    chain = load_chain(Path(path), sink, registry)
    recipe = None
    if chain.root is not None and chain.root.recipe is not None and not chain.broken:
        recipe = resolve(chain, tuple(overrides), sink, registry)
        if recipe is not None:
            recipe = decide(recipe)
            run_checks(recipe, sink)
    return Analysis(recipe, tuple(sink.sorted()), registry)
