"""Executing a plan in one process: model, data, Trainer, checkpoints, preemption, outputs.
`execute` returns a value; the command line turns it into messages and an exit code."""

from __future__ import annotations

import errno
import json
import os
import pickle
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ftc.plan import Plan

from .errors import EXIT_OK, EXIT_PREEMPTED, NoSpaceError, RunError
from .resume import find_resume
from .tracking import finish_wandb, wandb_env


@dataclass(frozen=True)
class RunOptions:
    resume: str | None = None  # None | "auto" | a checkpoint or run folder
    run_id: str | None = None  # default: a timestamp
    merge: bool | None = None  # None: as the plan says
    callbacks: tuple = ()  # extra Trainer callbacks, e.g. a sweep trial's metric reporter


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    status: str  # completed | preempted
    exit_code: int
    summary: dict = field(default_factory=dict)


def _prepare_data(plan: Plan, tokenizer, run_dir: Path):
    from ftc.runtime.data import DataError, default_cache_dir, prepare

    from . import faults

    faults.data_point()  # tests only: a signal while the data is prepared

    spec = plan.raw["data"]  # the data pipeline reads the section as plain JSON (DataSpec)
    cache = default_cache_dir(plan.data.cache_dir, plan.output.runs_dir, plan.folder)
    try:
        from ftc.runtime.launch.rank import current

        # each node's local rank 0 prepares (under the cache's file lock); the other ranks wait for the entry
        return prepare(spec, tokenizer, base_dir=plan.folder, cache_dir=cache,
                       is_main_process=current().is_local_main)
    except DataError as exc:
        raise RunError(f"data: {exc}") from None


