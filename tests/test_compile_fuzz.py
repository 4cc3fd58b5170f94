"""Random but valid-looking --set combinations on the examples: compile never raises; a plan always validates
and emits; anything else is a diagnostic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftc.compiler.emit import emit
from ftc.compiler.pipeline import compile_recipe

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "examples").glob("*.ftspec"))
SCHEMA = json.loads((REPO / "plan" / "schema.json").read_text())

CHOICES = {
    "train.global_batch": ["1", "7", "8", "16", "96", "128", "1000"],
    "train.micro_batch": ["auto", "1", "2", "3", "8", "64"],
    "train.grad_accum": ["1", "2", "5"],
    "train.epochs": ["1", "0.5", "3 epochs"],
    "train.warmup": ["0 steps", "10 steps", "3%", "50%"],
    "train.eval_every": ["10 steps", "1 epochs"],
    "train.optimizer": ["adamw", "sgd", "paged_adamw_8bit", "adafactor"],
    "train.gradient_checkpointing": ["auto", "true", "false"],
    "hardware.gpus_per_node": ["1", "2", "3", "8"],
    "hardware.nodes": ["1", "2"],
    "hardware.accelerator": ["cpu", "gpu"],
    "distributed": ["auto", "none", "ddp", "deepspeed", "fsdp"],
    "distributed.zero": ["auto", "0", "1", "2", "3"],
    "distributed.offload_optimizer": ["none", "cpu"],
    "distributed.offload_params": ["none", "cpu"],
    "data.packing": ["true", "false"],
    "data.eval_split": ["0%", "10%"],
    "checkpoint.every": ["5 steps", "1 epochs"],
    "model.dtype": ["bf16", "fp16", "fp32"],
    "method": ["full", "lora", "qlora"],
}


def test_compile_never_raises(tmp_path):
    pytest.importorskip("hypothesis")
    jsonschema = pytest.importorskip("jsonschema")
    from hypothesis import HealthCheck, given, settings, strategies as st

    validator = jsonschema.Draft202012Validator(SCHEMA)
    keys = sorted(CHOICES)

    @settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(EXAMPLES),
           st.lists(st.sampled_from(keys), max_size=6, unique=True).flatmap(
               lambda chosen: st.tuples(*[st.sampled_from([f"{k}={v}" for v in CHOICES[k]]) for k in chosen])))
    def check(example, overrides):
        overrides = tuple(sorted(overrides, key=lambda o: (not o.startswith(("method=", "distributed=")), o)))
        result = compile_recipe(example, overrides, out_dir=tmp_path / "out")
        if result.plan is None:
            assert any(d.is_error for d in result.diagnostics)
            return
        validator.validate(result.plan)
        batch = result.plan["batch"]
        assert batch["micro_batch"] * batch["grad_accum"] * batch["data_parallel_world"] == batch["global_batch"]
        files = emit(result.plan)
        assert ("ds_config.json" in files) == (result.plan["distributed"]["strategy"] == "deepspeed")

    check()
