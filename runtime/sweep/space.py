"""The search space of a plan's `sweep` key, sampled with optuna and written back as `--set` text.

A trial's values go back through the compiler as overrides in the language's own spelling
(`train.warmup=37 steps`, `train.warmup=5%`, `train.lr=3.1e-05`), so every trial is validated,
lowered and memory-checked exactly like a recipe written by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ftc.compiler.spelling import spell

DISTRIBUTIONS = ("loguniform", "uniform", "int", "choice")


@dataclass(frozen=True)
class Dimension:
    """One search dimension, in the plan's canonical units (ratio 0.03 for 3%, steps, tokens)."""

    target: str  # dotted recipe field, e.g. "train.lr"; also the optuna parameter name
    distribution: str  # loguniform | uniform | int | choice
    args: tuple  # (low, high) or the choices
    unit: str | None = None  # canonical unit of the values, None for plain numbers


def space_from_plan(sweep: dict) -> tuple[Dimension, ...]:
    """The plan's `sweep.space` as dimensions, in the recipe's order."""
    return tuple(Dimension(target, spec["distribution"], tuple(spec["args"]), spec.get("unit"))
                 for target, spec in (sweep.get("space") or {}).items())


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


def sample(trial, space: tuple[Dimension, ...]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Every dimension drawn once: (params by target, the matching `--set` overrides)."""
    params = {dim.target: suggest(trial, dim) for dim in space}
    return params, tuple(override(dim, params[dim.target]) for dim in space)


def override(dim: Dimension, value: Any) -> str:
    """`--set` text for one drawn value: `train.lr=3.1e-05`, `train.warmup=37 steps`, `train.warmup=5%`."""
    return f"{dim.target}={spell(value, dim.unit)}"
