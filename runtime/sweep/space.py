"""The search space of a plan's `sweep.space`, and the optuna call that draws each dimension.

Pure optuna: turning a drawn value back into `--set` text for the next compile is the trial loop's job
(ftc.orchestrate.sweep), which sits above the compiler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

DISTRIBUTIONS = ("loguniform", "uniform", "int", "choice")


@dataclass(frozen=True)
class Dimension:
    """One search dimension, in the plan's canonical units (ratio 0.03 for 3%, steps, tokens)."""

    target: str  # dotted recipe field, e.g. "train.lr"; also the optuna parameter name
    distribution: str  # loguniform | uniform | int | choice
    args: tuple  # (low, high) or the choices
    unit: str | None = None  # canonical unit of the values, None for plain numbers


def space_from_plan(space: Mapping[str, Mapping[str, Any]]) -> tuple[Dimension, ...]:
    """The plan's `sweep.space` (field -> distribution, args, unit) as dimensions, in the recipe's order."""
    return tuple(Dimension(target, spec["distribution"], tuple(spec["args"]), spec["unit"])
                 for target, spec in space.items())


def space_from_params(params) -> tuple[Dimension, ...]:
    """The compiler's typed `SweepParam`s as dimensions (the same values `lower` writes into the plan)."""
    dims = []
    for p in params:
        units = {a.unit for a in p.args if hasattr(a, "unit")}
        args = tuple(getattr(a, "value", a) for a in p.args)
        dims.append(Dimension(p.target, p.distribution, args, units.pop() if units else None))
    return tuple(dims)


def suggest(trial, dim: Dimension) -> Any:
    """Draw one value with the optuna call that matches the distribution."""
    if dim.distribution == "loguniform":
        return trial.suggest_float(dim.target, float(dim.args[0]), float(dim.args[1]), log=True)
    if dim.distribution == "uniform":
        return trial.suggest_float(dim.target, float(dim.args[0]), float(dim.args[1]))
    if dim.distribution == "int":
        return trial.suggest_int(dim.target, int(dim.args[0]), int(dim.args[1]))
    if dim.distribution == "choice":
        return trial.suggest_categorical(dim.target, list(dim.args))
    raise ValueError(f"unknown distribution `{dim.distribution}` for {dim.target}")
