"""The fault matrix on one process (docs/reliability.md): a real `ftc run` of the tiny model is killed,
preempted, starved of disk and fed damaged checkpoints, changed data and a changed tokenizer, one fault
after another in the same run folder (FTC_FAULT, see runtime/train/faults.py). After every fault:
the exit code and message are the documented ones, no complete checkpoint and no metric record is lost;
at the end `--resume auto` has reached the weights and losses of an uninterrupted run, bit for bit.
The two-process cases (DDP, ZeRO-2) are in test_multiproc_train.py, next to their reference runs.

The step of the first kill is drawn from FTC_MATRIX_SEED (default 25; the test prints it)."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest

from fault_util import Ledger, bitwise_equal, final_tensors, losses, newest_step
from multiproc_util import REPO, TINY, base_env, explain, ftc_run, run_dir

pytestmark = pytest.mark.slow
STEPS, EVERY = 8, 2
SEED = int(os.environ.get("FTC_MATRIX_SEED", "25"))

RECIPE = """recipe "{name}"

model "{model}" {{
  dtype = fp32
}}

method lora {{
  rank    = 8
  alpha   = 16
  dropout = 0.0
  targets = all_linear
}}

data {{
  train      = "{train}"
  eval       = "{eval}"
  format     = chat
  max_length = 128
  packing    = false
}}

train {{
  max_steps    = {steps} steps
  lr           = 2e-3
  schedule     = constant
  warmup       = 0 steps
  global_batch = 4
  micro_batch  = 4
  optimizer    = adamw
  eval_every   = {every} steps
  seed         = 42
  log_every    = 1 steps
}}

hardware {{
  accelerator = cpu
}}

checkpoint {{
  every     = {every} steps
  keep_last = 20
}}

output {{
  runs_dir = "runs"
}}
"""


def _compile(root: Path, name: str) -> Path:
    import subprocess
    import sys

    recipe = root / f"{name}.ftspec"
    recipe.write_text(RECIPE.format(name=name, model=root / "model", train=root / "train.jsonl",
                                    eval=root / "eval.jsonl", steps=STEPS, every=EVERY), encoding="utf-8")
    out = root / "build" / name
    result = subprocess.run([sys.executable, "-m", "ftc", "compile", str(recipe), "-o", str(out)], cwd=REPO,
                            capture_output=True, text=True, timeout=120, env=base_env())
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A private copy of the tiny model and data, and the uninterrupted reference run."""
    root = tmp_path_factory.mktemp("faults")
    shutil.copytree(TINY / "model", root / "model")
    shutil.copyfile(TINY / "data" / "train.jsonl", root / "train.jsonl")
    evals = (TINY / "data" / "eval.jsonl").read_text().splitlines(keepends=True)[:8]
    (root / "eval.jsonl").write_text("".join(evals))
    reference = _compile(root, "fm-ref")
    result = ftc_run(reference, "--run-id", "ref", timeout=300)
    assert result.returncode == 0, explain(result)
    return root, run_dir(reference, "ref")


def _run(folder: Path, *args: str, fault: str | None = None, step: int | None = None):
    env = {"FTC_FAULT": fault, "FTC_FAULT_STEP": str(step or 1)} if fault else {}
    return ftc_run(folder, *args, timeout=300, **env)


def test_one_process_survives_every_fault_and_resumes_bit_identical(world):
    root, reference = world
    folder = _compile(root, "fm")
    ledger = Ledger("one process")
    run = run_dir(folder, "r")

    def fault(kind: str, expect_code: int, *needles: str, first: bool = False, **kw):
        before = ledger.before(run) if run.exists() else ({}, [])
        result = _run(folder, *(("--run-id", "r") if first else ("--resume", "auto")), **kw)
        assert result.returncode == expect_code, f"{kind}: {explain(result)}"
        text = result.stdout + result.stderr
        for needle in needles:
            assert needle in text, f"{kind}: {needle!r} not in\n{explain(result)}"
        ledger.after(kind, run, before)
        assert ledger.bytes_lost == 0 and ledger.records_lost == 0, (kind, ledger)
        return text

    first_kill = random.Random(SEED).randint(3, 5)
    print(f"FTC_MATRIX_SEED={SEED}: the first SIGKILL is in the middle of step {first_kill}")
    fault("sigkill mid-step", -9, "in the middle of step", first=True, fault="sigkill", step=first_kill)
    n = newest_step(run)
    assert n == 2 * ((first_kill - 1) // 2), n
    save = n + EVERY
    staged = run / "checkpoints" / ".staging" / f"checkpoint-{save}"

    fault("sigkill between checkpoint files", -9, "between files", fault="kill-save", step=save)
    assert (staged / "adapter_model.safetensors").is_file() and not (staged / "optimizer.pt").exists()
    assert newest_step(run) == n

    fault("sigkill mid-manifest", -9, "half written", fault="kill-manifest", step=save)
    half = staged / "ftc-manifest.json.tmp"
    assert half.is_file() and not (staged / "ftc-manifest.json").exists() and newest_step(run) == n

    fault("disk full during a save", 74, "no space left on the device", "--resume auto",
          f"checkpoint-{n}, is intact", fault="enospc", step=save)
    assert not staged.exists() and newest_step(run) == n

    fault("sigterm during evaluation", 75, "during the evaluation", "SIGTERM received", "--resume",
          fault="sigterm-eval", step=save)
    e = save
    assert newest_step(run) == e + 1  # the periodic save at e, then the preemption save one step later

    ckpt = run / "checkpoints"
    ledger.damage(ckpt / f"checkpoint-{e + 1}", "adapter_model.safetensors", "bitflip")
    fault("sigterm during data preparation", 75, "does not match its checksum", "before training started",
          fault="sigterm-data")

    train = root / "train.jsonl"
    original = train.read_bytes()
    train.write_bytes(original + original.splitlines(keepends=True)[0])
    fault("data file changed before resume", 1, "the training data changed", "start a new run")
    train.write_bytes(original)
    template = root / "model" / "chat_template.jinja"
    kept = template.read_bytes()
    template.write_bytes(kept + b"\n")
    fault("tokenizer changed before resume", 1, "the tokenizer changed", "Restore the original")
    template.write_bytes(kept)

    ledger.damage(ckpt / f"checkpoint-{e}", "optimizer.pt", "truncate")
    fault("sigkill mid-step", -9, f"skipping {ckpt / f'checkpoint-{e}'}: optimizer.pt is truncated",
          f"from checkpoint-{e - 2}", fault="sigkill", step=e + 1)
    ledger.damaged.discard(f"checkpoint-{e}")  # saved again, complete, before the kill
    assert newest_step(run) == e

    ledger.damage(ckpt / f"checkpoint-{e}", "scheduler.pt", "delete")
    fault("resume to the end", 0, "scheduler.pt is missing", f"from checkpoint-{e - 2}")
    ledger.faults.pop("resume to the end")

    assert losses(run) == losses(reference)  # every loss and eval loss, bit for bit, none twice
    assert bitwise_equal(final_tensors(run), final_tensors(reference))
    ledger.bitwise_resumes += 1
    ledger.write()
    print(ledger)
