"""The examples' compiled folders (and strategy variants via --set) checked by DeepSpeed, accelerate and bash."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from unittest import mock

import pytest

from ftc.compiler.emit import emit
from ftc.compiler.pipeline import compile_recipe

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "examples").glob("*.ftspec"))
TINY = REPO / "examples" / "tiny.ftspec"
LORA = REPO / "examples" / "llama2-7b-lora-a100-40gb.ftspec"

VARIANTS = {
    **{p.stem: (p, ()) for p in EXAMPLES},
    "tiny-ddp-2": (TINY, ("hardware.gpus_per_node=2", "train.micro_batch=2", "distributed=ddp")),
    "tiny-zero2-2": (TINY, ("hardware.gpus_per_node=2", "train.micro_batch=2", "distributed=deepspeed", "distributed.zero=2")),
    "tiny-zero3-offload-2": (TINY, ("hardware.gpus_per_node=2", "train.micro_batch=2", "distributed=deepspeed", "distributed.zero=3",
                                    "distributed.offload_optimizer=cpu", "distributed.offload_params=cpu")),
    "tiny-fsdp-2": (TINY, ("hardware.gpus_per_node=2", "train.micro_batch=2", "distributed=fsdp")),
    "lora-zero1-2x4": (LORA, ("hardware.gpus_per_node=4", "hardware.nodes=2", "distributed=deepspeed",
                              "distributed.zero=1", "train.micro_batch=2")),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, tuple[dict, Path]]:
    out = {}
    for name, (recipe, overrides) in VARIANTS.items():
        folder = tmp_path_factory.mktemp(name)
        compiled = compile_recipe(recipe, overrides, out_dir=folder)
        assert compiled.plan is not None, (name, [d.message for d in compiled.diagnostics])
        for file_name, data in emit(compiled.plan).items():
            (folder / file_name).write_bytes(data)
        out[name] = (compiled.plan, folder)
    return out


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_generated_files_accepted_by_the_real_tools(name, built):
    import deepspeed.runtime.config as ds_runtime_config
    from accelerate.commands.config.config_args import ClusterConfig

    plan, folder = built[name]
    world = plan["distributed"]["world_size"]
    config = ClusterConfig.from_yaml_file(str(folder / "accelerate.yaml"))
    assert config.num_processes == world and config.num_machines == plan["launch"]["nnodes"]
    if plan["distributed"]["strategy"] == "deepspeed":
        ds = json.loads((folder / "ds_config.json").read_text())
        with mock.patch.object(ds_runtime_config.dist, "get_rank", return_value=0), \
                mock.patch.object(ds_runtime_config.dist, "get_world_size", return_value=world):
            parsed = ds_runtime_config.DeepSpeedConfig(ds)
        assert parsed.train_batch_size == plan["batch"]["global_batch"] == \
            plan["batch"]["micro_batch"] * plan["batch"]["grad_accum"] * world
        assert parsed.zero_optimization_stage == plan["distributed"]["zero"]
    else:
        assert not (folder / "ds_config.json").exists()
    for shell in ("launch.sh", "slurm.sbatch"):
        result = subprocess.run(["bash", "-n", str(folder / shell)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    if (folder / "hostfile").exists():
        from deepspeed.launcher.runner import _parse_hostfile

        assert list(_parse_hostfile((folder / "hostfile").read_text().splitlines()).values()) == \
            [plan["launch"]["nproc_per_node"]] * plan["launch"]["nnodes"]


def test_cpu_deepspeed_exports_ds_accelerator(built):
    plan, folder = built["tiny-zero2-2"]
    assert plan["launch"]["env"] == {"DS_ACCELERATOR": "cpu"}
    assert 'if [ -z "${DS_ACCELERATOR+x}" ]; then export DS_ACCELERATOR=cpu; fi' in (folder / "launch.sh").read_text()
