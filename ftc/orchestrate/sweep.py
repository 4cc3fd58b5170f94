"""A sweep's trial loop: draw -> compile with the trial's overrides -> write -> execute, in
`runs/<recipe>/sweep-<name>/trial-<n>/`. It sits above the compiler and the runtime: the optuna pieces it
drives (study, sampler, pruner, the training callback) are the runtime's (ftc.runtime.sweep), the compile is
the one build path (ftc.orchestrate.build).

Compiling each trial (instead of patching the plan) gives every trial the checks of a normal run: a draw
that makes the recipe invalid (it no longer fits memory, say) is a failed trial carrying its diagnostics.
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

from ftc.orchestrate.build import Build
from ftc.runtime.sweep.errors import SweepError
from ftc.runtime.sweep.space import Dimension, space_from_plan, suggest
from ftc.runtime.sweep.study import (INTERRUPTED, STUDY_FILE, counted, existing_trials, grid_size, make_pruner,
                                     make_sampler, open_study, quiet_optuna, requeue_interrupted)

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
    diagnostics: tuple[dict, ...] = ()  # a compile failure's diagnostics (code, message, location), as JSON

    def to_json(self) -> dict:
        return {"number": self.number, "state": self.state, "params": self.params,
                "overrides": list(self.overrides), "value": self.value, "wall_seconds": self.wall_seconds,
                "run_dir": self.run_dir, "error": self.error, "interrupted": self.interrupted,
                "diagnostics": list(self.diagnostics)}


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
    from ftc.runtime.sweep.callback import metric_keys

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


def sample(trial, space: tuple[Dimension, ...]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Every dimension drawn once: (params by target, the matching `--set` overrides)."""
    params = {dim.target: suggest(trial, dim) for dim in space}
    return params, tuple(override(dim, params[dim.target]) for dim in space)


def override(dim: Dimension, value: Any) -> str:
    """`--set` text for one drawn value, in the language's spelling: `train.lr=3.1e-05`, `train.warmup=37 steps`,
    `train.warmup=5%`; the trial compiles it like a value written by hand."""
    from ftc.compiler.spelling import spell

    return f"{dim.target}={spell(value, dim.unit)}"


@dataclass
class _Sweep:
    """One sweep while it runs: what every trial needs, set up once."""

    options: SweepOptions
    folder: Path
    study: Any
    space: tuple[Dimension, ...]
    metric: str
    direction: str
    total: int
    timeout: float | None
    execute: Callable
    say: Callable[[str], None]


def run_sweep(options: SweepOptions, base_plan, *, execute: Callable | None = None, out=None) -> SweepResult:
    """Run (or continue) the study of `base_plan` (the recipe compiled with the user's overrides, a loaded Plan)."""
    out = out or sys.stdout
    say = lambda msg: print(msg, file=out, flush=True)  # noqa: E731
    quiet_optuna()
    sweep, notes = _open(options, base_plan, execute or _default_execute, say)
    started = _clock()
    stopped = None
    while sum(counted(t) for t in sweep.study.trials) < sweep.total:
        if sweep.timeout is not None and _clock() - started >= sweep.timeout:
            stopped = "timeout"
            say(f"ftc: sweep timeout ({sweep.timeout:g} s) reached; no new trials are started")
            break
        if _run_trial(sweep) == "preempted":
            stopped = "preempted"
            break
    records = tuple(_record(t) for t in sweep.study.get_trials(deepcopy=False))
    complete = [r for r in records if r.state == "COMPLETE" and r.value is not None]
    pick = min if sweep.direction == "minimize" else max
    best = pick(complete, key=lambda r: r.value) if complete else None
    return SweepResult(sweep.folder, sweep.metric, sweep.direction, records, best, stopped, notes)


def _open(options: SweepOptions, base_plan, execute: Callable, say) -> tuple[_Sweep, tuple[str, ...]]:
    """The study to run: its space and budget from the plan's `sweep`, its folder new or continued."""
    spec = base_plan.sweep
    if spec is None:
        raise SweepError("the recipe has no `sweep` block")
    space = space_from_plan(spec.space)
    total = options.trials or spec.trials
    notes = []
    if spec.sampler == "grid" and grid_size(space) < total:
        notes.append(f"the grid has {grid_size(space)} points; running {grid_size(space)} trials, not {total}")
        total = grid_size(space)
    if spec.parallel > 1:
        notes.append(f"`parallel = {spec.parallel}`: trials run one at a time in this process")
    for note in notes:
        say(f"ftc: note: {note}")
    folder, continuing = find_sweep_folder(base_plan.runs_dir / base_plan.recipe_name, options.resume,
                                           options.name, say)
    folder.mkdir(parents=True, exist_ok=True)
    direction = spec.objective.direction
    sampler = make_sampler(spec.sampler, base_plan.train.seed + existing_trials(folder), space)
    study = open_study(folder, direction, sampler, options.pruner or make_pruner(spec.pruner))
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
        say(f"ftc: sweep {folder}: {total} trials, {direction} {spec.objective.metric}, sampler {spec.sampler}, "
            f"pruner {spec.pruner}")
    return _Sweep(options, folder, study, space, spec.objective.metric, direction, total, spec.timeout_s, execute,
                  say), tuple(notes)


