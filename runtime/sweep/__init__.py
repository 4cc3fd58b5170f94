"""Hyper-parameter sweeps: an optuna study over the recipe's `sweep` block, each trial a compiled and
executed run (`ftc run RECIPE` on a recipe with a sweep; `--no-sweep` trains once)."""

from .errors import SweepError
from .runner import SweepOptions, SweepResult, TrialRecord, run_sweep
from .space import Dimension, override, sample, space_from_params, space_from_plan, spell, suggest

__all__ = ["Dimension", "SweepError", "SweepOptions", "SweepResult", "TrialRecord", "override", "run_sweep",
           "sample", "space_from_params", "space_from_plan", "spell", "suggest"]
