"""A sweep's trial loop: draw -> compile with the trial's overrides -> write -> execute, in
`runs/<recipe>/sweep-<name>/trial-<n>/`. It sits above the compiler and the runtime: the optuna pieces it
drives (study, sampler, pruner, the training callback) are the runtime's (ftc.runtime.sweep), the compile is
the one build path (ftc.orchestrate.build).

Trials run in N slots (`parallel`), in this process or each in its own processes through the launcher
(ftc.orchestrate.sweep_jobs); a study shared by several workers (`storage`, `--worker`) counts theirs too
(ftc.runtime.sweep.schedule).

Compiling each trial (instead of patching the plan) gives every trial the checks of a normal run: a draw
that makes the recipe invalid (it no longer fits memory, say) is a failed trial carrying its diagnostics.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ftc.orchestrate.build import Build
from ftc.runtime.sweep.errors import SweepError
from ftc.runtime.sweep.space import Dimension, space_from_plan, suggest
from ftc.runtime.sweep.storage import has_study
from ftc.runtime.sweep.study import (counted, existing_trials, grid_size, make_pruner, make_sampler, open_study,
                                     quiet_optuna, requeue_interrupted)

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
    worker: bool = False  # --worker: join the shared study (created if new) and run trials until it has enough


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
    started_at: float | None = None  # unix seconds: the trial's training started
    ended_at: float | None = None  # unix seconds: its result was recorded
    worker: str | None = None  # host:pid of the sweep process that ran it

    def to_json(self) -> dict:
        return {"number": self.number, "state": self.state, "params": self.params,
                "overrides": list(self.overrides), "value": self.value, "wall_seconds": self.wall_seconds,
                "run_dir": self.run_dir, "error": self.error, "interrupted": self.interrupted,
                "diagnostics": list(self.diagnostics), "started_at": self.started_at, "ended_at": self.ended_at,
                "worker": self.worker}


@dataclass(frozen=True)
class SweepResult:
    folder: Path
    metric: str
    direction: str
    trials: tuple[TrialRecord, ...]
    best: TrialRecord | None
    stopped: str | None = None  # None (all trials done) | "timeout" | "preempted"
    notes: tuple[str, ...] = field(default_factory=tuple)


def find_sweep_folder(parent: Path, resume: str | None, name: str | None, say, *, join: bool = False
                      ) -> tuple[Path, bool]:
    """(folder, continuing). `auto`: the newest `sweep-*` with a study; a path: that sweep; else a new folder
    (`join`, a --worker: `sweep-<name>`, whether or not it exists yet)."""
    if resume == "auto":
        found = sorted((p for p in parent.glob("sweep-*") if has_study(p)),
                       key=lambda p: max(f.stat().st_mtime for f in p.glob("study.*")), reverse=True) \
            if parent.is_dir() else []
        if found:
            return found[0], True
        say(f"ftc: no sweep to continue under {parent}; starting a new one")
    elif resume:
        folder = Path(resume)
        if not has_study(folder):
            raise SweepError(f"--resume {resume}: not a sweep folder (no study.db or study.json)")
        return folder.resolve(), True
    base = f"sweep-{name}" if name else "sweep-" + time.strftime("%Y%m%d-%H%M%S")
    if join:
        return parent / base, has_study(parent / base)
    folder, n = parent / base, 1
    while has_study(folder):
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


def run_sweep(options: SweepOptions, base_plan, *, execute: Callable | None = None, out=None) -> SweepResult:
    """Run (or continue, or join as a worker) the study of `base_plan` (the recipe compiled with the user's
    overrides)."""
    import os

    from ftc.runtime.launch import needs_launcher
    from ftc.runtime.launch.spec import in_slurm_allocation

    from ftc.runtime.sweep.devices import plan_slots
    from ftc.runtime.sweep.schedule import run_trials
    from ftc.runtime.sweep.storage import choose

    from .sweep_jobs import TrialContext

    out = out or sys.stdout
    say = lambda msg: print(msg, file=out, flush=True)  # noqa: E731
    quiet_optuna()
    sweep = base_plan.sweep
    if sweep is None:
        raise SweepError("the recipe has no `sweep` block")
    space = space_from_plan(sweep.space)
    metric, direction = sweep.objective.metric, sweep.objective.direction
    total = options.trials or sweep.trials
    parallel = sweep.parallel
    choice = choose(sweep.storage)
    if options.worker and not choice.shared:
        raise SweepError("--worker joins a study shared by several processes: set `storage = journal` (one "
                         "machine or a shared file system) or a database URL in the sweep block")
    notes = []
    if sweep.sampler == "grid" and grid_size(space) < total:
        notes.append(f"the grid has {grid_size(space)} points; running {grid_size(space)} trials, not {total}")
        total = grid_size(space)
    for note in notes:
        say(f"ftc: note: {note}")
    launched = parallel > 1 or needs_launcher(base_plan)
    if base_plan.launch.nnodes > 1 and not in_slurm_allocation(os.environ):
        raise SweepError("a trial of this sweep spans several nodes: run the sweep inside a SLURM allocation "
                         "(srun starts every node of each trial), or sweep on one node")
    slots = plan_slots(base_plan.raw, parallel) if launched else [None]

    name = options.name or ("main" if options.worker else None)
    folder, continuing = find_sweep_folder(base_plan.runs_dir / base_plan.recipe_name, options.resume,
                                           name, say, join=options.worker)
    folder.mkdir(parents=True, exist_ok=True)
    study, study_name = _open(options, base_plan, folder, choice, direction, space, continuing, total, say)
    ctx = TrialContext(study, folder, metric, choice, study_name, options.merge, say, _clock, options.pruner)
    begin = _beginner(ctx, options, space, execute or _default_execute, launched)
    stopped = run_trials(ctx, total, slots, begin, sweep.timeout_s, launched=launched)
    if stopped == "preempted":
        again = shlex.join(["ftc", "run", options.recipe, *(a for o in options.overrides for a in ("--set", o)),
                            *(["--worker", "--run-id", folder.name[len("sweep-"):]] if options.worker
                              else ["--resume", str(folder)])])
        say(f"ftc: sweep stopped; continue with: {again}")
    return collect(study, folder, metric, direction, stopped, notes)


def _open(options, base_plan, folder: Path, choice, direction: str, space, continuing: bool, total: int, say):
    """The study of the sweep folder, created or continued; interrupted trials queued again."""
    import os

    from ftc.runtime.sweep.storage import fail_stale, study_name, write_marker

    name = study_name(folder, base_plan.recipe_name, choice)
    seed = base_plan.train.seed
    if base_plan.sweep.sampler != "grid":  # the grid's order comes from the seed: every process needs the same
        seed += existing_trials(folder) + (os.getpid() if options.worker else 0)
    sampler = make_sampler(base_plan.sweep.sampler, seed, space)
    study = open_study(folder, direction, sampler, options.pruner or make_pruner(base_plan.sweep.pruner),
                       choice=choice, name=name)
    write_marker(folder, choice, name)
    known = "overrides" in study.user_attrs
    if known:
        stored = study.user_attrs.get("overrides")
        if stored is not None and tuple(stored) != tuple(options.overrides):
            say(f"ftc: warning: this sweep started with --set {stored}; continuing with {list(options.overrides)}")
        requeued = fail_stale(study) if options.worker else requeue_interrupted(study)
        done = sum(counted(t, study.trials) for t in study.trials)
        verb = "joining" if options.worker else "continuing"
        say(f"ftc: {verb} {folder} ({choice.describe()}): {done} of {total} trials done"
            + (f"; re-running interrupted trial {', '.join(map(str, requeued))}" if requeued else ""))
    else:
        study.set_user_attr("recipe", base_plan.recipe_name)
        study.set_user_attr("metric", base_plan.sweep.objective.metric)
        study.set_user_attr("overrides", list(options.overrides))
        study.set_user_attr("space", {d.target: {"distribution": d.distribution, "args": list(d.args),
                                                 "unit": d.unit} for d in space})
        sweep = base_plan.sweep
        say(f"ftc: sweep {folder}: {total} trials, {direction} {sweep.objective.metric}, sampler {sweep.sampler}, "
            f"pruner {sweep.pruner}, {sweep.parallel} at once, storage {choice.describe()}")
    return study, name


def _beginner(ctx, options: SweepOptions, space, execute, launched: bool):
    """`begin(trial, slot)`: draw, compile and start one trial; (None, None) when it failed before starting."""
    from ftc.runtime.sweep.devices import trial_fits
    from ftc.runtime.sweep.storage import WORKER, worker_id

    from .sweep_jobs import InProcessJob, LaunchedJob, fail_compile, heartbeat_for, tell_failed

    def begin(trial, slot):
        trial.set_user_attr(WORKER, worker_id())
        heartbeat = heartbeat_for(ctx, trial)  # from the start: a worker that dies while compiling is noticed
        try:
            job = _prepare(trial, slot)
            if job is not None:
                job.start()  # in this process: the whole trial
        except BaseException:
            if heartbeat is not None:
                heartbeat.stop()
            raise
        if job is None and heartbeat is not None:
            heartbeat.stop()
        return job, heartbeat

    def _prepare(trial, slot):
        params, overrides = sample(trial, space)
        trial.set_user_attr("overrides", list(overrides))
        label = f"trial {trial.number}"
        ctx.say(f"ftc: {label}: " + "  ".join(overrides) + (f"  [{slot.describe}]" if slot is not None else ""))
        trial_started = _clock()
        plan = compile_trial(options, overrides, ctx.folder / "build" / f"trial-{trial.number}")
        if isinstance(plan, Build):  # the recipe with these values does not compile: its diagnostics
            fail_compile(ctx, trial, plan, trial_started, label)
            return None
        problem = trial_fits(plan.raw, slot) if slot is not None else None
        if problem is not None:
            tell_failed(ctx, trial, problem, trial_started)
            ctx.say(f"ftc: {label} failed: {problem}")
            return None
        trial.set_user_attr("run_dir", f"trial-{trial.number}")
        trial.set_user_attr("started_at", round(time.time(), 3))
        return LaunchedJob(ctx, trial, plan, slot, trial_started) if launched else \
            InProcessJob(ctx, trial, plan, execute, trial_started)

    return begin


def collect(study, folder: Path, metric: str, direction: str, stopped=None, notes=()) -> SweepResult:
    """The study's trials as records (surplus places left out) and the best completed one."""
    from ftc.runtime.sweep.schedule import SURPLUS

    trials = study.get_trials(deepcopy=False)
    records = tuple(_record(t, trials) for t in trials if not t.user_attrs.get(SURPLUS))
    complete = [r for r in records if r.state == "COMPLETE" and r.value is not None]
    pick = min if direction == "minimize" else max
    best = pick(complete, key=lambda r: r.value) if complete else None
    return SweepResult(folder, metric, direction, records, best, stopped, tuple(notes))


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


def _default_execute(plan, options):
    from ftc.runtime.train.run import execute

    return execute(plan, options)


def _record(t, trials=()) -> TrialRecord:
    from ftc.runtime.sweep.storage import interrupted_numbers

    wall = t.user_attrs.get("wall_seconds")
    if wall is None and t.datetime_start and t.datetime_complete:
        wall = round((t.datetime_complete - t.datetime_start).total_seconds(), 3)
    return TrialRecord(t.number, t.state.name, dict(t.params), tuple(t.user_attrs.get("overrides", ())),
                       t.value if t.state.name in ("COMPLETE", "PRUNED") else None, wall,
                       t.user_attrs.get("run_dir"), t.user_attrs.get("error"),
                       t.number in interrupted_numbers(trials or (t,)), tuple(t.user_attrs.get("diagnostics", ())),
                       t.user_attrs.get("started_at"), t.user_attrs.get("ended_at"), t.user_attrs.get("worker"))
