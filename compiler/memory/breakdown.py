"""The memory breakdown `ftc estimate` shows, computed here (the command only prints it): from the values
lowering decided when the recipe compiled (what `plan.memory` records and the run uses), else from the recipe
with its autos decided against the budget."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MemoryReport:
    estimate: Any  # ftc.compiler.memory.estimate.Estimate, None when the architecture is not modeled
    setup: Any  # the settled TrainingSetup the estimate is of (None with no estimate)
    recipe_memory: Any  # RecipeMemory: budget, its source, host RAM, assumptions
    decisions: tuple  # auto decisions (Decision), the plan's when there is one


def memory_report(recipe, plan: dict | None = None) -> MemoryReport:
    """The breakdown of `recipe`; with its compiled `plan`, of exactly the values the plan holds."""
    from ftc.compiler.memory.auto import Decision, settled
    from ftc.compiler.memory.estimate import estimate
    from ftc.compiler.memory.recipe import setup_from_plan, setup_from_recipe

    rm = setup_from_plan(recipe, plan) if plan is not None else setup_from_recipe(recipe)
    if rm.setup is None:
        return MemoryReport(None, None, rm, ())
    setup, decisions = settled(rm)
    if plan is not None:
        decisions = tuple(Decision(a["field"], a["value"], a["reason"]) for a in plan["auto"])
    return MemoryReport(estimate(setup), setup, rm, decisions)
