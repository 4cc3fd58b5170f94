"""The generated files, checked by the real consumers: DeepSpeed, accelerate, bash, the JSON Schema."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from unittest import mock

import pytest

from ftc.compiler.emit import emit
from ftc.compiler.emit.canonical import HEADER

from plan_cases import cases, plan_with

CASES = cases()
SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "plan" / "schema.json").read_text())


@pytest.fixture(scope="module")
def emitted() -> dict[str, dict[str, bytes]]:
    return {name: emit(plan) for name, plan in CASES.items()}


def _write(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


@pytest.mark.parametrize("name", sorted(CASES))
def test_plan_case_validates_against_schema(name):
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator(SCHEMA).validate(CASES[name])


@pytest.mark.parametrize("name", sorted(CASES))
def test_bytes_are_canonical(name, emitted):
    files = emitted[name]
    assert files == emit(CASES[name])
    for file_name, data in files.items():
        text = data.decode("utf-8")
        assert "\r" not in text and text.endswith("\n"), file_name
        assert "/work/" not in text and "/tmp/" not in text and "/home/" not in text, file_name
        if file_name.endswith((".sh", ".yaml", ".sbatch")) or file_name == "hostfile":
            first = [line for line in text.splitlines()[:2] if not line.startswith("#!")][0]
            assert first == "# " + HEADER.format(source=CASES[name]["recipe"]["source"]), file_name
    lock = json.loads(files["ftc.lock"])
    import hashlib
    assert lock["artifacts"] == {n: hashlib.sha256(d).hexdigest() for n, d in files.items() if n != "ftc.lock"}


def _ds_config(world: int, config: dict):
    import deepspeed.runtime.config as ds_runtime_config

    # DeepSpeedConfig reads the world size from deepspeed.comm; simulate the plan's world without a process group.
    with mock.patch.object(ds_runtime_config.dist, "get_rank", return_value=0), \
            mock.patch.object(ds_runtime_config.dist, "get_world_size", return_value=world):
        return ds_runtime_config.DeepSpeedConfig(config)


@pytest.mark.parametrize("name", sorted(n for n, p in CASES.items() if p["distributed"]["strategy"] == "deepspeed"))
def test_ds_config_accepted_by_deepspeed(name, emitted):
    plan = CASES[name]
    text = emitted[name]["ds_config.json"].decode()
    assert '"auto"' not in text
    config = json.loads(text)
    parsed = _ds_config(plan["distributed"]["world_size"], config)
    assert parsed.world_size == plan["distributed"]["world_size"]
    assert parsed.train_batch_size == plan["batch"]["global_batch"]
    assert parsed.train_micro_batch_size_per_gpu == plan["batch"]["micro_batch"]
    assert parsed.gradient_accumulation_steps == plan["batch"]["grad_accum"]
    assert parsed.zero_optimization_stage == plan["distributed"]["zero"]
    assert parsed.bfloat16_config.enabled == (plan["precision"]["mixed"] == "bf16")
    assert parsed.float16_config.enabled == (plan["precision"]["mixed"] == "fp16")
    assert parsed.gradient_clipping == plan["train"]["max_grad_norm"]
    # The same file under a different world size is what DeepSpeed asserts on; ftc's lowering never writes it.
    with pytest.raises(AssertionError):
        _ds_config(plan["distributed"]["world_size"] + 1, config)


@pytest.mark.parametrize("name", sorted(CASES))
def test_accelerate_yaml_loads_in_cluster_config(name, emitted, tmp_path):
    from accelerate.commands.config.config_args import ClusterConfig

    plan = CASES[name]
    path = tmp_path / "accelerate.yaml"
    path.write_bytes(emitted[name]["accelerate.yaml"])
    config = ClusterConfig.from_yaml_file(str(path))
    expected = {"none": "NO", "ddp": "MULTI_GPU", "fsdp": "FSDP", "deepspeed": "DEEPSPEED"}[plan["distributed"]["strategy"]]
    assert config.distributed_type.value == expected
    assert config.num_processes == plan["distributed"]["world_size"]
    assert config.num_machines == plan["launch"]["nnodes"]
    if plan["distributed"]["world_size"] > 1:
        assert config.use_cpu is False  # MULTI_GPU + use_cpu: false is what really starts N processes on CPU
    if expected == "DEEPSPEED":
        assert config.mixed_precision is None  # accelerate rejects it next to deepspeed_config_file
        assert config.deepspeed_config["deepspeed_config_file"] == "ds_config.json"
    else:
        assert config.mixed_precision == plan["precision"]["mixed"]


def test_hostfile_parses_in_deepspeed(emitted):
    from deepspeed.launcher.runner import _parse_hostfile

    lines = emitted["zero3_offload_2x8"]["hostfile"].decode().splitlines()
    assert _parse_hostfile(lines) == {"node-0": 8, "node-1": 8}


@pytest.mark.parametrize("name", sorted(CASES))
def test_shell_files_pass_bash_n(name, emitted, tmp_path):
    folder = _write(tmp_path, emitted[name])
    for file_name in ("launch.sh", "slurm.sbatch"):
        result = subprocess.run(["bash", "-n", str(folder / file_name)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


NASTY = [
    "x$(touch PWNED_1)",
    "y`touch PWNED_2`",
    "z'; touch PWNED_3; echo '",
    'w"; touch PWNED_4; echo "',
    "v\ntouch PWNED_5\n",
    "u;touch PWNED_6 && $HOME ${IFS} \\ *",
]

STUB = """#!/usr/bin/env bash
{ printf '%s\\0' "$(basename "$0")" "$@"; printf '<end>\\0'; } >> "$FTC_STUB_LOG"
"""


@pytest.mark.parametrize("case", ["single_cpu", "ddp_cpu_2", "zero3_offload_2x8"])
def test_recipe_strings_never_reach_the_shell(case, tmp_path):
    """A name, model, path or run folder full of shell syntax runs nothing but the launcher."""
    nasty = "".join(NASTY)
    plan = plan_with(**{k: v for k, v in CASES[case].items()})
    plan["recipe"]["name"] = nasty
    plan["recipe"]["source"] = "../" + nasty + ".ftspec"
    plan["model"]["name_or_path"] = nasty
    plan["data"]["train"] = [nasty]
    plan["output"]["runs_dir"] = nasty
    plan["launch"]["master_addr"] = nasty
    plan["launch"]["env"] = {"DS_ACCELERATOR": nasty}
    plan["launch"]["launcher"] = nasty  # an unknown launcher is refused by launch.sh, never run
    work = tmp_path / "work"
    folder = _write(tmp_path / "out dir $(touch PWNED_DIR)", emit(plan))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("python", "accelerate", "torchrun", "deepspeed", "srun", "scontrol"):
        (bin_dir / tool).write_text(STUB)
        (bin_dir / tool).chmod(0o755)
    (bin_dir / "scontrol").write_text(STUB + "echo localhost\n")
    work.mkdir()
    log = tmp_path / "argv.log"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "FTC_STUB_LOG": str(log), "HOME": str(work), "SLURM_JOB_NODELIST": "n1",
           "SLURM_JOB_ID": "7", "FTC_RUN_ID": "run-1"}
    launchers = ["accelerate", "torchrun", "deepspeed"] + (["python"] if plan["distributed"]["world_size"] == 1 else [])
    refused = subprocess.run(["bash", str(folder / "launch.sh")], cwd=work, capture_output=True, text=True, env=env)
    assert refused.returncode == 2 and "unknown launcher" in refused.stderr
    for launcher in launchers:
        result = subprocess.run(["bash", str(folder / "launch.sh"), "--resume", "auto"], cwd=work, capture_output=True,
                                text=True, env={**env, "FTC_LAUNCHER": launcher})
        assert result.returncode == 0, result.stderr
    result = subprocess.run(["bash", str(folder / "slurm.sbatch")], cwd=work, capture_output=True, text=True,
                            env={**env, "FTC_LAUNCHER": "deepspeed"})
    assert result.returncode == 0, result.stderr
    records, current = [], []
    for item in log.read_text().split("\0")[:-1]:
        if item == "<end>":
            records.append(current)
            current = []
        else:
            current.append(item)
    tools = [r[0] for r in records if r[0] not in ("scontrol",)]
    assert tools == launchers + ["srun"]
    for record in records:
        if record[0] in launchers:
            assert record[-4:-2] == ["--plan", str(folder)] and record[-2:] == ["--resume", "auto"]
    leaked = sorted(p.name for p in tmp_path.rglob("PWNED*")) + sorted(p.name for p in Path.cwd().glob("PWNED*"))
    assert leaked == []
    assert not list(work.iterdir())


def test_header_cannot_break_out_of_its_comment():
    plan = plan_with(recipe={"source": "a\nrm -rf /\r.ftspec"})
    text = emit(plan)["launch.sh"].decode()
    assert text.splitlines()[1] == "# Code generated by ftc from a?rm -rf /?.ftspec. DO NOT EDIT."


PROBE = """
from accelerate import PartialState
state = PartialState(cpu=True)  # what TrainingArguments(use_cpu=True) does
print(f"<RANK {state.process_index} OF {state.num_processes} {state.backend}>", flush=True)
"""


@pytest.mark.slow
def test_cpu_accelerate_yaml_really_starts_n_processes(emitted, tmp_path):
    """On a CPU-only machine the generated MULTI_GPU config starts 2 workers that form one gloo group."""
    import socket
    import sys

    folder = _write(tmp_path / "c", emitted["ddp_cpu_2"])
    (tmp_path / "probe.py").write_text(PROBE)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    accelerate = Path(sys.executable).with_name("accelerate")
    result = subprocess.run([str(accelerate), "launch", "--config_file", str(folder / "accelerate.yaml"),
                             "--main_process_port", str(port), str(tmp_path / "probe.py")],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    ranks = sorted(re.findall(r"<(RANK \d+ OF \d+ \w+)>", result.stdout))  # the workers' lines may interleave
    assert ranks == ["RANK 0 OF 2 gloo", "RANK 1 OF 2 gloo"]


@pytest.mark.parametrize("change", [
    {"files": {"accelerate": "a.yaml\"; touch x; \""}},
    {"env": {"BAD NAME": "x"}},
    {"hosts": ["node-0;touch x"], "nnodes": 2, "files": {"deepspeed": "ds_config.json", "hostfile": "hostfile"}},
])
def test_emitter_refuses_plan_values_it_cannot_write_safely(change):
    plan = plan_with(launch=change)
    if "hosts" in change:
        plan["distributed"].update(strategy="deepspeed", zero=2)
    with pytest.raises(ValueError):
        emit(plan)
