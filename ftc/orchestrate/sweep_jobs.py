"""One trial from its compiled plan to its result in the study, two ways:

- `InProcessJob`: `execute` in this process (one trial at a time, one rank; what `parallel = 1` does);
- `LaunchedJob`: the trial's own processes, started through the same launcher path as `ftc run`
  (`launch.sh`, supervised), with the devices of its slot; for `parallel > 1`, a trial with several ranks,
  and `--worker`. Its rank 0 reports evaluations to the study itself (see rank.py).

Either way the sweep's process is the one that tells the study how the trial ended.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from ftc.runtime.sweep.errors import SweepError
from ftc.runtime.sweep.storage import Heartbeat, StorageChoice


@dataclass
class TrialContext:
    """What every trial of one sweep shares."""

    study: Any
    folder: Path
    metric: str
    choice: StorageChoice
    study_name: str
    merge: bool | None
    say: Callable[[str], None]
    clock: Callable[[], float]
    pruner: Any = None  # a pruner given instead of the plan's: the trial's ranks get it too


def _set(trial, key: str, value) -> None:
    trial.set_user_attr(key, value)


def tell_failed(ctx: TrialContext, trial, message: str, started: float, detail: str | None = None) -> None:
    from optuna.trial import TrialState

    _set(trial, "error", message)
    if detail:
        _set(trial, "traceback", detail)
    _set(trial, "wall_seconds", round(ctx.clock() - started, 3))
    _set(trial, "ended_at", round(time.time(), 3))
    ctx.study.tell(trial, state=TrialState.FAIL)


def fail_compile(ctx: TrialContext, trial, built, started: float, label: str) -> None:
    """These values make the recipe invalid: a failed trial carrying the compile's diagnostics."""
    from ftc.compiler.render import render_all_text, to_json_obj

    text = render_all_text(list(built.errors), built.registry)
    _set(trial, "diagnostics", [to_json_obj(d) for d in built.errors])
    tell_failed(ctx, trial, text, started)
    ctx.say(f"ftc: {label} failed: the recipe with these values does not compile:\n{text}")


def tell_result(ctx: TrialContext, trial, run_dir: Path, started: float, label: str) -> None:
    """A trial that ran to the end: its objective from metrics.jsonl (NaN or infinite: failed)."""
    from .sweep import objective_value

    try:
        value = objective_value(Path(run_dir) / "metrics.jsonl", ctx.metric)
    except SweepError as exc:
        tell_failed(ctx, trial, str(exc), started)
        raise
    if not math.isfinite(value):
        tell_failed(ctx, trial, f"{ctx.metric} is {value} (the run diverged)", started)
        ctx.say(f"ftc: {label} failed: {ctx.metric} is {value}")
        return
    _set(trial, "wall_seconds", round(ctx.clock() - started, 3))
    _set(trial, "ended_at", round(time.time(), 3))
    ctx.study.tell(trial, value)
    ctx.say(f"ftc: {label} done: {ctx.metric} {value:.6g}")


def tell_pruned(ctx: TrialContext, trial, started: float, label: str, why: str) -> None:
    from optuna.trial import TrialState

    _set(trial, "wall_seconds", round(ctx.clock() - started, 3))
    _set(trial, "ended_at", round(time.time(), 3))
    ctx.study.tell(trial, state=TrialState.PRUNED)
    ctx.say(f"ftc: {label} {why}")


