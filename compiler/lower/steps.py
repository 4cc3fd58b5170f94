"""Passes for how long it runs: steps (declared, counted from local files, or left to the runtime),
the optimizer and schedule, and precision."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from ftc.compiler.lower.builder import Lowering, plain_number
from ftc.compiler.resolve import DERIVED
from ftc.compiler.units import Amount
from ftc.plan.steps import trainer_steps_per_epoch

LOG_LINES_PER_RUN = 50
COUNTABLE_SUFFIXES = (".jsonl", ".json", ".csv", ".txt")
COUNT_LIMIT_BYTES = 256 * 2**20  # larger local files are counted by the runtime
INFO_COUNT_LIMIT_BYTES = 16 * 2**20  # rows counted only for the report (steps from the data need no count)


def count_rows(path: Path, limit: int = COUNT_LIMIT_BYTES) -> int | None:
    """Rows of a local data file, counted without the data libraries; None when it cannot be told cheaply."""
    try:
        if not path.is_file() or path.stat().st_size > limit:
            return None
        data = path.read_bytes()
    except OSError:
        return None
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            return sum(1 for line in data.splitlines() if line.strip())
        if suffix == ".txt":
            return len(data.decode("utf-8").splitlines())
        if suffix == ".csv":
            rows = sum(1 for _ in csv.reader(io.StringIO(data.decode("utf-8"))))
            return max(rows - 1, 0)
        if suffix == ".json":
            loaded = json.loads(data)
            return len(loaded) if isinstance(loaded, list) else None
    except (UnicodeDecodeError, ValueError, csv.Error):
        return None
    return None


def _train_rows(lw: Lowering, limit: int) -> int | None:
    total = 0
    for value in lw.recipe.value("data.train"):
        path = lw.recipe.local_path("data.train", value)
        if path is None:
            return None
        if path.suffix.lower() not in COUNTABLE_SUFFIXES:
            return None
        rows = count_rows(path, limit)
        if rows is None:
            return None
        total += rows
    return total


def _rows_are_examples(lw: Lowering) -> bool:
    """Whether the training set has exactly as many examples as the files have rows."""
    data = lw.plan["data"]
    return (not data["packing"] and data["dedup"] == "none" and data["eval_split"] == 0.0
            and data["on_bad_rows"] == "error" and data["truncation"] != "drop")


def _examples(lw: Lowering, rows: int | None) -> int | None:
    """Training examples from the files' rows: at most `max_samples`, less an `eval_split` of N rows."""
    data = lw.plan["data"]
    if rows is None:
        return None
    rows = min(rows, data.get("max_samples") or rows)
    return max(rows - (data.get("eval_rows") or 0), 0)


def lower_steps(lw: Lowering) -> None:
    r = lw.recipe
    batch = lw.plan["batch"]
    exact = _rows_are_examples(lw)
    rows = _train_rows(lw, COUNT_LIMIT_BYTES if exact else INFO_COUNT_LIMIT_BYTES)
    steps_per_epoch = None
    examples = _examples(lw, rows)
    if examples == 0 and lw.plan["data"].get("eval_rows"):
        kept = min(rows, lw.plan["data"].get("max_samples") or rows)
        lw.sink.error("E0520", f"`eval_split = {lw.plan['data']['eval_rows']} rows` leaves no training rows: the "
                      f"training files have {kept} row{'s' * (kept != 1)}", lw.span("data.eval_split"),
                      label="holds out every row", help="hold out fewer rows, or a share (`eval_split = 5%`)")
    if examples is not None and examples > 0 and exact and batch is not None:
        steps_per_epoch = trainer_steps_per_epoch(examples, batch["micro_batch"], batch["grad_accum"],
                                                  batch["data_parallel_world"])
    max_steps = r.value("train.max_steps")
    epochs = r.value("train.epochs")
    if isinstance(max_steps, Amount):
        total, source = int(max_steps.value), "declared"
    elif isinstance(epochs, Amount) and steps_per_epoch is not None:
        total, source = math.ceil(epochs.value * steps_per_epoch), "data"
    else:
        total, source = None, "runtime"
    lw.plan["steps"] = {"steps_per_epoch": steps_per_epoch, "total_steps": total, "source": source,
                        "train_rows": rows}


