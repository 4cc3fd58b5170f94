"""Preference training end to end on the tiny model, through `ftc run`: DPO learns to prefer right sums
on held-out pairs, KTO, ORPO and SimPO train with finite losses and a falling held-out loss, and a DPO run
stopped by SIGTERM resumes to bit-identical adapter weights."""

from __future__ import annotations

import json
import math
import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_e2e_preemption import finish, run_to_end, start, tensors, wait_for  # noqa: E402

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "examples" / "tiny"

OBJECTIVES = {
    "dpo": ("preference", "objective dpo { beta = 0.1 }"),
    "kto": ("unpaired_preference", "objective kto { beta = 0.1 }"),
    "orpo": ("preference", "objective orpo { beta = 0.1 }"),
    "simpo": ("preference", "objective simpo { beta = 2.0; gamma = 0.5 }"),
}


def recipe(folder: Path, objective: str, *, steps: int, lr: float = 5e-3, every: int | None = None,
           eval_every: int | None = None, micro: int = 16, track: str = "") -> Path:
    fmt, block = OBJECTIVES[objective]
    data = TINY / "data" / ("unpaired.jsonl" if fmt == "unpaired_preference" else "preference.jsonl")
    folder.mkdir(parents=True, exist_ok=True)
    text = f"""recipe "p-{objective}"
model "{TINY / 'model'}" {{ dtype = fp32 }}
method lora {{ rank = 8; alpha = 16; dropout = 0.0; targets = all_linear }}
{block}
data {{ train = "{data}"; format = {fmt}; eval_split = 10%; max_length = 64; max_prompt_length = 32 }}
train {{ max_steps = {steps} steps; lr = {lr}; warmup = 2 steps; global_batch = {micro}; micro_batch = {micro}
        {f'eval_every = {eval_every} steps' if eval_every else ''} {f'; track = [{track}]' if track else ''} }}
hardware {{ accelerator = cpu }}
{f'checkpoint {{ every = {every} steps; keep_last = 2 }}' if every else ''}
"""
    path = folder / f"{objective}.ftspec"
    path.write_text(text)
    return path


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_tiny_dpo_prefers_right_sums_on_held_out_pairs(tmp_path):
    path = recipe(tmp_path, "dpo", steps=60, eval_every=20, micro=25,  # the 50 held-out pairs: 2 full batches
                  track="tensorboard, mlflow")
    code, out = run_to_end(str(path), "-o", str(tmp_path / "build"), "--run-id", "r")
    assert code == 0, out
    run = tmp_path / "runs" / "p-dpo" / "r"
    evals = [m for m in metrics(run) if "eval_rewards_accuracies" in m]
    first, last = evals[0], evals[-1]
    # before training the policy is its reference: every reward is 0, so no pair is ranked (chance is 0.5)
    assert first["step"] == 0 and first["eval_rewards_margins"] == 0.0 and first["eval_rewards_accuracies"] <= 0.5
    assert last["eval_rewards_accuracies"] >= 0.8, evals
    margins = [m["eval_rewards_margins"] for m in evals]
    assert margins == sorted(margins) and margins[-1] > 0.3, margins
    import sqlite3

    with sqlite3.connect(run / "mlflow.db") as db:  # the sinks get the same metric names as metrics.jsonl
        logged = {k for (k,) in db.execute("select distinct key from metrics")}
    assert {"eval_rewards_accuracies", "eval_rewards_margins", "rewards_chosen"} <= logged
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["final_eval_reward_accuracies"] == last["eval_rewards_accuracies"]


@pytest.mark.parametrize("objective", ["kto", "orpo", "simpo"])
def test_objective_trains_with_finite_falling_loss(tmp_path, objective):
    path = recipe(tmp_path, objective, steps=8, micro=8, eval_every=8, lr=1e-3 if objective == "kto" else 5e-3)
    code, out = run_to_end(str(path), "-o", str(tmp_path / "build"), "--run-id", "r")
    assert code == 0, out
    records = metrics(tmp_path / "runs" / f"p-{objective}" / "r")
    losses = [m["loss"] for m in records if "loss" in m]
    assert len(losses) == 8 and all(math.isfinite(x) for x in losses)
    evals = [m["eval_loss"] for m in records if "eval_loss" in m]  # the same held-out rows before and after
    assert len(evals) == 2 and all(math.isfinite(x) for x in evals) and evals[1] < evals[0], evals


def test_dpo_sigterm_and_resume_is_bitwise_exact(tmp_path):
    import torch

    steps = 6
    straight = recipe(tmp_path / "a", "dpo", steps=steps, every=3, micro=8)
    code, out = run_to_end(str(straight), "-o", str(tmp_path / "a" / "build"), "--run-id", "r")
    assert code == 0, out

    stopped_recipe = recipe(tmp_path / "b", "dpo", steps=steps, every=3, micro=8)
    args = (str(stopped_recipe), "-o", str(tmp_path / "b" / "build"))
    proc, log = start(*args, "--run-id", "r"), []
    assert wait_for(proc, f" 2/{steps}  loss", log), "".join(log)
    proc.send_signal(signal.SIGTERM)
    code = finish(proc, log)
    assert code == 75, "".join(log)
    run = tmp_path / "b" / "runs" / "p-dpo" / "r"
    stopped = json.loads((run / "summary.json").read_text())["global_step"]
    assert 2 <= stopped < steps
    code, out = run_to_end(*args, "--resume", "auto")
    assert code == 0 and f"from checkpoint-{stopped}" in out, out
    reference = tmp_path / "a" / "runs" / "p-dpo" / "r"
    a, b = tensors(reference / "final"), tensors(run / "final")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    loss = lambda r: [(m["step"], m["loss"]) for m in metrics(r) if "loss" in m]  # noqa: E731
    assert loss(run) == loss(reference)