class InProcessJob:
    """Runs the whole trial in `start()`; done at once."""

    def __init__(self, ctx: TrialContext, trial, plan, execute: Callable, started: float):
        self.ctx, self.trial, self.plan, self.execute, self.started = ctx, trial, plan, execute, started
        self.label = f"trial {trial.number}"
        self.stopped: str | None = None

    def start(self) -> None:
        import optuna

        from ftc.plan import UserError
        from ftc.runtime.sweep.callback import TrialReporter
        from ftc.runtime.train.run import RunOptions

        ctx, trial, label = self.ctx, self.trial, self.label
        run_options = RunOptions(run_id=f"{ctx.folder.name}/trial-{trial.number}", merge=ctx.merge,
                                 callbacks=(TrialReporter(trial, ctx.metric),))
        try:
            result = self.execute(self.plan, run_options)
        except optuna.TrialPruned as exc:
            tell_pruned(ctx, trial, self.started, label, str(exc))
            return
        except UserError as exc:
            tell_failed(ctx, trial, str(exc), self.started)
            ctx.say(f"ftc: {label} failed: {exc}")
            return
        except (KeyboardInterrupt, SystemExit):
            raise  # the trial stays RUNNING: `--resume auto` re-runs it
        except Exception as exc:  # a trial's crash (out of memory, a library error) must not end the sweep
            tell_failed(ctx, trial, f"{type(exc).__name__}: {exc}", self.started,
                        detail="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
            ctx.say(f"ftc: {label} failed: {type(exc).__name__}: {exc}")
            return
        finally:
            release_memory()
        if result.status == "preempted":
            self.stopped = "preempted"  # the trial stays RUNNING and re-runs on --resume
            return
        tell_result(ctx, trial, Path(result.run_dir), self.started, label)

    def done(self) -> bool:
        return True

    def finish(self) -> str | None:
        return self.stopped

    def terminate(self, at_once: bool = False) -> None:
        pass


class _Quiet:
    """Where a launched trial's rank-0 stream goes: its log file already has it."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


class LaunchedJob:
    """The trial's ranks started with the compiled launch.sh in a thread that supervises them."""

    def __init__(self, ctx: TrialContext, trial, plan, slot, started: float):
        self.ctx, self.trial, self.plan, self.slot, self.started = ctx, trial, plan, slot, started
        self.label = f"trial {trial.number}"
        self.run_id = f"{ctx.folder.name}/trial-{trial.number}"
        self.result = None
        self.error: BaseException | None = None
        self.proc = None
        self.spec = None
        self.stopping = False  # the sweep asked it to stop: whatever it ends with, it re-runs on --resume
        self._thread = threading.Thread(target=self._run, name=f"trial-{trial.number}", daemon=True)

    def _spec(self):
        from ftc.runtime.launch.cli import preflight
        from ftc.runtime.launch.ports import free_port
        from ftc.runtime.launch.spec import build_spec

        from ftc.runtime.sweep.rank import trial_env

        ctx, plan = self.ctx, self.plan
        env = dict(os.environ)
        env.update(self.slot.env)
        env.update(trial_env(ctx.folder, ctx.choice.url or ctx.choice.kind, ctx.study_name, self.trial._trial_id,
                             ctx.metric))
        env["FTC_SWEEP_COORDINATOR"] = str(os.getpid())
        if ctx.pruner is not None:
            from ftc.runtime.sweep.rank import encode_pruner

            env["FTC_SWEEP_PRUNER"] = encode_pruner(ctx.pruner)
        if plan.launch.nnodes == 1:
            env.setdefault("MASTER_ADDR", "127.0.0.1")
            env["MASTER_PORT"] = str(free_port())  # trials at once each need their own rendezvous
        entry = ("--run-id", self.run_id)
        if ctx.merge is not None:
            entry += ("--merge",) if ctx.merge else ("--no-merge",)
        logs = ctx.folder / "logs" / f"trial-{self.trial.number}"
        spec = build_spec(plan, logs, entry, env=env)
        # every rank's run folder: runs/<recipe>/<sweep>/trial-<n>; its logs and exit records: <sweep>/logs/trial-<n>
        env = dict(spec.env, FTC_RUN_ID=self.run_id, FTC_RANK_LOG_DIR=str(logs))
        spec = replace(spec, env=env, log_dir=logs)
        preflight(spec)
        return spec

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        from ftc.runtime.launch.supervise import supervise

        try:
            self.spec = self._spec()
            self.result = supervise(self.spec, out=_Quiet(), on_started=self._started)
        except BaseException as exc:  # reported by finish() in the sweep's thread
            self.error = exc

    def _started(self, proc) -> None:
        self.proc = proc

    def done(self) -> bool:
        return not self._thread.is_alive()

    def terminate(self, at_once: bool = False) -> None:
        """Ask the trial's ranks to save and stop (SIGTERM to the launcher's process group and every rank);
        `at_once`: SIGKILL."""
        import signal

        from ftc.runtime.launch.supervise import _signal_group

        self.stopping = True
        sig = signal.SIGKILL if at_once else signal.SIGTERM
        if self.spec is not None:
            for pid_file in self.spec.log_dir.glob("rank-*.pid"):
                try:
                    _signal_group(int(json.loads(pid_file.read_text(encoding="utf-8"))["pid"]), sig)
                except (OSError, ValueError, KeyError, TypeError):
                    pass
        if self.proc is not None:
            _signal_group(self.proc.pid, sig)

    def finish(self) -> str | None:
        from ftc.runtime.sweep.rank import PRUNED_AT

        ctx, trial, label = self.ctx, self.trial, self.label
        run_dir = self.plan.runs_dir / self.plan.recipe_name / self.run_id
        if self.error is not None:
            message = str(self.error) if isinstance(self.error, Exception) else type(self.error).__name__
            tell_failed(ctx, trial, message, self.started)
            ctx.say(f"ftc: {label} failed: {message}")
            return None
        result = self.result
        pruned_at = ctx.study._storage.get_trial(trial._trial_id).user_attrs.get(PRUNED_AT)
        if pruned_at is not None:  # rank 0 recorded the pruner's verdict; every rank stopped there
            tell_pruned(ctx, trial, self.started, label, f"pruned at step {pruned_at}")
            return None
        if result.status in ("preempted", "interrupted") or (self.stopping and result.status != "completed"):
            return "preempted"  # stopped by the sweep (before it could save, too): RUNNING, re-run on --resume
        if result.status == "failed":
            tell_failed(ctx, trial, result.message.splitlines()[0] if result.message else "the trial failed",
                        self.started, detail=result.message)
            ctx.say(f"ftc: {label} failed: {result.message.splitlines()[0] if result.message else ''}")
            return None
        tell_result(ctx, trial, run_dir, self.started, label)
        return None


def release_memory() -> None:
    """Trials share the process: free the last trial's model before the next one loads, and restart the
    GPU peak counter so each run's summary reports its own peak."""
    import gc
    import sys

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def heartbeat_for(ctx: TrialContext, trial) -> Heartbeat | None:
    """A shared study's running trials keep a heartbeat, so that another worker can tell this one died."""
    if not ctx.choice.shared:
        return None
    return Heartbeat(ctx.study, trial._trial_id).start()