def is_no_space(exc: BaseException) -> bool:
    """ENOSPC or EDQUOT; torch's checkpoint writer reports them as a RuntimeError naming the failed write."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    text = str(exc)
    return "No space left on device" in text or "Disk quota exceeded" in text or "file write failed" in text


def no_space(exc: BaseException, manager, *, main_rank: bool = True) -> NoSpaceError:
    """The disk filled up during a save: drop the partial checkpoint (it only takes space) and say what is
    left and what to do. Only the main rank removes it: other ranks may still be writing into the same folder
    (the next run removes what is left)."""
    import shutil

    from .checkpoints import newest_verified

    if main_rank:
        shutil.rmtree(manager.staging, ignore_errors=True)
        manager.staging.mkdir(exist_ok=True)
    newest = newest_verified(manager.root)
    kept = f"the last complete checkpoint, {newest.path.name}, is intact" if newest else "no checkpoint was completed"
    partial = "was removed" if main_rank else "is removed when the run continues"
    return NoSpaceError(f"no space left on the device while writing {getattr(exc, 'filename', None) or 'a checkpoint'}; "
                        f"the partial checkpoint {partial} and {kept}. Free space under {manager.root.parent} (or "
                        "lower checkpoint.keep_last), then continue with: ftc run ... --resume auto")


def _reward_summary(metrics: list[dict]) -> dict:
    """Preference objectives: the first and last evaluated reward accuracy and margin."""
    out = {}
    for key in ("eval_rewards_accuracies", "eval_rewards_margins"):
        values = [m[key] for m in metrics if key in m]
        if values:
            name = key[len("eval_rewards_"):]
            out[f"first_eval_reward_{name}"], out[f"final_eval_reward_{name}"] = values[0], values[-1]
    return out


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def execute(plan: Plan, options: RunOptions = RunOptions(), *,
            prepare_data: Callable[[Plan, Any, Path], Any] | None = None, out=None) -> RunResult:
    """Run the plan to completion or preemption. Raises RunError for problems the user can fix.
    From the first line on, SIGTERM/SIGINT is a stop request (signals.py): one during model loading or data
    preparation stops the run before training; one during the final outputs lets them finish."""
    from .signals import Preemption

    with Preemption() as preemption:
        return _execute(plan, options, preemption, prepare_data=prepare_data, out=out)


def _execute(plan: Plan, options: RunOptions, preemption, *, prepare_data, out) -> RunResult:
    from ftc.runtime.launch.rank import current

    from .model import load_model
    from .trainer import build_trainer

    out = out or sys.stdout
    started = time.perf_counter()
    say = lambda msg: print(msg, file=out, flush=True)  # noqa: E731
    rank = current()  # one process: rank 0 of 1
    run_dir, point = _open_run_dir(plan, options, rank, say)
    loaded = load_model(plan)
    say(f"ftc: {plan.method.kind} on {loaded.source}: {loaded.trainable_params:,} trainable of "
        f"{loaded.total_params:,} parameters")
    data = (prepare_data or _prepare_data)(plan, loaded.tokenizer, run_dir)
    if data.train is None or len(data.train) == 0:
        raise RunError("the training set is empty after preparation")
    _check_inputs(run_dir, point, data, loaded.tokenizer, rank)
    hooks = _hooks(plan, run_dir, options, out, preemption)
    trainer = build_trainer(plan, loaded.model, loaded.tokenizer, data, output_dir=run_dir / "checkpoints",
                            callbacks=hooks.callbacks, report_to=hooks.report_to, resuming=point is not None)
    for note in getattr(getattr(trainer, "ftc_speedups", None), "notes", ()):  # a switch that fell back
        say(f"ftc: {note}")
    stopped = _stop_before_training(trainer, preemption, run_dir, point, say)
    if stopped is not None:
        return stopped
    train_seconds = _train(trainer, hooks, point)
    state = trainer.state
    # a signal during the very last step still leaves a finished training: finish the outputs too
    status = "preempted" if hooks.preemption.requested and state.global_step < state.max_steps else "completed"
    final_dir = _final_outputs(trainer, loaded, data, run_dir) if status == "completed" else None
    if not rank.is_main:  # reports, merge and summary are rank 0's
        return RunResult(run_dir, status, EXIT_PREEMPTED if status == "preempted" else EXIT_OK, {})
    merged_dir = None
    if status == "completed":
        from .outputs import merge_lora

        merge = plan.output.merge if options.merge is None else options.merge
        if merge and plan.method.kind in ("lora", "qlora"):
            merged_dir = merge_lora(plan, final_dir, loaded.source, run_dir)
    timing = {"train_seconds": train_seconds, "wall_seconds": time.perf_counter() - started,
              "tokens_per_second": hooks.progress.rates(state)[0]}
    summary = _summary(plan, run_dir, trainer, loaded, status, point, timing, final_dir, merged_dir)
    return _report(run_dir, status, summary, hooks.preemption, state, say)


def _open_run_dir(plan: Plan, options: RunOptions, rank, say):
    """The run folder (continued when resuming, else new) with the compiled folder copied in; the resume point."""
    from ftc.runtime.launch.rank import shared_run_dir

    from .callbacks import truncate_metrics
    from .outputs import copy_compiled, new_run_dir

    point = find_resume(plan, options.resume)
    if point is not None:
        run_dir = point.run_dir
        say(f"ftc: resuming {run_dir} from {point.checkpoint.name} (step {point.step}, manifest verified)")
        if not _same_plan(run_dir, plan):
            print("warning: the plan differs from the one this run started with; resume may not be exact",
                  file=sys.stderr)
        if rank.is_main:
            truncate_metrics(run_dir / "metrics.jsonl", point.step)
    else:
        run_dir = shared_run_dir(plan.runs_dir / plan.recipe_name, options.run_id) or new_run_dir(plan, options.run_id)
        say(f"ftc: run folder {run_dir}")
    if rank.is_main:
        copy_compiled(plan, run_dir)
    return run_dir, point


def _check_inputs(run_dir: Path, point, data, tokenizer, rank) -> None:
    """A new run records its data and tokenizer; a resumed one must still have the same (inputs.py)."""
    from . import inputs

    used = inputs.fingerprints(data, tokenizer)
    if point is not None:
        inputs.check(run_dir, used)
    elif rank.is_main:
        inputs.record(run_dir, used)


def _stop_before_training(trainer, preemption, run_dir: Path, point, say) -> RunResult | None:
    """The test fault hooks installed; a signal that came while the model loaded or the data was prepared stops
    the run here (every rank agrees, as at a step boundary)."""
    from ftc.runtime.launch.rank import any_rank

    from . import faults

    for cb in faults.install(trainer):  # tests only (FTC_FAULT)
        trainer.add_callback(cb)
    if not any_rank(preemption.requested is not None):
        return None
    say(f"ftc: stopped by {preemption.requested or 'a signal on another rank'} before training started; nothing "
        f"new to save. Run the same command again (with --resume auto it continues from "
        f"{point.checkpoint.name if point else 'the start'})")
    return RunResult(run_dir, "preempted", EXIT_PREEMPTED, {})


def _same_plan(run_dir: Path, plan: Plan) -> bool:
    """Whether the run folder's copy of plan.json (what the run started with) is this plan."""
    from ftc.plan import PlanError, load_plan

    if not (run_dir / "plan.json").is_file():
        return True
    try:
        return load_plan(run_dir).raw == plan.raw
    except PlanError:  # a copy this ftc cannot read is not the same plan
        return False


