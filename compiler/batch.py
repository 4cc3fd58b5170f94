"""The batch arithmetic, with one owner: global = micro × grad_accum × data-parallel world, exactly.

The checker reports a problem at the field that causes it; lowering builds the plan's triple. Both
call `solve_batch`, so the two can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BatchTriple:
    global_batch: int
    micro_batch: int
    grad_accum: int
    data_parallel_world: int


@dataclass(frozen=True)
class BatchProblem:
    code: str  # E0501 | E0502 | E0503
    key: str  # the recipe field to point at
    message: str
    help: str
    label: str = ""


# Sequences per optimizer step at most (2**20; a million sequences of 2048 tokens is 2 B tokens a step,
# about 100× the largest published pretraining batches): keeps every divisor search small.
MAX_BATCH = 1_048_576


def divisors(n: int) -> list[int]:
    """The divisors of `n`, ascending, by trial division up to its square root."""
    small, large = [], []
    d = 1
    while d * d <= n:
        if n % d == 0:
            small.append(d)
            if d * d != n:
                large.append(n // d)
        d += 1
    return small + large[::-1]


def _ranks(world: int) -> str:
    return f"{world} rank{'s' if world != 1 else ''}"


def solve_batch(global_batch: int, micro: int | None, grad_accum: int | None, world: int) -> BatchTriple | BatchProblem:
    """`micro` or `grad_accum` may be None (derived from the others); both None is the caller's auto pass.

    Anything that does not divide is a problem to report, never a floor.
    """
    if global_batch % world:
        nearest = max(world, global_batch // world * world)
        advice = f"use a multiple of {world}, e.g. `global_batch = {nearest}`" if nearest <= MAX_BATCH else \
            f"use fewer GPUs: each rank needs a sequence per step, and `global_batch` is at most {MAX_BATCH}"
        return BatchProblem("E0501", "train.global_batch",
                            f"`global_batch = {global_batch}` is not divisible by the {world} data-parallel ranks",
                            advice, f"{global_batch} sequences over {_ranks(world)}")
    per_rank = global_batch // world
    if micro is None:
        if grad_accum is None:
            raise ValueError("solve_batch needs micro_batch or grad_accum")
        if per_rank % grad_accum:
            return BatchProblem("E0503", "train.grad_accum",
                                f"`grad_accum = {grad_accum}` does not divide the {per_rank} sequences per rank",
                                "remove `grad_accum`; it is derived from the batch sizes")
        micro = per_rank // grad_accum
    if per_rank % micro:
        below = [d for d in divisors(per_rank) if d <= micro]
        return BatchProblem("E0502", "train.micro_batch",
                            f"`global_batch = {global_batch}` is not micro_batch ({micro}) × grad_accum × "
                            f"{_ranks(world)} for any whole grad_accum",
                            f"use `micro_batch = {below[-1]}` (it must divide {per_rank})",
                            f"{per_rank} sequences per rank is not a multiple of {micro}")
    derived_accum = per_rank // micro
    if grad_accum is not None and grad_accum != derived_accum:
        return BatchProblem("E0503", "train.grad_accum",
                            f"batch sizes disagree: {micro} × {grad_accum} × {_ranks(world)} = "
                            f"{micro * grad_accum * world}, not global_batch = {global_batch}",
                            f"remove `grad_accum` (it is derived), or set it to {derived_accum}",
                            "inconsistent with global_batch")
    return BatchTriple(global_batch, micro, derived_accum, world)
