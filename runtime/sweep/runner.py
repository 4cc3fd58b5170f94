"""A sweep: an optuna study whose trials are real runs of the recipe, each compiled again with its own
`--set` overrides and executed in `runs/<recipe>/sweep-<name>/trial-<n>/`.

Compiling each trial (instead of patching the plan) gives every trial the checks of a normal run: a draw
that makes the recipe invalid (it no longer fits memory, say) is a failed trial with the diagnostic text.
"""

from __future__ import annotations

import gc
import json
import math
import shlex
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import SweepError
from .space import sample, space_from_plan
from .study import (INTERRUPTED, STUDY_FILE, counted, existing_trials, grid_size, make_pruner, make_sampler,
                    open_study, quiet_optuna, requeue_interrupted)

_clock = time.monotonic  # the sweep's timeout and trial wall times (a test replaces it)


@dataclass(frozen=True)
class SweepOptions:
    recipe: str  # the .ftspec each trial compiles
    overrides: tuple[str, ...] = ()  # the user's --set, applied to every trial before the trial's own
    trials: int | None = None  # --trials: total trials instead of the recipe's `trials`
    resume: str | None = None  # None | "auto" | a sweep folder
    name: str | None = None  # --run-id: the sweep folder is `sweep-<name>` (default: a timestamp)
    merge: bool | None = None
    pruner: Any = None  # an optuna pruner instead of the plan's (tests)


@dataclass(frozen=True)
class TrialRecord:
    number: int
    state: str  # COMPLETE | PRUNED | FAIL | RUNNING | WAITING
    params: dict
    overrides: tuple[str, ...]
    value: float | None
    wall_seconds: float | None
    run_dir: str | None  # relative to the sweep folder
    error: str | None = None
    interrupted: bool = False

    def to_json(self) -> dict:
        return {"number": self.number, "state": self.state, "params": self.params,
                "overrides": list(self.overrides), "value": self.value, "wall_seconds": self.wall_seconds,
                "run_dir": self.run_dir, "error": self.error, "interrupted": self.interrupted}


@dataclass(frozen=True)
class SweepResult:
    folder: Path
    metric: str
    direction: str
    trials: tuple[TrialRecord, ...]
    best: TrialRecord | None
    stopped: str | None = None  # None (all trials done) | "timeout" | "preempted"
    notes: tuple[str, ...] = field(default_factory=tuple)


def find_sweep_folder(parent: Path, resume: str | None, name: str | None, say) -> tuple[Path, bool]:
    """(folder, continuing). `auto`: the newest `sweep-*` with a study; a path: that sweep; else a new folder."""
    if resume == "auto":
        found = sorted((p for p in parent.glob("sweep-*") if (p / STUDY_FILE).is_file()),
                       key=lambda p: (p / STUDY_FILE).stat().st_mtime, reverse=True) if parent.is_dir() else []
        if found:
            return found[0], True
        say(f"ftc: no sweep to continue under {parent}; starting a new one")
    elif resume:
        folder = Path(resume)
        if not (folder / STUDY_FILE).is_file():
            raise SweepError(f"--resume {resume}: not a sweep folder (no {STUDY_FILE})")
        return folder.resolve(), True
    base = f"sweep-{name}" if name else "sweep-" + time.strftime("%Y%m%d-%H%M%S")
    folder, n = parent / base, 1
    while (folder / STUDY_FILE).exists():
        if name:
            raise SweepError(f"{folder} already holds a sweep; continue it with --resume {folder}, "
                             "or choose another --run-id")
        n += 1
        folder = parent / f"{base}-{n}"
    return folder, False


