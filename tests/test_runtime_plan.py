"""Hand-written plans that follow docs/plan.md exactly (the runtime's only input), and the
plan loader's user-facing errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "examples" / "tiny"


def rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def make_plan(folder: Path, *, method: str = "lora", max_steps: int = 12, every: int | None = 4,
              eval_every: int | None = 4, max_length: int = 64, micro: int = 4, grad_accum: int = 1,
              lr: float = 2e-3, keep_last: int | None = 2, runs_dir: Path | None = None, merge: bool = False,
              backends=("jsonl",), launcher: str = "python", model: Path | None = None) -> Path:
    """Write `folder/plan.json` for the tiny model and data; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    lora = {"rank": 8, "alpha": 16, "dropout": 0.0, "targets": ["q_proj", "v_proj"], "modules_to_save": []}
    plan = {
        "schema_version": 1,
        "ftc_version": "0.1.0",
        "recipe": {"name": "t-" + method, "source": "t.ftspec"},
        "model": {"name_or_path": rel(model or TINY / "model", folder), "local": True, "revision": "main",
                  "dtype": "fp32", "attention": "sdpa", "trust_remote_code": False, "tokenizer": None},
        "method": {"kind": method, "lora": None if method == "full" else lora,
                   "quantization": {"quant": "nf4", "double_quant": True, "compute_dtype": "fp32"}
                   if method == "qlora" else None},
        "data": {"train": [rel(TINY / "data" / "train.jsonl", folder)],
                 "eval": [rel(TINY / "data" / "eval.jsonl", folder)], "eval_split": 0.0, "format": "chat",
                 "columns": {}, "max_length": max_length, "packing": True, "dedup": "none",
                 "near_dedup_threshold": 0.85, "train_on": "completions", "on_bad_rows": "error",
                 "truncation": "right", "seed": 42, "cache_dir": None},
        "train": {"epochs": None, "max_steps": max_steps, "lr": lr, "schedule": "cosine", "warmup_steps": 2,
                  "warmup_ratio": None, "optimizer": "adamw", "weight_decay": 0.0, "max_grad_norm": 1.0,
                  "gradient_checkpointing": False, "eval_every_steps": eval_every, "logging_steps": 1, "seed": 42},
        "batch": {"global_batch": micro * grad_accum, "micro_batch": micro, "grad_accum": grad_accum,
                  "data_parallel_world": 1},
        "steps": {"steps_per_epoch": None, "total_steps": max_steps, "source": "declared"},
        "precision": {"mixed": "no"},
        "hardware": {"accelerator": "cpu", "gpu": None, "memory_per_gpu": None, "gpus_per_node": 1, "nodes": 1,
                     "cpu_memory": None},
        "distributed": {"strategy": "none", "world_size": 1, "zero": None, "offload_optimizer": "none",
                        "offload_params": "none", "fsdp": None},
        "checkpoint": {"every_steps": every, "keep_last": keep_last, "keep_best": "eval_loss", "best_mode": "min",
                       "full_state": True},
        "tracking": {"backends": list(backends), "mlflow_uri": None},
        "output": {"runs_dir": rel(runs_dir or folder.parent / "runs", folder), "merge": merge},
        "sweep": None,
        "memory": None,
        "launch": {"launcher": launcher, "nnodes": 1, "nproc_per_node": 1,
                   "files": {"accelerate": "accelerate.yaml", "deepspeed": None, "hostfile": None}},
        "auto": [],
        "provenance": {},
    }
    (folder / "plan.json").write_text(json.dumps(plan, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return folder


def ftc(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "ftc", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_plan_paths_resolve_against_the_plan_folder(tmp_path):
    from ftc.runtime.train.plan import load_plan

    plan = load_plan(make_plan(tmp_path / "build"))
    assert plan.path(plan["model"]["name_or_path"]) == (TINY / "model").resolve()
    assert plan.runs_dir == (tmp_path / "runs").resolve()
    assert plan.recipe_name == "t-lora" and plan.on_cpu


@pytest.mark.parametrize("mutate, message", [
    (lambda p: p["launch"].update(launcher="mpirun"), "unknown launcher 'mpirun'"),
    (lambda p: p.update(schema_version=99), "schema version 99"),
    (lambda p: p.pop("train"), "missing train"),
    (lambda p: p["method"].update(kind="prefix"), "unknown method"),
])
def test_bad_plans_are_user_errors(tmp_path, mutate, message):
    from ftc.runtime.train import RunError
    from ftc.runtime.train.plan import load_plan

    folder = make_plan(tmp_path / "build")
    raw = json.loads((folder / "plan.json").read_text())
    mutate(raw)
    (folder / "plan.json").write_text(json.dumps(raw))
    with pytest.raises(RunError, match=message):
        load_plan(folder)


def test_missing_plan_is_a_user_error(tmp_path):
    from ftc.runtime.train import RunError
    from ftc.runtime.train.plan import load_plan

    with pytest.raises(RunError, match="no plan.json"):
        load_plan(tmp_path)
    (tmp_path / "plan.json").write_text("{not json")
    with pytest.raises(RunError, match="not a readable plan"):
        load_plan(tmp_path)


@pytest.mark.slow
def test_cli_missing_model_folder_exits_1_without_traceback(tmp_path):
    folder = make_plan(tmp_path / "build", model=tmp_path / "nowhere")
    result = ftc("run", "--plan", str(folder))
    assert result.returncode == 1, result.stderr
    assert "model folder" in result.stderr and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize("env, gpu", [({}, 0), ({"LOCAL_RANK": "3", "RANK": "11", "WORLD_SIZE": "16"}, 3)])
def test_each_qlora_rank_loads_onto_its_own_gpu(env, gpu):
    """bitsandbytes quantizes while loading, so the device map decides the GPU: LOCAL_RANK's, not GPU 0
    for every rank of a multi-GPU run."""
    from ftc.runtime.train.model import qlora_device

    assert qlora_device(env) == gpu