@dataclass(frozen=True)
class _Hooks:
    """What watches the training: the Trainer callbacks, the trackers it reports to, and the signal handler."""

    callbacks: list
    report_to: list
    tracking_env: dict  # what the trackers read from the environment (mlflow, wandb), set only while training
    progress: Any
    preemption: Any


def _hooks(plan: Plan, run_dir: Path, options: RunOptions, out, preemption) -> _Hooks:
    from .callbacks import MetricsCallback, PreemptionCallback, ProgressCallback

    backends = plan.tracking.backends
    report_to, tracking_env = [], {}
    if "mlflow" in backends:  # read by transformers' MLflowCallback when training starts
        tracking_env = {"MLFLOW_TRACKING_URI": plan.tracking.mlflow_uri or f"sqlite:///{run_dir / 'mlflow.db'}",
                        "MLFLOW_EXPERIMENT_NAME": plan.recipe_name, "MLFLOW_RUN_NAME": run_dir.name}
        report_to.append("mlflow")
    if "wandb" in backends:  # read by wandb.init in transformers' WandbCallback
        tracking_env.update(wandb_env(plan.tracking.wandb, run_dir))
        report_to.append("wandb")
    progress = ProgressCallback(out)
    callbacks = [progress,
                 MetricsCallback(run_dir / "metrics.jsonl",
                                 run_dir / "tensorboard" if "tensorboard" in backends else None),
                 PreemptionCallback(preemption)]
    callbacks += list(options.callbacks)
    return _Hooks(callbacks, report_to, tracking_env, progress, preemption)


def _train(trainer, hooks: _Hooks, point) -> float:
    """trainer.train() (the signal handler is execute's), with the tracker's environment set only meanwhile;
    seconds. A full disk and a refused checkpoint pickle become messages."""
    train_started = time.perf_counter()
    saved_env = {k: os.environ.get(k) for k in hooks.tracking_env}
    os.environ.update(hooks.tracking_env)
    try:
        trainer.train(resume_from_checkpoint=str(point.checkpoint) if point else None)
    except (OSError, RuntimeError) as exc:
        if not is_no_space(exc):
            raise
        raise no_space(exc, trainer.ftc_checkpoints, main_rank=trainer.is_world_process_zero()) from None
    except pickle.UnpicklingError as exc:  # torch.load(weights_only=True) met a pickle that is more than tensors
        raise RunError(f"cannot resume from {point.checkpoint if point else 'the checkpoint'}: one of its files "
                       f"holds more than tensors and weights_only loading refused it, so nothing in it ran "
                       f"({str(exc).splitlines()[-1] if str(exc) else 'unpickling error'}). Resume from an earlier "
                       "checkpoint you trust (--resume PATH), or start a new run") from None
    finally:
        if "wandb" in hooks.report_to:
            finish_wandb()
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return time.perf_counter() - train_started


def _final_outputs(trainer, loaded, data, run_dir: Path) -> Path:
    """A final evaluation unless the last step had one, then the final weights (every rank: ZeRO-3/FSDP
    gather them)."""
    from .outputs import save_final
    from .trainer import metric_key

    state = trainer.state
    key = metric_key("eval_loss")
    evaluated = [m for m in state.log_history if key in m and m.get("step") == state.global_step]
    if data.eval is not None and not evaluated:
        trainer.evaluate()
    return save_final(trainer, loaded.tokenizer, run_dir)


