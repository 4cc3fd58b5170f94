"""The decide stage, between resolve and check: what the recipe leaves to ftc and the later stages all need,
decided once. The model is resolved to its architecture (local folder, Hugging Face cache or catalog; never
the network), then `distributed auto` for adapters on several ranks is decided by the memory estimate.

Resolve is pure (the recipe's text and types); this stage does the I/O and the estimation, so that reading a
ResolvedRecipe afterwards never does either. Check and lower receive the recipe this stage returns.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ftc.compiler.resolve import ResolvedRecipe


@dataclass(frozen=True)
class Decisions:
    model: Any  # ResolvedModel | ModelNotFound | None (no model name)
    auto_strategy: tuple[str, str] | None  # (strategy, reason) from the memory estimate, else None


def decide(recipe: ResolvedRecipe) -> ResolvedRecipe:
    """`recipe` with its model resolved and its automatic strategy decided (`recipe.decided`)."""
    from ftc.compiler.models.resolve import resolve_model

    name = recipe.value("model")
    model = resolve_model(name, recipe.location("model"), recipe.value("model.revision")) \
        if isinstance(name, str) else None
    with_model = replace(recipe, decided=Decisions(model, None))
    if not recipe.needs_auto_strategy():
        return with_model
    from ftc.compiler.memory.auto import choose_strategy  # estimates the recipe as DDP, on its resolved model

    return replace(recipe, decided=Decisions(model, choose_strategy(with_model)))
