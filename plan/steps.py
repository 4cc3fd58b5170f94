"""Step arithmetic both sides of the plan must do alike: the compiler counts steps per epoch from local files,
the runtime turns an interval given in epochs into optimizer steps once it has prepared the data. One
definition here, so the two can never count an epoch differently."""

from __future__ import annotations

import math


def trainer_steps_per_epoch(rows: int, micro: int, grad_accum: int, world: int) -> int:
    """Optimizer steps per epoch as transformers' Trainer counts them (no drop_last)."""
    per_rank = math.ceil(rows / world)
    batches = math.ceil(per_rank / micro)
    return max(math.ceil(batches / grad_accum), 1)


def epochs_to_steps(epochs: float, rows: int, micro: int, grad_accum: int, world: int) -> int:
    """An interval of `epochs` (a fraction allowed) in optimizer steps, at least one."""
    return max(math.ceil(float(epochs) * trainer_steps_per_epoch(rows, micro, grad_accum, world)), 1)
