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
    """Write `folder/plan.json` for the tiny model and data; returns the folder. The plan is held to
    plan/schema.json here, so a test never trains from a plan the runtime would refuse."""
    from plan_cases import plan_with

    from ftc.plan import plan_errors

    folder.mkdir(parents=True, exist_ok=True)
    lora = {"rank": 8, "alpha": 16, "dropout": 0.0, "targets": ["q_proj", "v_proj"], "modules_to_save": [],
            "bias": "none"}
    plan = plan_with(
        recipe={"name": "t-" + method, "source": "t.ftspec", "sources": []},
        model={"name_or_path": rel(model or TINY / "model", folder)},
        method={"kind": method, "lora": None if method == "full" else lora,
                "quantization": {"quant": "nf4", "double_quant": True, "compute_dtype": "fp32"}
                if method == "qlora" else None},
        data={"train": [rel(TINY / "data" / "train.jsonl", folder)],
              "eval": [rel(TINY / "data" / "eval.jsonl", folder)], "eval_split": 0.0, "max_length": max_length,
              "packing": True, "dedup": "none"},
        train={"epochs": None, "max_steps": max_steps, "lr": lr, "warmup_steps": 2, "warmup_ratio": None,
               "eval_every_steps": eval_every},
        batch={"global_batch": micro * grad_accum, "micro_batch": micro, "grad_accum": grad_accum},
        steps={"total_steps": max_steps, "source": "declared", "train_rows": None},
        checkpoint={"every_steps": every, "keep_last": keep_last},
        tracking={"backends": list(backends)},
        output={"runs_dir": rel(runs_dir or folder.parent / "runs", folder), "merge": merge},
        launch={"launcher": launcher},
        provenance={},
    )
    assert plan_errors(plan) == [], plan_errors(plan)
    (folder / "plan.json").write_text(json.dumps(plan, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return folder


def ftc(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "ftc", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_plan_paths_resolve_against_the_plan_folder(tmp_path):
    from ftc.plan import load_plan

    plan = load_plan(make_plan(tmp_path / "build"))
    assert plan.path(plan.model.name_or_path) == (TINY / "model").resolve()
    assert plan.runs_dir == (tmp_path / "runs").resolve()
    assert plan.recipe_name == "t-lora" and plan.on_cpu
    assert plan.method.lora.targets == ("q_proj", "v_proj") and plan.train.max_grad_norm == 1.0


def test_a_loaded_plan_is_frozen(tmp_path):
    import dataclasses

    from ftc.plan import load_plan

    plan = load_plan(make_plan(tmp_path / "build"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.train.lr = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        plan.data.columns["text"] = "body"  # type: ignore[index]
    raw = plan.raw
    raw["train"]["lr"] = 1.0  # a copy: the plan itself is unchanged
    assert plan.train.lr == 2e-3 and plan.raw["train"]["lr"] == 2e-3


def _broken(folder: Path, mutate) -> Path:
    raw = json.loads((folder / "plan.json").read_text())
    mutate(raw)
    (folder / "plan.json").write_text(json.dumps(raw))
    return folder / "plan.json"


@pytest.mark.parametrize("mutate, where, rule", [
    (lambda p: p["train"].pop("max_grad_norm"), "$.train.max_grad_norm: 'max_grad_norm' is a required property",
     "required"),
    (lambda p: p.pop("train"), "$.train: 'train' is a required property", "required"),
    (lambda p: p["batch"].update(micro_batch="4"), "$.batch.micro_batch: '4' is not of type 'integer'", "type"),
    (lambda p: p["launch"].update(launcher="mpirun"), "$.launch.launcher: 'mpirun' is not one of", "enum"),
    (lambda p: p["method"].update(kind="prefix"), "$.method.kind: 'prefix' is not one of", "enum"),
    (lambda p: p.update(schema_version=2), "$.schema_version: version 2 is newer than the version this ftc reads (1)",
     "const"),
])
def test_bad_plans_name_the_file_the_path_and_the_rule(tmp_path, mutate, where, rule):
    from ftc.plan import PlanError, load_plan

    file = _broken(make_plan(tmp_path / "build"), mutate)
    with pytest.raises(PlanError) as caught:
        load_plan(file.parent)
    message = str(caught.value)
    assert f"{file}: {where}" in message and f"(rule `{rule}`)" in message, message
    assert caught.value.exit_code == 1


def test_missing_or_truncated_plan_is_a_user_error(tmp_path):
    from ftc.plan import PlanError, load_plan

    with pytest.raises(PlanError, match="no plan.json"):
        load_plan(tmp_path)
    text = (make_plan(tmp_path / "build") / "plan.json").read_text()
    (tmp_path / "build" / "plan.json").write_text(text[: len(text) // 2])
    with pytest.raises(PlanError, match=r"plan.json:\d+:\d+: not valid JSON, truncated or damaged"):
        load_plan(tmp_path / "build")


def test_runtime_rejects_a_bad_plan_before_loading_a_model(tmp_path):
    """`python -m ftc.runtime.train` (what every rank runs): exit 1, the located message, no traceback, and no
    run folder, so nothing was loaded or written."""
    file = _broken(make_plan(tmp_path / "build"), lambda p: p["train"].update(lr="fast"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "ftc.runtime.train", "--plan", str(file.parent)], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert f"{file}: $.train.lr: 'fast' is not of type 'number' (rule `type`)" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "runs").exists()


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