def every_steps(lw: Lowering, key: str) -> int | None:
    """An interval in steps; given in epochs, converted when the steps per epoch are known now (else None:
    see `every_epochs`)."""
    value = lw.recipe.value(key)
    if not isinstance(value, Amount):
        return None
    if value.unit == "steps":
        return int(value.value)
    spe = lw.plan["steps"]["steps_per_epoch"]
    if spe is None:
        return None
    return max(int(math.ceil(value.value * spe)), 1)


def every_epochs(lw: Lowering, key: str) -> dict:
    """`{plan_key: epochs}` for an interval in epochs whose steps are known only when the data is read: the
    plan carries the unit and the runtime converts it with the prepared data set's length. Empty otherwise."""
    value = lw.recipe.value(key)
    if isinstance(value, Amount) and value.unit == "epochs" and lw.plan["steps"]["steps_per_epoch"] is None:
        return {"every_epochs" if key.startswith("checkpoint.") else "eval_every_epochs": plain_number(value.value)}
    return {}


def lower_train(lw: Lowering) -> None:
    r = lw.recipe
    steps = lw.plan["steps"]
    total = steps["total_steps"]
    warmup = r.value("train.warmup")
    warmup_steps, warmup_ratio = 0, None
    if isinstance(warmup, Amount) and warmup.unit == "steps":
        warmup_steps = int(warmup.value)
        if total is not None and warmup_steps >= total:
            lw.sink.error("E0515", f"`warmup = {warmup}` is not shorter than the run ({total} steps)",
                          lw.span("train.warmup"), help="shorten the warmup")
    elif isinstance(warmup, Amount) and warmup.unit == "ratio":
        if total is not None:
            warmup_steps = math.ceil(warmup.value * total)  # rounded up, as the Trainer does with a ratio
            lw.derived["train.warmup"] = DERIVED
        else:
            warmup_steps, warmup_ratio = None, float(warmup.value)
    log_every = r.value("train.log_every")
    if isinstance(log_every, Amount):
        logging_steps = int(log_every.value)
    else:
        logging_steps = max(total // LOG_LINES_PER_RUN, 1) if total is not None else 10
        lw.derived["train.log_every"] = DERIVED
    epochs = r.value("train.epochs")
    eval_every, eval_epochs = every_steps(lw, "train.eval_every"), every_epochs(lw, "train.eval_every")
    if eval_every is None and not eval_epochs and r.value("checkpoint.keep_best") is not None and _has_eval(lw):
        # best-by-metric needs an eval at each save
        eval_every = every_steps(lw, "checkpoint.every")
        eval_epochs = {"eval_every_epochs": v for v in every_epochs(lw, "checkpoint.every").values()}
        if eval_every is not None or eval_epochs:
            lw.derived["train.eval_every"] = DERIVED
    lw.plan["train"] = {
        "epochs": None if r.value("train.max_steps") is not None else plain_number(epochs.value),
        "max_steps": total if steps["source"] == "declared" else None,
        "lr": float(r.value("train.lr")),
        "schedule": r.value("train.schedule"),
        "warmup_steps": warmup_steps,
        "warmup_ratio": warmup_ratio,
        "optimizer": r.value("train.optimizer"),
        "adam_betas": [0.9, 0.999],
        "adam_epsilon": 1e-08,
        "weight_decay": float(r.value("train.weight_decay")),
        "max_grad_norm": float(r.value("train.max_grad_norm")),
        "gradient_checkpointing": lw.plan.pop("_gradient_checkpointing"),
        "eval_every_steps": eval_every,
        "logging_steps": logging_steps,
        "seed": r.value("train.seed"),
        **eval_epochs,
    }


def _has_eval(lw: Lowering) -> bool:
    data = lw.plan["data"]
    return data["eval"] is not None or data["eval_split"] > 0


def lower_precision(lw: Lowering) -> None:
    method = lw.plan["method"]
    dtype = method["quantization"]["compute_dtype"] if method["quantization"] else lw.plan["model"]["dtype"]
    lw.plan["precision"] = {"mixed": {"bf16": "bf16", "fp16": "fp16"}.get(dtype, "no")}