def objective_value(metrics_file: Path, metric: str) -> float:
    """The objective's last logged value in a run's metrics.jsonl (the final evaluation)."""
    from .callback import metric_keys

    records = []
    if metrics_file.is_file():
        records = [json.loads(line) for line in metrics_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    for key in metric_keys(metric):
        values = [r[key] for r in records if isinstance(r.get(key), (int, float))]
        if values:
            return float(values[-1])
    seen = sorted({k for r in records for k, v in r.items() if isinstance(v, (int, float))}
                  - {"step", "epoch", "tokens", "time"})
    raise SweepError(f"the sweep objective `{metric}` never appears in the run's metrics "
                     f"({metrics_file}); metrics logged: {', '.join(seen) or 'none'}")


def run_sweep(options: SweepOptions, base_plan, *, execute: Callable | None = None, out=None) -> SweepResult:
    """Run (or continue) the study of `base_plan` (the recipe compiled with the user's overrides)."""
    import optuna
    from optuna.trial import TrialState

    from ftc.runtime.train.errors import RunError
    from ftc.runtime.train.run import RunOptions

    from .callback import TrialReporter

    out = out or sys.stdout
    say = lambda msg: print(msg, file=out, flush=True)  # noqa: E731
    quiet_optuna()
    sweep = base_plan.raw["sweep"]
    if not sweep:
        raise SweepError("the recipe has no `sweep` block")
    space = space_from_plan(sweep)
    metric, direction = sweep["objective"]["metric"], sweep["objective"]["direction"]
    total = options.trials or int(sweep["trials"])
    notes = []
    if sweep["sampler"] == "grid" and grid_size(space) < total:
        notes.append(f"the grid has {grid_size(space)} points; running {grid_size(space)} trials, not {total}")
        total = grid_size(space)
    if int(sweep.get("parallel") or 1) > 1:
        notes.append(f"`parallel = {sweep['parallel']}`: trials run one at a time in this process")
    for note in notes:
        say(f"ftc: note: {note}")

    folder, continuing = find_sweep_folder(base_plan.runs_dir / base_plan.recipe_name, options.resume,
                                           options.name, say)
    folder.mkdir(parents=True, exist_ok=True)
    sampler = make_sampler(sweep["sampler"], base_plan.train.seed + existing_trials(folder), space)
    study = open_study(folder, direction, sampler, options.pruner or make_pruner(sweep["pruner"]))
    if continuing:
        stored = study.user_attrs.get("overrides")
        if stored is not None and tuple(stored) != tuple(options.overrides):
            say(f"ftc: warning: this sweep started with --set {stored}; continuing with {list(options.overrides)}")
        requeued = requeue_interrupted(study)
        done = sum(counted(t) for t in study.trials)
        say(f"ftc: continuing {folder}: {done} of {total} trials done"
            + (f"; re-running interrupted trial {', '.join(map(str, requeued))}" if requeued else ""))
    else:
        study.set_user_attr("recipe", base_plan.recipe_name)
        study.set_user_attr("overrides", list(options.overrides))
        study.set_user_attr("space", {d.target: {"distribution": d.distribution, "args": list(d.args),
                                                 "unit": d.unit} for d in space})
        say(f"ftc: sweep {folder}: {total} trials, {direction} {metric}, sampler {sweep['sampler']}, "
            f"pruner {sweep['pruner']}")

    execute = execute or _default_execute
    started = _clock()
    timeout = sweep.get("timeout_s")
    stopped = None
    while sum(counted(t) for t in study.trials) < total:
        if timeout is not None and _clock() - started >= timeout:
            stopped = "timeout"
            say(f"ftc: sweep timeout ({timeout:g} s) reached; no new trials are started")
            break
        trial = study.ask()
        params, overrides = sample(trial, space)
        trial.set_user_attr("overrides", list(overrides))
        label = f"trial {trial.number}"
        say(f"ftc: {label}: " + "  ".join(overrides))
        trial_started = _clock()
        plan = _compile_trial(options, overrides, folder / "build" / f"trial-{trial.number}")
        if isinstance(plan, str):
            trial.set_user_attr("error", plan)
            trial.set_user_attr("wall_seconds", round(_clock() - trial_started, 3))
            study.tell(trial, state=TrialState.FAIL)
            say(f"ftc: {label} failed: the recipe with these values does not compile:\n{plan}")
            continue
        reporter = TrialReporter(trial, metric)
        run_options = RunOptions(run_id=f"{folder.name}/trial-{trial.number}", merge=options.merge,
                                 callbacks=(reporter,))
        trial.set_user_attr("run_dir", f"trial-{trial.number}")
        try:
            result = execute(plan, run_options)
        except optuna.TrialPruned as exc:
            trial.set_user_attr("wall_seconds", round(_clock() - trial_started, 3))
            study.tell(trial, state=TrialState.PRUNED)
            say(f"ftc: {label} {exc}")
            continue
        except RunError as exc:
            _fail(study, trial, str(exc), trial_started)
            say(f"ftc: {label} failed: {exc}")
            continue
        except (KeyboardInterrupt, SystemExit):
            raise  # the trial stays RUNNING: `--resume auto` re-runs it
        except Exception as exc:  # a trial's crash (out of memory, a library error) must not end the sweep
            _fail(study, trial, f"{type(exc).__name__}: {exc}", trial_started,
                  detail="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
            say(f"ftc: {label} failed: {type(exc).__name__}: {exc}")
            continue
        finally:
            _release_memory()
        if result.status == "preempted":
            stopped = "preempted"  # the trial stays RUNNING and re-runs on --resume
            again = shlex.join(["ftc", "run", options.recipe, *(a for o in options.overrides for a in ("--set", o)),
                                "--resume", str(folder)])
            say(f"ftc: sweep stopped during {label}; continue with: {again}")
            break
        try:
            value = objective_value(Path(result.run_dir) / "metrics.jsonl", metric)
        except SweepError as exc:
            _fail(study, trial, str(exc), trial_started)
            raise
        if not math.isfinite(value):
            _fail(study, trial, f"{metric} is {value} (the run diverged)", trial_started)
            say(f"ftc: {label} failed: {metric} is {value}")
            continue
        trial.set_user_attr("wall_seconds", round(_clock() - trial_started, 3))
        study.tell(trial, value)
        say(f"ftc: {label} done: {metric} {value:.6g}")

    records = tuple(_record(t) for t in study.get_trials(deepcopy=False))
    complete = [r for r in records if r.state == "COMPLETE" and r.value is not None]
    pick = min if direction == "minimize" else max
    best = pick(complete, key=lambda r: r.value) if complete else None
    return SweepResult(folder, metric, direction, records, best, stopped, tuple(notes))


def _compile_trial(options: SweepOptions, overrides: tuple[str, ...], out_dir: Path):
    """The trial's plan, or the rendered diagnostics when these values make the recipe invalid."""
    from ftc.commands.compile import write_folder
    from ftc.compiler.emit import emit
    from ftc.compiler.pipeline import compile_recipe
    from ftc.compiler.render import render_all_text
    from ftc.plan import load_plan

    compiled = compile_recipe(options.recipe, tuple(options.overrides) + tuple(overrides), out_dir=out_dir)
    if compiled.plan is None:
        errors = [d for d in compiled.diagnostics if d.is_error]
        return render_all_text(errors, compiled.registry)
    write_folder(compiled.out_dir, emit(compiled.plan))
    return load_plan(compiled.out_dir)


def _release_memory() -> None:
    """Trials share the process: free the last trial's model before the next one loads, and restart the
    GPU peak counter so each run's summary reports its own peak."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _default_execute(plan, options):
    from ftc.runtime.train.run import execute

    return execute(plan, options)


def _fail(study, trial, message: str, started: float, detail: str | None = None) -> None:
    from optuna.trial import TrialState

    trial.set_user_attr("error", message)
    if detail:
        trial.set_user_attr("traceback", detail)
    trial.set_user_attr("wall_seconds", round(_clock() - started, 3))
    study.tell(trial, state=TrialState.FAIL)


def _record(t) -> TrialRecord:
    wall = t.user_attrs.get("wall_seconds")
    if wall is None and t.datetime_start and t.datetime_complete:
        wall = round((t.datetime_complete - t.datetime_start).total_seconds(), 3)
    return TrialRecord(t.number, t.state.name, dict(t.params), tuple(t.user_attrs.get("overrides", ())),
                       t.value if t.state.name in ("COMPLETE", "PRUNED") else None, wall,
                       t.user_attrs.get("run_dir"), t.user_attrs.get("error"), bool(t.user_attrs.get(INTERRUPTED)))

