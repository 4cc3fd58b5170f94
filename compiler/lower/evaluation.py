"""`eval_batch`: sequences per rank in evaluation. `auto` is the largest that fits the budget beside the
training state (the estimator's eval pass: no activations kept for backward, but the whole logits); without
an estimate, the training micro-batch, which fits whenever training does."""

from __future__ import annotations

from ftc.compiler.lower.builder import Lowering
from ftc.compiler.memory import auto
from ftc.compiler.schema import AUTO


def lower_eval_batch(lw: Lowering, lowered: dict) -> int:
    """`eval_batch` for the `batch` section. Runs after the memory autos (the eval pass shares the GPU with what
    training keeps, `lowered` holds the sections so far), before the plan's estimate is taken."""
    from ftc.compiler.check import has_eval_data
    from ftc.compiler.lower.resources import _estimator_failed, _why_no_estimate

    batch = lowered["batch"]
    value = lw.recipe.value("train.eval_batch", AUTO)
    if value is AUTO:
        if not has_eval_data(lw.recipe):
            value = batch["micro_batch"]  # nothing is evaluated: no decision to report
        else:
            try:
                choice = auto.choose_eval_batch(lw.recipe, lowered)
            except Exception as exc:  # noqa: BLE001 - a bug there must not become a traceback
                _estimator_failed(lw, exc)
                choice = None
            if choice is None:
                choice = (batch["micro_batch"], f"{_why_no_estimate(lowered['hardware'])}: the training micro-batch")
            value = lw.decide("train.eval_batch", *choice)
    return int(value)
