"""Preemption and exact resume with real signals to a real `ftc run` process. The test waits on the
process's own output lines (bounded by the process's life and a watchdog), never on sleeps."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_runtime_plan import REPO, make_plan  # noqa: E402

pytestmark = pytest.mark.slow
STEPS = 12


def start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "ftc", "run", *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    watchdog = threading.Timer(240, proc.kill)
    watchdog.daemon = True
    watchdog.start()
    proc.watchdog = watchdog
    return proc


def wait_for(proc: subprocess.Popen, needle: str, log: list[str]) -> bool:
    """Read the process's output until a line contains `needle` (True) or the output ends (False)."""
    for line in proc.stdout:
        log.append(line)
        if needle in line:
            return True
    return False


def finish(proc: subprocess.Popen, log: list[str]) -> int:
    log.extend(proc.stdout)
    code = proc.wait()
    proc.watchdog.cancel()
    return code


def run_to_end(*args: str) -> tuple[int, str]:
    proc, log = start(*args), []
    return finish(proc, log), "".join(log)


def losses(run: Path) -> dict[int, float]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    out = {}
    for r in records:
        for key in ("loss", "eval_loss"):
            if key in r:
                out[(key, r["step"])] = r[key]
    return out


def tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


def test_sigterm_saves_and_resume_is_bitwise_exact(tmp_path):
    import torch

    straight = make_plan(tmp_path / "a" / "build", max_steps=STEPS, every=4, eval_every=4)
    code, out = run_to_end("--plan", str(straight), "--run-id", "r")
    assert code == 0, out

    folder = make_plan(tmp_path / "b" / "build", max_steps=STEPS, every=4, eval_every=4)
    proc, log = start("--plan", str(folder), "--run-id", "r"), []
    assert wait_for(proc, f" 2/{STEPS}  loss", log), "".join(log)
    proc.send_signal(signal.SIGTERM)
    code = finish(proc, log)
    text = "".join(log)
    assert code == 75, text
    assert "SIGTERM received" in text and "--resume" in text
    run = tmp_path / "b" / "runs" / "t-lora" / "r"
    summary = json.loads((run / "summary.json").read_text())
    stopped = summary["global_step"]
    assert summary["status"] == "preempted" and 2 <= stopped < STEPS
    assert (run / "checkpoints" / f"checkpoint-{stopped}" / "ftc-manifest.json").is_file()

    code, out = run_to_end("--plan", str(folder), "--resume", "auto")
    assert code == 0, out
    assert f"from checkpoint-{stopped}" in out
    reference = tmp_path / "a" / "runs" / "t-lora" / "r"
    assert losses(run) == losses(reference)  # every step's loss, bit for bit
    a, b = tensors(reference / "final"), tensors(run / "final")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((run / "summary.json").read_text())["resumed_from"] == [f"checkpoint-{stopped}"]


def test_second_signal_aborts_at_once_and_keeps_complete_checkpoints(tmp_path):
    from ftc.runtime.train.checkpoints import list_complete, verify

    folder = make_plan(tmp_path / "build", max_steps=40, every=1, eval_every=None, keep_last=3)
    proc, log = start("--plan", str(folder), "--run-id", "r"), []
    assert wait_for(proc, " 3/40  loss", log), "".join(log)
    proc.send_signal(signal.SIGTERM)
    assert wait_for(proc, "SIGTERM received", log), "".join(log)
    proc.send_signal(signal.SIGINT)
    code = finish(proc, log)
    text = "".join(log)
    assert code == 130, text
    # during training the handler aborts with its message; if the step and its save had already finished,
    # the default SIGINT handling is back and ftc stops as interrupted: at once, with the same code
    assert "aborting now" in text or "ftc: interrupted" in text
    checkpoints = list_complete(tmp_path / "runs" / "t-lora" / "r" / "checkpoints")
    assert checkpoints and all(verify(c.path) is None for c in checkpoints)
