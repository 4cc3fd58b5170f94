"""What a sweep needs inside training and from optuna: the search space and its draws (space.py), the study,
sampler and pruner (study.py), and the Trainer callback that reports to optuna and prunes (callback.py).
The trial loop that compiles and runs each trial is above the runtime, in ftc.orchestrate.sweep."""

from .errors import SweepError
from .space import Dimension, space_from_params, space_from_plan, suggest

__all__ = ["Dimension", "SweepError", "space_from_params", "space_from_plan", "suggest"]