def _peak_gpu_bytes() -> int | None:
    try:
        import torch

        if torch.cuda.is_available():
            return int(torch.cuda.max_memory_allocated())
    except Exception:  # pragma: no cover - a broken CUDA setup must not lose the summary
        pass
    return None


def _summary(plan: Plan, run_dir: Path, trainer, loaded, status: str, point, timing: dict,
             final_dir: Path | None, merged_dir: Path | None) -> dict:
    """summary.json: the run's outcome, its losses, throughput and peaks (added to a resumed run's own)."""
    from .checkpoints import list_complete
    from .outputs import loss_curve, read_metrics

    state = trainer.state
    metrics = read_metrics(run_dir / "metrics.jsonl")
    curve = loss_curve(metrics, run_dir / "loss_curve.png", f"{plan.recipe_name} / {run_dir.name}")
    evals = [(m["step"], m["eval_loss"]) for m in metrics if "eval_loss" in m]
    losses = [m["loss"] for m in metrics if "loss" in m]
    checkpoints = list_complete(run_dir / "checkpoints")
    best = trainer.ftc_checkpoints.best(checkpoints)
    previous = {}
    if (run_dir / "summary.json").is_file():
        previous = json.loads((run_dir / "summary.json").read_text())
    resumed = point is not None
    return {
        "recipe": plan.recipe_name,
        "run_id": run_dir.name,
        "status": status,
        "method": plan.method.kind,
        "model": loaded.source,  # resolved: the folder or hub id the weights came from
        "global_step": state.global_step,
        "max_steps": state.max_steps,
        "epoch": state.epoch,
        "first_train_loss": losses[0] if losses else None,
        "final_train_loss": losses[-1] if losses else None,
        "first_eval_loss": evals[0][1] if evals else None,
        "final_eval_loss": evals[-1][1] if evals else None,
        "best_eval_loss": min(v for _, v in evals) if evals else None,
        "best_eval_step": min(evals, key=lambda e: e[1])[0] if evals else None,
        "tokens_seen": state.num_input_tokens_seen,
        "tokens_per_second": round(timing["tokens_per_second"], 1),
        "train_seconds": round(timing["train_seconds"] + previous.get("train_seconds", 0.0) * resumed, 3),
        "wall_seconds": round(timing["wall_seconds"] + previous.get("wall_seconds", 0.0) * resumed, 3),
        "peak_rss_bytes": max(peak_rss_bytes(), previous.get("peak_rss_bytes") or 0),
        "peak_gpu_bytes": _peak_gpu_bytes(),
        "trainable_params": loaded.trainable_params,
        "total_params": loaded.total_params,
        "checkpoints": [{"name": c.path.name, "step": c.step, "metric": c.metric_name, "value": c.metric}
                        for c in checkpoints],
        "best_checkpoint": best.path.name if best else None,
        "resumed_from": ([*previous.get("resumed_from", []), point.checkpoint.name] if point else []),
        "final_dir": final_dir.name if final_dir else None,
        "merged_dir": merged_dir.name if merged_dir else None,
        "loss_curve": curve.name if curve else None,
        **_reward_summary(metrics),
    }


def _report(run_dir: Path, status: str, summary: dict, preemption, state, say) -> RunResult:
    """summary.json written, the closing line said, the result returned."""
    from .outputs import write_json_atomic

    write_json_atomic(run_dir / "summary.json", summary)
    if status == "preempted":
        say(f"ftc: stopped by {preemption.requested} at step {state.global_step}; full checkpoint saved. "
            f"Continue with: ftc run ... --resume auto  (or --resume {run_dir})")
        return RunResult(run_dir, status, EXIT_PREEMPTED, summary)
    evals = summary["first_eval_loss"] is not None
    say(f"ftc: done in {summary['wall_seconds']:.1f} s: step {state.global_step}, "
        + (f"eval loss {summary['first_eval_loss']:.4f} -> {summary['final_eval_loss']:.4f}, " if evals else "")
        + f"{summary['tokens_per_second']:,.0f} tokens/s; outputs in {run_dir}")
    return RunResult(run_dir, status, EXIT_OK, summary)
