"""Lower a checked recipe to the runtime plan (docs/plan.md): an ordered tuple of passes over one builder.

Each pass reads the typed recipe and writes one part of the plan; a pass that finds a value it cannot
lower appends a located diagnostic (E05xx) and the plan is dropped at the end. The passes own:

- every `auto`: `distributed auto`, `zero = auto`, `micro_batch = auto`, `gradient_checkpointing = auto`,
  each recorded in `plan["auto"]` with its reason (the memory estimator's `choose` decides whenever there is a
  GPU budget and a known architecture; fixed rules otherwise, see docs/plan.md);
- the batch arithmetic, in one place: global = micro × grad_accum × data-parallel world, never floored;
- steps: declared (`max_steps`), counted from local data files when the count is exact, else "runtime";
- every path, rewritten relative to the output folder.

The passes live by what they lower: `sources` (recipe, model, method, data), `resources` (hardware,
strategy, batch, memory autos), `steps` (steps, schedule, precision), `outputs` (checkpoints, tracking,
sweep, launch, provenance); `builder` holds the plan under construction.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from ftc.compiler.diagnostics import DiagnosticSink
from ftc.compiler.lower.builder import Lowering
from ftc.compiler.lower.objective import lower_objective
from ftc.compiler.lower.outputs import (lower_checkpoint, lower_launch, lower_provenance, lower_sweep,
                                        lower_tracking)
from ftc.compiler.lower.resources import lower_batch, lower_hardware, lower_memory_autos, lower_strategy
from ftc.compiler.lower.sources import lower_data, lower_method, lower_model, lower_recipe
from ftc.compiler.lower.steps import lower_precision, lower_steps, lower_train
from ftc.compiler.resolve import ResolvedRecipe

PASSES: tuple[Callable[[Lowering], None], ...] = (
    lower_recipe,
    lower_model,
    lower_method,
    lower_data,
    lower_objective,
    lower_hardware,
    lower_strategy,
    lower_batch,
    lower_memory_autos,
    lower_steps,
    lower_train,
    lower_precision,
    lower_checkpoint,
    lower_tracking,
    lower_sweep,
    lower_launch,
    lower_provenance,
)


def lower(recipe: ResolvedRecipe, out_dir: str | os.PathLike, sink: DiagnosticSink) -> dict | None:
    """The plan for `recipe` compiled into `out_dir`, or None when lowering found errors (in `sink`)."""
    lw = Lowering(recipe, Path(os.path.abspath(out_dir)).resolve(), sink)
    errors_before = sum(1 for d in sink.items if d.is_error)
    for lowering_pass in PASSES:
        lowering_pass(lw)
        if lw.plan.get("batch", True) is None:
            return None  # everything after the batch depends on it
    if sum(1 for d in sink.items if d.is_error) > errors_before:
        return None
    return dict(sorted(lw.plan.items()))