def _run_trial(sweep: _Sweep) -> str | None:
    """Ask, compile, execute and tell one trial; "preempted" when the run was stopped by a signal."""
    import optuna
    from optuna.trial import TrialState

    from ftc.plan import UserError
    from ftc.runtime.sweep.callback import TrialReporter
    from ftc.runtime.train.run import RunOptions

    trial = sweep.study.ask()
    params, overrides = sample(trial, sweep.space)
    trial.set_user_attr("overrides", list(overrides))
    label = f"trial {trial.number}"
    sweep.say(f"ftc: {label}: " + "  ".join(overrides))
    started = _clock()
    plan = compile_trial(sweep.options, overrides, sweep.folder / "build" / f"trial-{trial.number}")
    if isinstance(plan, Build):  # the recipe with these values does not compile: its diagnostics
        _fail_compile(sweep, trial, plan, started, label)
        return None
    run_options = RunOptions(run_id=f"{sweep.folder.name}/trial-{trial.number}", merge=sweep.options.merge,
                             callbacks=(TrialReporter(trial, sweep.metric),))
    trial.set_user_attr("run_dir", f"trial-{trial.number}")
    try:
        result = sweep.execute(plan, run_options)
    except optuna.TrialPruned as exc:
        trial.set_user_attr("wall_seconds", round(_clock() - started, 3))
        sweep.study.tell(trial, state=TrialState.PRUNED)
        sweep.say(f"ftc: {label} {exc}")
        return None
    except UserError as exc:
        _fail(sweep.study, trial, str(exc), started)
        sweep.say(f"ftc: {label} failed: {exc}")
        return None
    except (KeyboardInterrupt, SystemExit):
        raise  # the trial stays RUNNING: `--resume auto` re-runs it
    except Exception as exc:  # a trial's crash (out of memory, a library error) must not end the sweep
        _fail(sweep.study, trial, f"{type(exc).__name__}: {exc}", started,
              detail="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        sweep.say(f"ftc: {label} failed: {type(exc).__name__}: {exc}")
        return None
    finally:
        _release_memory()
    return _tell_result(sweep, trial, result, started, label)


def _tell_result(sweep: _Sweep, trial, result, started: float, label: str) -> str | None:
    """A finished run: its objective told to the study, or the stop when it was preempted."""
    if result.status == "preempted":  # the trial stays RUNNING and re-runs on --resume
        options = sweep.options
        again = shlex.join(["ftc", "run", options.recipe, *(a for o in options.overrides for a in ("--set", o)),
                            "--resume", str(sweep.folder)])
        sweep.say(f"ftc: sweep stopped during {label}; continue with: {again}")
        return "preempted"
    try:
        value = objective_value(Path(result.run_dir) / "metrics.jsonl", sweep.metric)
    except SweepError as exc:
        _fail(sweep.study, trial, str(exc), started)
        raise
    if not math.isfinite(value):
        _fail(sweep.study, trial, f"{sweep.metric} is {value} (the run diverged)", started)
        sweep.say(f"ftc: {label} failed: {sweep.metric} is {value}")
        return None
    trial.set_user_attr("wall_seconds", round(_clock() - started, 3))
    sweep.study.tell(trial, value)
    sweep.say(f"ftc: {label} done: {sweep.metric} {value:.6g}")
    return None


def compile_trial(options: SweepOptions, overrides: tuple[str, ...], out_dir: Path):
    """The trial's plan (compiled, written, loaded), or the compile's error diagnostics when these values
    make the recipe invalid: values, rendered only where they are shown."""
    from ftc.orchestrate.build import build, write_folder
    from ftc.plan import load_plan


    built = build(options.recipe, tuple(options.overrides) + tuple(overrides), out_dir=out_dir)
    if not built.ok:
        return built
    write_folder(built.out_dir, built.files)
    return load_plan(built.out_dir)


def _fail_compile(sweep: _Sweep, trial, built, started: float, label: str) -> None:
    from ftc.compiler.render import render_all_text, to_json_obj

    text = render_all_text(list(built.errors), built.registry)
    trial.set_user_attr("diagnostics", [to_json_obj(d) for d in built.errors])
    _fail(sweep.study, trial, text, started)
    sweep.say(f"ftc: {label} failed: the recipe with these values does not compile:\n{text}")


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
                       t.user_attrs.get("run_dir"), t.user_attrs.get("error"), bool(t.user_attrs.get(INTERRUPTED)),
                       tuple(t.user_attrs.get("diagnostics", ())))

