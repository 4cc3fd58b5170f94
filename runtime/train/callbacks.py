"""Trainer callbacks: a progress line (loss, tokens/s, ETA), metrics.jsonl + TensorBoard, and the
preemption check at each step boundary."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

from transformers import TrainerCallback


def _fmt_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class ProgressCallback(TrainerCallback):
    """One line per logging step: `step 20/60  loss 1.234  lr 2.0e-03  5.1k tok/s  eta 0:00:12`."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self._t0 = None
        self._step0 = 0
        self._tokens0 = 0

    def on_train_begin(self, args, state, control, **kw):
        self._t0 = time.perf_counter()
        self._step0 = state.global_step
        self._tokens0 = state.num_input_tokens_seen

    def rates(self, state) -> tuple[float, float]:
        """(tokens per second, seconds per step) since this process started training."""
        elapsed = max(time.perf_counter() - (self._t0 or time.perf_counter()), 1e-9)
        steps = state.global_step - self._step0
        return (state.num_input_tokens_seen - self._tokens0) / elapsed, (elapsed / steps if steps else math.nan)

    def on_log(self, args, state, control, logs=None, **kw):
        logs = logs or {}
        if not state.is_world_process_zero:  # the loss is already averaged over ranks; rank 0 reports it
            return
        if "loss" in logs:
            tok_s, s_per_step = self.rates(state)
            eta = (state.max_steps - state.global_step) * s_per_step if s_per_step == s_per_step else 0.0
            line = (f"step {state.global_step:>{len(str(state.max_steps))}}/{state.max_steps}  "
                    f"loss {logs['loss']:.4f}  lr {logs.get('learning_rate', 0.0):.2e}  "
                    f"{tok_s / 1000:.1f}k tok/s  eta {_fmt_duration(eta)}")
            print(line, file=self.stream, flush=True)
        elif "eval_loss" in logs:
            print(f"eval at step {state.global_step}: eval_loss {logs['eval_loss']:.4f}",
                  file=self.stream, flush=True)


class MetricsCallback(TrainerCallback):
    """Every log record to `metrics.jsonl` (one JSON object a line) and, optionally, TensorBoard."""

    def __init__(self, path: Path, tensorboard_dir: Path | None = None):
        self.path = Path(path)
        self.tensorboard_dir = tensorboard_dir
        self._writer = None

    def on_train_begin(self, args, state, control, **kw):
        if self.tensorboard_dir is not None and self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.tensorboard_dir))

    def on_log(self, args, state, control, logs=None, **kw):
        if not state.is_world_process_zero or not logs:
            return
        record = {"step": state.global_step, "epoch": state.epoch, "tokens": state.num_input_tokens_seen,
                  "time": round(time.time(), 3), **logs}
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
        if self._writer is not None:
            for key, value in logs.items():
                if isinstance(value, (int, float)):
                    tag = key.replace("eval_", "eval/", 1) if key.startswith("eval_") else f"train/{key}"
                    self._writer.add_scalar(tag, value, state.global_step)

    def on_train_end(self, args, state, control, **kw):
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None


def metric_records(path: Path) -> list[dict]:
    """The records of a metrics.jsonl. A process killed while appending can leave its last line torn: that
    line is dropped (the step it belongs to is past the last checkpoint, so a resume writes it again)."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line) if line.strip() else None
        except ValueError:
            print(f"warning: {path}: dropping a torn line {line[:60]!r}", file=sys.stderr, flush=True)
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def truncate_metrics(path: Path, after_step: int) -> None:
    """On resume: drop records past the checkpoint's step, so the log reads like one continuous run.
    Rewritten through a temporary file and a rename: a kill here never loses the records that are kept."""
    path = Path(path)
    if not path.is_file():
        return
    kept = [r for r in metric_records(path) if r.get("step", 0) <= after_step]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in kept), encoding="utf-8")
    os.replace(tmp, path)


class PreemptionCallback(TrainerCallback):
    """At a step boundary after a signal: save a full checkpoint and stop training."""

    def __init__(self, preemption):
        self.preemption = preemption
        self.stopped_at: int | None = None

    def on_step_end(self, args, state, control, **kw):
        from ftc.runtime.launch.rank import any_rank

        # all ranks decide on the agreed flag (one all-reduce), so they save and stop at this same step
        if self.stopped_at is None and any_rank(self.preemption.requested is not None):
            self.preemption.requested = self.preemption.requested or "a signal on another rank"
            self.stopped_at = state.global_step
            control.should_save = True
            control.should_training_stop = True
        return control
