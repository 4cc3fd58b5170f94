"""Fault injection for the reliability tests (docs/reliability.md). Honoured only when FTC_FAULT is set in
the environment; a normal run never sets it, and then nothing here does anything.

  FTC_FAULT        what happens, on rank FTC_FAULT_RANK (default 0) at optimizer step FTC_FAULT_STEP
                   (1-based, default 1):
                     exit:<code>    the rank leaves with that code at the start of the step (a crash)
                     sigterm        the rank sends itself SIGTERM at the start of the step (a preempted node)
                     sigkill        SIGKILL in the middle of the step: after backward, before the optimizer
                     sigterm-eval   SIGTERM during the evaluation that follows the step
                     sigterm-data   SIGTERM during data preparation (FTC_FAULT_STEP is not used)
                     kill-save      SIGKILL during the checkpoint save of the step, between files: the
                                    weights are written, the optimizer state is not
                     kill-manifest  SIGKILL while the manifest of that checkpoint is half written
                     enospc         the optimizer-state write of that save fails with ENOSPC after writing
                                    part of its file (a full disk)
  FTC_FAULT_RUN    the step and save faults hit only the Nth training run of the process (a sweep worker runs
                   its trials one after another in one process); default: every run
"""

from __future__ import annotations

import errno
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

ENV = "FTC_FAULT"


@dataclass(frozen=True)
class Fault:
    action: str
    rank: int
    step: int


def active(env=None) -> Fault | None:
    """The fault asked for this rank, or None."""
    env = os.environ if env is None else env
    if ENV not in env:
        return None
    from ftc.runtime.launch.rank import current

    fault = Fault(env[ENV], int(env.get("FTC_FAULT_RANK", 0)), int(env.get("FTC_FAULT_STEP", 1)))
    return fault if current(env).rank == fault.rank else None


def _say(fault: Fault, where: str) -> None:
    print(f"ftc: fault injection: rank {fault.rank} {where}: {fault.action}", file=sys.stderr, flush=True)


def _kill_self(sig: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), sig)
    if sig == signal.SIGKILL:  # delivery is asynchronous: never run on past the fault point
        signal.pause()


def at(action: str, step: int | None = None) -> Fault | None:
    """The active fault when it is `action` (at `step`, when given)."""
    fault = active()
    if fault is None or fault.action != action or (step is not None and fault.step != step):
        return None
    return fault


def data_point() -> None:
    """Called while the data is being prepared."""
    fault = at("sigterm-data")
    if fault is not None:
        _say(fault, "during data preparation")
        _kill_self(signal.SIGTERM)


def manifest_point(step: int, tmp: Path, text: str) -> None:
    """Called before the manifest of checkpoint `step` is written to `tmp`: may write half of it and die."""
    fault = at("kill-manifest", step)
    if fault is not None:
        with tmp.open("w", encoding="utf-8") as f:
            f.write(text[: len(text) // 2])
            f.flush()
            os.fsync(f.fileno())
        _say(fault, f"with the manifest of checkpoint-{step} half written")
        _kill_self(signal.SIGKILL)


_runs = [0]  # training runs of this process so far (FTC_FAULT_RUN)


def install(trainer) -> list:
    """Hook the trainer's save for the save faults; returns the callbacks for the step faults."""
    fault = active()
    _runs[0] += 1
    if fault is None or int(os.environ.get("FTC_FAULT_RUN", _runs[0])) != _runs[0]:
        return []
    if fault.action in ("kill-save", "enospc"):
        _wrap_optimizer_save(trainer, fault)
    return [_callback(fault)]


def _wrap_optimizer_save(trainer, fault: Fault) -> None:
    original = trainer._save_optimizer_and_scheduler

    def save(output_dir):
        if trainer.state.global_step != fault.step:
            return original(output_dir)
        if fault.action == "kill-save":
            _say(fault, f"saving checkpoint-{fault.step}, between files")
            _kill_self(signal.SIGKILL)
        target = Path(output_dir) / "optimizer.pt"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"\0" * 4096)  # what got written before the disk filled up
        _say(fault, f"saving checkpoint-{fault.step}")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))

    trainer._save_optimizer_and_scheduler = save


def _callback(fault: Fault):
    from transformers import TrainerCallback

    class FaultInjection(TrainerCallback):
        def __init__(self):
            self.done = False

        def on_step_begin(self, args, state, control, **kw):  # during optimizer step `step` (1-based)
            if state.global_step + 1 != fault.step or not (fault.action == "sigterm" or
                                                           fault.action.startswith("exit:")):
                return control
            _say(fault, f"at step {fault.step}")
            if fault.action == "sigterm":
                _kill_self(signal.SIGTERM)
            else:
                sys.stdout.flush()
                sys.stderr.flush()
                raise SystemExit(int(fault.action.split(":", 1)[1]))
            return control

        def on_pre_optimizer_step(self, args, state, control, **kw):
            if fault.action == "sigkill" and state.global_step + 1 == fault.step:
                _say(fault, f"in the middle of step {fault.step}")
                _kill_self(signal.SIGKILL)
            return control

        def on_prediction_step(self, args, state, control, **kw):
            if fault.action == "sigterm-eval" and state.global_step == fault.step and not self.done:
                self.done = True
                _say(fault, f"during the evaluation at step {fault.step}")
                _kill_self(signal.SIGTERM)
            return control

    return FaultInjection()
