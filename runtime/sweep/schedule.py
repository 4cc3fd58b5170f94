"""The trial loop over N slots: ask the study for a trial whenever a slot is free and the count is not reached,
start it, collect the ones that ended. With a shared study (journal or database) other workers' trials count
too: a worker waits while theirs run (one of them may die and be queued again) and stops when the study has
its `trials`."""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass
from typing import Callable

from .storage import fail_stale, interrupted_numbers

SURPLUS = "surplus"  # user attribute of a trial asked for by two workers at once beyond the count: not run
POLL_S = 0.5  # how often a waiting sweep looks at its running trials and the study


@dataclass(frozen=True)
class Tally:
    done: int  # finished trials that count toward `trials`
    running: int  # RUNNING in the study (this worker's and others')
    waiting: int  # queued again, to be run

    def can_start(self, total: int) -> bool:
        return self.waiting > 0 or self.done + self.running < total


def not_counted(trials) -> set[int]:
    """Numbers of trials that do not count: interrupted (and queued again) or surplus."""
    return interrupted_numbers(trials) | {t.number for t in trials if t.user_attrs.get(SURPLUS)}


def tally(study) -> Tally:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    skip = not_counted(trials)
    finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return Tally(sum(t.state in finished and t.number not in skip for t in trials),
                 sum(t.state == TrialState.RUNNING for t in trials),
                 sum(t.state == TrialState.WAITING for t in trials))


def surplus(study, trial, total: int) -> bool:
    """Two workers that ask at the same moment may both take the last place: the later number gives way."""
    from optuna.trial import TrialState

    if trial.user_attrs.get("rerun_of") is not None:
        return False  # a re-run replaces an interrupted trial
    trials = study.get_trials(deepcopy=False)
    skip = not_counted(trials)
    ahead = sum(t.number < trial.number and t.number not in skip for t in trials)
    return ahead >= total


def _given_up(ctx, trial, call):
    """`call()`, except that a trial another worker already declared dead (and queued again) is dropped."""
    import optuna

    try:
        return call()
    except optuna.exceptions.UpdateFinishedTrialError:
        ctx.say(f"ftc: trial {trial.number} was marked failed by another worker meanwhile (no heartbeat); "
                "its re-run counts instead")
        return None


class _Signals:
    """SIGTERM/SIGINT while trials run in their own processes: ask them to save and stop (exit 75)."""

    def __init__(self, active: bool):
        self.received: list[int] = []
        self.previous = {}
        self.active = active and threading.current_thread() is threading.main_thread()

    def __enter__(self):
        if self.active:
            for s in (signal.SIGTERM, signal.SIGINT):
                self.previous[s] = signal.signal(s, lambda signum, frame: self.received.append(signum))
        return self

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)


def run_trials(ctx, total: int, slots: list, begin: Callable, timeout_s: float | None, *,
               launched: bool) -> str | None:
    """Run trials until the study has `total` of them (None), or the timeout / a signal stops it."""
    from optuna.trial import TrialState

    free, running = list(slots), {}
    stopped, started = None, ctx.clock()
    with _Signals(launched) as signals:
        while True:
            for job in [j for j in running if j.done()]:
                slot, heartbeat = running.pop(job)
                reason = _given_up(ctx, job.trial, job.finish)
                if heartbeat is not None:
                    heartbeat.stop()
                free.append(slot)
                stopped = reason or stopped
            if signals.received and stopped != "preempted":
                stopped = "preempted"
                ctx.say("ftc: stopping: every running trial saves a checkpoint and stops (again: at once)")
                for job in running:
                    job.terminate()
            if len(signals.received) > 1:
                for job in running:
                    job.terminate(at_once=True)
            if stopped == "preempted":
                if not running:
                    break
                time.sleep(POLL_S)
                continue
            if stopped is None and timeout_s is not None and ctx.clock() - started >= timeout_s:
                stopped = "timeout"
                ctx.say(f"ftc: sweep timeout ({timeout_s:g} s) reached; no new trials are started")
            if ctx.choice.shared:
                fail_stale(ctx.study)
            count = tally(ctx.study)
            if stopped is None and free and count.done < total and count.can_start(total):
                trial = ctx.study.ask()
                if surplus(ctx.study, trial, total):
                    trial.set_user_attr(SURPLUS, True)
                    ctx.study.tell(trial, state=TrialState.FAIL)
                    continue
                slot = free.pop(0)
                job, heartbeat = _given_up(ctx, trial, lambda: begin(trial, slot)) or (None, None)
                if job is None:
                    free.append(slot)
                else:
                    running[job] = (slot, heartbeat)
                continue
            if not running and (stopped is not None or count.done >= total or
                                not (ctx.choice.shared and count.running)):
                break
            time.sleep(POLL_S)
    return stopped
