"""`ftc run` itself, measured: the peak of live tensors while the Trainer trains the tiny example (eval
on start, packed and padded batches, the runtime's model loading and optimizer) against the estimate
the compiler makes for the same recipe.

Live tensors are counted from the start of `trainer.train()` by a callback with the rule CUDA's
`max_memory_allocated` follows (bench/live_tensors.py). On CPU the Trainer's AdamW is the for-loop
one, whose update temporaries are smaller than CUDA's foreach: the optimizer step is never the peak
here, so that does not flatter the comparison.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from live_tensors import LiveTensorBytes  # noqa: E402

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "examples" / "tiny.ftspec"


class CountLiveTensors(transformers.TrainerCallback):
    def __init__(self) -> None:
        self.counter = LiveTensorBytes()

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.counter.track(list(model.parameters()) + list(model.buffers()))
        self.counter.__enter__()

    def on_train_end(self, args, state, control, **kwargs):
        self.counter.__exit__(None, None, None)


@pytest.mark.parametrize("overrides", [(), ("method=full",), ("train.gradient_checkpointing=true",),
                                       ("model.dtype=bf16",), ("method=qlora", "method.quant=nf4")],
                         ids=["as-shipped", "full", "checkpointing", "bf16", "qlora"])
def test_run_peak_matches_the_estimate(tmp_path, overrides, one_torch_thread):
    from ftc.cli import main as ftc
    from ftc.compiler.frontend import analyze
    from ftc.compiler.memory.estimate import estimate
    from ftc.compiler.memory.recipe import setup_from_plan
    from ftc.runtime.train import RunOptions, execute, load_plan
    from ftc.runtime.train.cli import quiet_libraries

    quiet_libraries()
    sets = ("train.max_steps=2 steps", "train.warmup=1 steps", "checkpoint.every=100 steps",
            f'output.runs_dir="{tmp_path / "runs"}"') + overrides
    assert ftc(["compile", str(RECIPE), "-o", str(tmp_path / "build")]
               + [arg for s in sets for arg in ("--set", s)]) == 0
    plan = load_plan(tmp_path / "build")
    callback = CountLiveTensors()
    with open(os.devnull, "w") as quiet:
        result = execute(plan, RunOptions(run_id="r", callbacks=(callback,)), out=quiet)
    assert result.exit_code == 0
    setup = setup_from_plan(analyze(RECIPE, sets).recipe, plan.raw).setup
    estimated, measured = estimate(setup).tensor_peak_bytes, callback.counter.peak
    error = (estimated - measured) / measured
    assert -0.05 <= error <= 0.12, f"estimate {estimated:,} vs measured {measured:,} ({error:+.1%})"
