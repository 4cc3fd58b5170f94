"""Lower a checked recipe to the runtime plan (docs/plan.md): passes that each return one frozen section,
assembled into the plan once at the end.

A pass is a function of the recipe (through the `Lowering` context) and of the sections before it, never of
a plan under construction; what it cannot lower it reports as a located diagnostic (E05xx), and the plan is
dropped at the end. The passes own:

- every `auto`: `distributed auto`, `zero = auto`, `micro_batch = auto`, `gradient_checkpointing = auto`,
  each recorded in `plan["auto"]` with its reason (the memory estimator's `choose` decides whenever there is a
  GPU budget and a known architecture; fixed rules otherwise, see docs/plan.md);
- the batch arithmetic, in one place: global = micro × grad_accum × data-parallel world, never floored;
- steps: declared (`max_steps`), counted from local data files when the count is exact, else "runtime";
- every path, rewritten relative to the output folder.

The passes live by what they lower: `sources` (recipe, model, method, data), `resources` (hardware,
strategy, batch, memory autos), `steps` (steps, train, precision), `outputs` (checkpoints, tracking, output,
sweep, launch, provenance); `builder` holds the context and the logs they append to.
"""

from __future__ import annotations

import os
from pathlib import Path
from ftc.compiler.diagnostics import DiagnosticSink
from ftc.compiler.lower.builder import Lowering, thawed
from ftc.compiler.lower.objective import data_with_prompt_length, lower_objective
from ftc.compiler.lower.outputs import (lower_checkpoint, lower_launch, lower_output, lower_provenance, lower_sweep,
                                        lower_tracking)
from ftc.compiler.lower.resources import lower_batch, lower_hardware, lower_memory_autos, lower_strategy
from ftc.compiler.lower.speed import train_switches
from ftc.compiler.lower.sources import lower_data, lower_method, lower_model, lower_recipe
from ftc.compiler.lower.steps import lower_precision, lower_steps, lower_train
from ftc.compiler.resolve import ResolvedRecipe


def lower(recipe: ResolvedRecipe, out_dir: str | os.PathLike, sink: DiagnosticSink) -> dict | None:
    """The plan for `recipe` compiled into `out_dir`, or None when lowering found errors (in `sink`)."""
    lw = Lowering(recipe, Path(os.path.abspath(out_dir)).resolve(), sink)
    errors_before = sum(1 for d in sink.items if d.is_error)
    schema_version, ftc_version, recipe_section = lower_recipe(lw)
    model, method, data = lower_model(lw), lower_method(lw), lower_data(lw)
    data, objective = data_with_prompt_length(lw, data), lower_objective(lw)
    hardware = lower_hardware(lw)
    distributed = lower_strategy(lw)
    batch = lower_batch(lw, hardware, method, distributed)
    if batch is None:
        return None  # everything after the batch depends on it
    memory = lower_memory_autos(lw, hardware, method, distributed, batch)
    steps = lower_steps(lw, data, batch)
    switches = train_switches(lw, memory.distributed, hardware)
    train = lower_train(lw, data, steps, memory.gradient_checkpointing, switches)
    sections = {
        "schema_version": schema_version, "ftc_version": ftc_version, "recipe": recipe_section,
        "model": model, "method": method, "data": data, "objective": objective, "hardware": hardware,
        "distributed": memory.distributed, "batch": memory.batch, "memory": memory.memory, "steps": steps,
        "train": train, "precision": lower_precision(model, method), "checkpoint": lower_checkpoint(lw, steps),
        "tracking": lower_tracking(lw), "output": lower_output(lw), "sweep": lower_sweep(lw),
        "launch": lower_launch(hardware, memory.distributed),
    }
    sections["provenance"] = lower_provenance(lw)  # last: every pass has recorded what it derived
    sections["auto"] = tuple(lw.auto)
    if sum(1 for d in sink.items if d.is_error) > errors_before:
        return None
    return thawed(dict(sorted(sections.items())))
