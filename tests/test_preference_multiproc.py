"""Preference training on two CPU processes over gloo: DPO with LoRA under DDP and DeepSpeed ZeRO-2, and
full fine-tuning under ZeRO-3, where TRL prepares the frozen reference copy with the same engine settings
(partitioned like the policy)."""

from __future__ import annotations

import json
import math

import pytest

from multiproc_util import compile_recipe, explain, ftc_run, run_dir

pytestmark = pytest.mark.slow


def _port() -> str:
    from ftc.runtime.launch.ports import free_port

    return str(free_port())


@pytest.mark.parametrize("strategy, full", [("ddp", False), ("zero2", False), ("zero3-optimizer-offload", True)],
                         ids=["ddp-lora", "zero2-lora", "zero3-full"])
def test_dpo_on_two_ranks(tmp_path, strategy, full):
    folder = compile_recipe(tmp_path, f"mp-dpo-{strategy}", strategy, full=full, max_steps=3, every=3,
                            objective="objective dpo {}")
    plan = json.loads((folder / "plan.json").read_text())
    assert plan["objective"]["reference"] == ("model" if full else "base")
    result = ftc_run(folder, "--run-id", "r", timeout=900, MASTER_PORT=_port())
    assert result.returncode == 0, explain(result)
    run = run_dir(folder, "r")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    assert any("rewards_margins" in r for r in records)
    assert (run / "checkpoints" / "checkpoint-3" / "ftc-manifest.json").is_file()
    assert (run / "final").is_dir()
