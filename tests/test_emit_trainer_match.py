"""ds_config.json agrees with the TrainingArguments the runtime builds from the same plan.

transformers' DeepSpeed integration compares every concrete value of the config with the Trainer's arguments
(`HfTrainerDeepSpeedConfig.trainer_config_process`) and refuses to start on a mismatch; this runs that comparison
at test time for compiled plans, with the plan's world size.
"""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import pytest

from ftc.compiler.emit import emit
from ftc.compiler.pipeline import compile_recipe

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "examples" / "tiny.ftspec"
TWO = ("hardware.gpus_per_node=2", "train.micro_batch=2", "distributed=deepspeed")
VARIANTS = {
    "zero2": TWO + ("distributed.zero=2",),
    "zero3-offload-bf16": TWO + ("distributed.zero=3", "distributed.offload_optimizer=cpu",
                                 "distributed.offload_params=cpu", "model.dtype=bf16", "train.weight_decay=0.1"),
    "zero1-clip": TWO + ("distributed.zero=1", "train.max_grad_norm=0.5", "train.grad_accum=2"),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_ds_config_matches_training_arguments(name, tmp_path):
    pytest.importorskip("transformers")
    trainer = pytest.importorskip("ftc.runtime.train.trainer")
    from transformers import TrainingArguments
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    from ftc.plan import load_plan

    compiled = compile_recipe(TINY, VARIANTS[name], out_dir=tmp_path)
    assert compiled.plan is not None, [d.message for d in compiled.diagnostics]
    files = emit(compiled.plan)
    for file_name, data in files.items():  # the runtime points TrainingArguments at the folder's ds_config.json
        (tmp_path / file_name).write_bytes(data)
    ds = json.loads(files["ds_config.json"])
    args = trainer.training_arguments(load_plan(tmp_path), tmp_path / "run", has_eval=True, report_to=[])
    world = compiled.plan["distributed"]["world_size"]
    with mock.patch.object(TrainingArguments, "world_size", new_callable=mock.PropertyMock, return_value=world):
        config = HfTrainerDeepSpeedConfig(ds)
        config.trainer_config_process(args)
    assert config.mismatches == []
    # And the comparison is real: a config written for another world size is refused.
    with mock.patch.object(TrainingArguments, "world_size", new_callable=mock.PropertyMock, return_value=world * 2):
        config = HfTrainerDeepSpeedConfig(ds)
        config.trainer_config_process(args)
    assert any("train_batch_size" in m for m in config.mismatches)
