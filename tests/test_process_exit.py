"""How an ftc process ends (ftc/exit.py): after a run it skips the interpreter's slow teardown, so what it
wrote must already be complete — the metrics in every tracking backend, the outputs — and what teardown
would still have done that matters (atexit handlers, a flush of files left open, a non-daemon thread's work) is
done."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from multiproc_util import REPO, TINY, base_env, explain

RECIPE = """recipe "exit-tracking"
model "{model}" {{ dtype = fp32 }}
method lora {{ rank = 8; alpha = 16; dropout = 0.0; targets = all_linear }}
data {{
  train = "{train}"
  format = chat
  max_length = 64
  packing = false
}}
train {{
  max_steps = 4 steps
  lr = 1e-3
  global_batch = 4
  micro_batch = 4
  log_every = 1 steps
  track = [tensorboard, mlflow]
}}
hardware {{ accelerator = cpu }}
output {{ runs_dir = "runs" }}
"""


@pytest.mark.slow
def test_a_run_through_the_ftc_command_leaves_every_tracking_backend_complete(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    recipe = tmp_path / "exit-tracking.ftspec"
    recipe.write_text(RECIPE.format(model=TINY / "model", train=TINY / "data" / "train.jsonl"), encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "ftc", "run", str(recipe), "-o", str(tmp_path / "build"),
                             "--run-id", "r"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env=base_env())
    assert result.returncode == 0, explain(result)
    run = tmp_path / "runs" / "exit-tracking" / "r"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    jsonl = {r["step"]: r["loss"] for r in records if "loss" in r}
    assert sorted(jsonl) == [1, 2, 3, 4]
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"
    assert (run / "loss_curve.png").stat().st_size > 0

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    board = {e.step: e.value for e in events.Scalars("train/loss")}
    assert sorted(board) == sorted(jsonl) and all(board[s] == pytest.approx(jsonl[s], rel=1e-6) for s in jsonl)

    with sqlite3.connect(run / "mlflow.db") as db:
        rows = db.execute("SELECT step, value FROM metrics WHERE key = 'loss' ORDER BY step").fetchall()
    assert [s for s, _ in rows] == sorted(jsonl) and all(v == pytest.approx(jsonl[s], rel=1e-6) for s, v in rows)


LEAVE = """
import atexit, sys, threading, time
from pathlib import Path
import torch  # a run's process: the quick way out applies
from ftc.exit import leave

out = Path(sys.argv[1])
atexit.register(lambda: (out / "atexit").write_text("ran"))
log = open(out / "buffered", "w")  # never closed by the program: teardown would flush it
log.write("x" * 100)
if sys.argv[2] == "thread":
    threading.Thread(target=lambda: (time.sleep(0.3), (out / "thread").write_text("done"))).start()
leave(int(sys.argv[3]))
"""


@pytest.mark.parametrize("thread", [False, True], ids=["quick", "with-a-running-thread"])
def test_leave_runs_what_teardown_would_and_keeps_the_exit_code(tmp_path, thread):
    result = subprocess.run([sys.executable, "-c", LEAVE, str(tmp_path), "thread" if thread else "-", "7"],
                            cwd=REPO, capture_output=True, text=True, timeout=120, env=base_env())
    assert result.returncode == 7, explain(result)
    assert (tmp_path / "atexit").read_text() == "ran"
    assert (tmp_path / "buffered").read_text() == "x" * 100
    assert (tmp_path / "thread").read_text() == "done" if thread else not (tmp_path / "thread").exists()
