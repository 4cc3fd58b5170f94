"""Lower a checked recipe to the runtime plan (docs/plan.md): an ordered tuple of passes over one builder.

Each pass reads the typed recipe and writes one part of the plan; a pass that finds a value it cannot
lower appends a located diagnostic (E05xx) and the plan is dropped at the end. The passes own:

- every `auto`: `distributed auto`, `zero = auto`, `micro_batch = auto`, `gradient_checkpointing = auto`,
  each recorded in `plan["auto"]` with its reason (the memory estimator's `choose` decides whenever there is a
  GPU budget and a known architecture; fixed rules otherwise, see docs/plan.md);
- the batch arithmetic, in one place: global = micro × grad_accum × data-parallel world, never floored;
- steps: declared (`max_steps`), counted from local data files when the count is exact, else "runtime";
- every path, rewritten relative to the output folder.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ftc import __version__
from ftc.compiler.diagnostics import DiagnosticSink
from ftc.compiler.batch import BatchProblem, solve_batch
from ftc.compiler.resolve import DERIVED, ResolvedRecipe
from ftc.compiler.schema import AUTO
from ftc.compiler.units import Amount

SCHEMA_VERSION = 1
ENTRY_MODULE = "ftc.runtime.train"
DEFAULT_MASTER_PORT = 29500
MAX_AUTO_MICRO_BATCH = 8  # fallback only: the estimator picks the largest micro-batch that fits
LOG_LINES_PER_RUN = 50
COUNTABLE_SUFFIXES = (".jsonl", ".json", ".csv", ".txt")
COUNT_LIMIT_BYTES = 256 * 2**20  # larger local files are counted by the runtime
INFO_COUNT_LIMIT_BYTES = 16 * 2**20  # rows counted only for the report (steps from the data need no count)


@dataclass
class Lowering:
    """The plan under construction; passes fill `plan` in order and may read what earlier passes wrote."""

    recipe: ResolvedRecipe
    out_dir: Path
    sink: DiagnosticSink
    plan: dict = field(default_factory=dict)
    auto: list = field(default_factory=list)
    derived: dict = field(default_factory=dict)  # plan field -> "derived" provenance of lowered values

    def rel(self, path: str | os.PathLike, key: str | None = None) -> str:
        """`path` as a path relative to the output folder. A relative `path` is relative to the file that set
        `key` (a parent recipe's paths stay relative to the parent; `--set` values to the working directory)."""
        target = Path(os.path.expanduser(str(path)))
        if not target.is_absolute():
            target = (self.recipe.location(key) if key else self.recipe.base_dir) / target
        return Path(os.path.relpath(os.path.abspath(target), self.out_dir)).as_posix()

    def decide(self, field_name: str, value: Any, reason: str) -> Any:
        self.auto.append({"field": field_name, "value": value, "reason": reason})
        self.derived[field_name] = DERIVED
        return value


def _span(lowering: Lowering, key: str):
    return lowering.recipe.span(key)


# ---------------------------------------------------------------- identity, model, method


def lower_recipe(lw: Lowering) -> None:
    sources = []
    for path in lw.recipe.file_paths:
        try:
            digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError:  # the loader already read it; a file removed meanwhile is not our concern here
            digest = "0" * 64
        sources.append({"path": lw.rel(path), "sha256": digest})
    lw.plan["schema_version"] = SCHEMA_VERSION
    lw.plan["ftc_version"] = __version__
    lw.plan["recipe"] = {"name": lw.recipe.name, "source": lw.rel(lw.recipe.file_paths[-1]), "sources": sources}


def is_local_model(name: str, base_dir: Path) -> bool:
    """A folder next to the recipe (or a path spelled like one) is local; anything else is a hub id."""
    return name.startswith((".", "/", "~")) or (base_dir / name).is_dir()


def lower_model(lw: Lowering) -> None:
    r = lw.recipe
    name = r.value("model")
    local = is_local_model(name, r.location("model"))
    tokenizer = r.value("model.tokenizer")
    if tokenizer is not None and is_local_model(tokenizer, r.location("model.tokenizer")):
        tokenizer = lw.rel(tokenizer, "model.tokenizer")
    lw.plan["model"] = {
        "name_or_path": lw.rel(name, "model") if local else name,
        "local": local,
        "revision": r.value("model.revision"),
        "dtype": r.value("model.dtype"),
        "attention": r.value("model.attention"),
        "trust_remote_code": bool(r.value("model.trust_remote_code", False)),
        "tokenizer": tokenizer,
    }


def lower_method(lw: Lowering) -> None:
    r = lw.recipe
    kind = r.value("method")
    lora = None
    if kind in ("lora", "qlora"):
        targets = r.value("method.targets")
        lora = {
            "rank": r.value("method.rank"),
            "alpha": float(r.value("method.alpha")),
            "dropout": float(r.value("method.dropout")),
            "targets": targets if targets == "all_linear" else list(targets),
            "modules_to_save": list(r.value("method.modules_to_save", ())),
            "bias": r.value("method.bias", "none"),
        }
    quantization = None
    if kind == "qlora":
        quantization = {"quant": r.value("method.quant"), "double_quant": bool(r.value("method.double_quant")),
                        "compute_dtype": r.value("method.compute_dtype")}
    lw.plan["method"] = {"kind": kind, "lora": lora, "quantization": quantization}


# ---------------------------------------------------------------- data


def _data_paths(lw: Lowering, key: str) -> list[str] | None:
    values = lw.recipe.value(key)
    if values is None:
        return None
    return [value if value.startswith("hf:") else lw.rel(value, key) for value in values]


def lower_data(lw: Lowering) -> None:
    r = lw.recipe
    split = r.value("data.eval_split")
    columns = {key.rsplit(".", 1)[1]: s.value for key, s in r.items("data.columns.")}
    lw.plan["data"] = {
        "train": _data_paths(lw, "data.train"),
        "eval": _data_paths(lw, "data.eval"),
        "eval_split": float(split.value) if isinstance(split, Amount) and r.value("data.eval") is None else 0.0,
        "format": r.value("data.format"),
        "columns": columns,
        "max_length": r.value("data.max_length"),
        "packing": bool(r.value("data.packing", False)),
        "dedup": r.value("data.dedup"),
        "near_dedup_threshold": float(r.value("data.near_threshold")),
        "train_on": r.value("data.train_on"),
        "on_bad_rows": r.value("data.on_bad_rows"),
        "truncation": r.value("data.truncation"),
        "seed": r.value("data.seed"),
        "cache_dir": lw.rel(r.value("data.cache_dir"), "data.cache_dir") if r.value("data.cache_dir") else None,
    }


# ---------------------------------------------------------------- hardware, strategy, autos


def lower_hardware(lw: Lowering) -> None:
    r = lw.recipe
    budget = r.value("hardware.memory_per_gpu")
    gpu = r.value("hardware.gpu")
    if budget is None and gpu is not None:
        budget = _catalog_gpu_memory(gpu)
    lw.plan["hardware"] = {
        "accelerator": r.value("hardware.accelerator", "gpu"),
        "gpu": gpu,
        "memory_per_gpu": budget,
        "gpus_per_node": r.value("hardware.gpus_per_node", 1),
        "nodes": r.value("hardware.nodes", 1),
        "cpu_memory": r.value("hardware.cpu_memory"),
    }


def _catalog_gpu_memory(name: str) -> int | None:
    """The GPU catalog belongs to the memory estimator; without it the budget stays unknown."""
    try:
        from ftc.compiler.memory import hardware  # type: ignore[attr-defined]
    except ImportError:
        return None
    lookup = getattr(hardware, "gpu_memory", None)
    if lookup is None:
        return None
    try:
        value = lookup(name)
    except (KeyError, ValueError):
        return None
    return int(value) if value else None


def lower_strategy(lw: Lowering) -> None:
    r = lw.recipe
    world = r.world_size()
    strategy = r.value("distributed", "auto")
    if strategy == "auto":
        if world == 1:
            strategy = lw.decide("distributed", "none", "one rank: a single process")
        elif lw.plan["method"]["kind"] == "full":
            strategy = lw.decide("distributed", "deepspeed", f"{world} ranks, full fine-tuning: DeepSpeed "
                                 "partitions optimizer state, gradients and (stage 3) weights")
        else:
            strategy = lw.decide("distributed", "ddp", f"{world} ranks, adapters only: the trainable state is "
                                 "small, plain data parallelism")
    elif strategy == "ddp" and world == 1:
        strategy = lw.decide("distributed", "none", "`distributed ddp` with one rank runs as a single process")
    if strategy == "none" and world > 1:
        lw.sink.error("E0518", f"`distributed none` runs one process, but `hardware` gives {world} ranks",
                      _span(lw, "distributed"), label="a single process",
                      help="use `distributed ddp {}` (or deepspeed / fsdp), or set `gpus_per_node = 1`")
    dist = {"strategy": strategy, "world_size": world, "zero": None, "offload_optimizer": "none",
            "offload_params": "none", "nvme_path": None, "fsdp": None,
            "find_unused_parameters": bool(r.value("distributed.find_unused_parameters", False))
            if strategy == "ddp" else False}
    if strategy == "deepspeed":
        dist["offload_optimizer"] = r.value("distributed.offload_optimizer", "none")
        dist["offload_params"] = r.value("distributed.offload_params", "none")
        nvme = r.value("distributed.nvme_path")
        dist["nvme_path"] = nvme  # a path on the training nodes, kept as written
        if dist["offload_optimizer"] != "none" and r.value("train.optimizer") != "adamw":
            lw.sink.error("E0510", f"`offload_optimizer = {dist['offload_optimizer']}` needs `optimizer = adamw`",
                          _span(lw, "train.optimizer"), label="DeepSpeed offloads only its own Adam",
                          help="use `optimizer = adamw`, or `offload_optimizer = none`")
    elif strategy == "fsdp":
        dist["fsdp"] = {"sharding": r.value("distributed.sharding", "full_shard"), "wrap": "transformer_layer",
                        "offload_params": r.value("distributed.offload_params", "none") != "none"}
    lw.plan["distributed"] = dist


def lower_batch(lw: Lowering) -> None:
    """The batch triple from `solve_batch`; `micro_batch = auto` is decided first when nothing else fixes it."""
    r = lw.recipe
    world = lw.plan["distributed"]["world_size"]
    global_batch = r.value("train.global_batch")
    micro = r.value("train.micro_batch", AUTO)
    accum = r.value("train.grad_accum", AUTO)
    accum = None if accum is AUTO else accum
    if micro is AUTO:
        micro = None
        if accum is None and global_batch % world == 0:
            micro = _auto_micro_batch(lw, global_batch // world)
    result = solve_batch(global_batch, micro, accum, world)
    if isinstance(result, BatchProblem):
        lw.sink.error(result.code, result.message, _span(lw, result.key), label=result.label, help=result.help)
        lw.plan["batch"] = None
        return
    if r.value("train.micro_batch", AUTO) is AUTO and accum is not None:
        lw.decide("train.micro_batch", result.micro_batch,
                  f"global_batch {global_batch} / ({accum} grad_accum × {world} ranks)")
    if accum is None:
        lw.derived["train.grad_accum"] = DERIVED
    lw.plan["batch"] = {"global_batch": result.global_batch, "micro_batch": result.micro_batch,
                        "grad_accum": result.grad_accum, "data_parallel_world": result.data_parallel_world}


def _auto_micro_batch(lw: Lowering, per_rank: int) -> int:
    estimator = _estimator_choice(lw, "micro_batch", per_rank=per_rank)
    if estimator is not None:
        value, reason = estimator
        return lw.decide("train.micro_batch", value, reason)
    divisors = [d for d in range(1, min(per_rank, MAX_AUTO_MICRO_BATCH) + 1) if per_rank % d == 0]
    return lw.decide("train.micro_batch", divisors[-1],
                     f"{_why_no_estimate(lw)}: largest divisor of the {per_rank} sequences per rank "
                     f"up to {MAX_AUTO_MICRO_BATCH}")


def _why_no_estimate(lw: Lowering) -> str:
    """Why an auto fell back to its fixed rule (the estimator decides whenever it can)."""
    hw = lw.plan["hardware"]
    if hw["accelerator"] == "cpu":
        return "cpu run, no GPU memory budget"
    if hw["memory_per_gpu"] is None:
        return "no GPU memory budget (set `hardware.gpu` or `memory_per_gpu`)"
    if _estimator_hook() is None:
        return "no memory estimator installed"
    return "no memory estimate for this model"


def lower_memory_autos(lw: Lowering) -> None:
    """`zero = auto` and `gradient_checkpointing = auto` (unset means auto)."""
    r = lw.recipe
    dist = lw.plan["distributed"]
    if dist["strategy"] == "deepspeed":
        zero = r.value("distributed.zero", AUTO)
        if zero is AUTO:
            choice = _estimator_choice(lw, "zero")
            if choice is not None:
                zero = lw.decide("distributed.zero", *choice)
            elif r.value("train.optimizer") in ("adamw_8bit", "paged_adamw_8bit"):
                zero = lw.decide("distributed.zero", 0, "8-bit optimizers cannot be partitioned by ZeRO")
            elif dist["offload_params"] != "none":
                zero = lw.decide("distributed.zero", 3, "`offload_params` needs stage 3")
            elif lw.plan["method"]["kind"] == "full":
                zero = lw.decide("distributed.zero", 3, f"{_why_no_estimate(lw)}: full fine-tuning "
                                 "partitions weights too (stage 3)")
            else:
                zero = lw.decide("distributed.zero", 2, f"{_why_no_estimate(lw)}: adapters keep full "
                                 "weights on every rank; stage 2 partitions optimizer state and gradients")
        dist["zero"] = zero
        if dist["offload_params"] != "none" and zero != 3:
            lw.sink.error("E0514", f"`offload_params` needs ZeRO stage 3; `zero = auto` chose {zero}",
                          _span(lw, "distributed.offload_params"), help="set `zero = 3`")
    checkpointing = r.value("train.gradient_checkpointing", AUTO)
    if checkpointing is AUTO:
        choice = _estimator_choice(lw, "gradient_checkpointing")
        if choice is not None:
            checkpointing = lw.decide("train.gradient_checkpointing", *choice)
        else:
            checkpointing = lw.decide("train.gradient_checkpointing", False,
                                      f"{_why_no_estimate(lw)}: off (it costs about a third more compute)")
    lw.plan["_gradient_checkpointing"] = bool(checkpointing)
    lw.plan["memory"] = _estimate(lw)


def _estimator_choice(lw: Lowering, what: str, **context) -> tuple[Any, str] | None:
    """(value, reason) from the memory estimator's auto pass, or None when it cannot decide."""
    hook = _estimator_hook()
    if hook is None:
        return None
    try:
        return hook(lw.recipe, what, lw.plan, **context)
    except Exception as exc:  # noqa: BLE001 - a bug there must not become a traceback for a valid recipe
        _estimator_failed(lw, exc)
        return None


def _estimator_failed(lw: Lowering, exc: Exception) -> None:
    lw.sink.warning("W0519", f"the memory estimator failed ({type(exc).__name__}: {exc}); fixed rules used instead",
                    lw.recipe.block_span("hardware") or lw.recipe.block_span("train"),
                    help="please report this; the plan is still valid, its autos are not memory-aware")


def _estimator_hook() -> Callable | None:
    try:
        from ftc.compiler.memory import auto  # type: ignore[attr-defined]
    except ImportError:
        return None
    return getattr(auto, "choose", None)


def _estimate(lw: Lowering) -> dict | None:
    try:
        from ftc.compiler.memory import auto  # type: ignore[attr-defined]
    except ImportError:
        return None
    estimate = getattr(auto, "plan_estimate", None)
    if estimate is None:
        return None
    try:
        return estimate(lw.recipe, lw.plan)
    except Exception as exc:  # noqa: BLE001 - see _estimator_choice
        _estimator_failed(lw, exc)
        return None


# ---------------------------------------------------------------- steps and schedule


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


def trainer_steps_per_epoch(rows: int, micro: int, grad_accum: int, world: int) -> int:
    """Optimizer steps per epoch as transformers' Trainer counts them (no drop_last)."""
    per_rank = math.ceil(rows / world)
    batches = math.ceil(per_rank / micro)
    return max(math.ceil(batches / grad_accum), 1)


def lower_steps(lw: Lowering) -> None:
    r = lw.recipe
    batch = lw.plan["batch"]
    exact = _rows_are_examples(lw)
    rows = _train_rows(lw, COUNT_LIMIT_BYTES if exact else INFO_COUNT_LIMIT_BYTES)
    steps_per_epoch = None
    if rows is not None and rows > 0 and exact and batch is not None:
        steps_per_epoch = trainer_steps_per_epoch(rows, batch["micro_batch"], batch["grad_accum"],
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


def _every_steps(lw: Lowering, key: str, code: str | None) -> int | None:
    """An interval in steps; given in epochs it needs known steps per epoch (`code` None: no diagnostic)."""
    value = lw.recipe.value(key)
    if not isinstance(value, Amount):
        return None
    if value.unit == "steps":
        return int(value.value)
    spe = lw.plan["steps"]["steps_per_epoch"]
    if spe is None:
        if code is None:
            return None
        lw.sink.error(code, f"`{key.split('.')[-1]} = {value}` needs the number of steps per epoch, which is only "
                      "known when the data is read", _span(lw, key),
                      label="steps per epoch depend on the data",
                      help="give it in steps, e.g. `500 steps`; see `steps.source` in the plan")
        return None
    return max(int(math.ceil(value.value * spe)), 1)


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
                          _span(lw, "train.warmup"), help="shorten the warmup")
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
    eval_every = _every_steps(lw, "train.eval_every", "E0516")
    if eval_every is None and r.value("checkpoint.keep_best") is not None and _has_eval(lw):
        eval_every = _every_steps(lw, "checkpoint.every", None)  # best-by-metric needs an eval at each save
        if eval_every is not None:
            lw.derived["train.eval_every"] = DERIVED
    lw.plan["train"] = {
        "epochs": None if r.value("train.max_steps") is not None else _number(epochs.value),
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
    }


def _number(value):
    return int(value) if float(value).is_integer() else float(value)


def _has_eval(lw: Lowering) -> bool:
    data = lw.plan["data"]
    return data["eval"] is not None or data["eval_split"] > 0


def lower_precision(lw: Lowering) -> None:
    method = lw.plan["method"]
    dtype = method["quantization"]["compute_dtype"] if method["quantization"] else lw.plan["model"]["dtype"]
    lw.plan["precision"] = {"mixed": {"bf16": "bf16", "fp16": "fp16"}.get(dtype, "no")}


# ---------------------------------------------------------------- checkpoint, tracking, output, sweep


def lower_checkpoint(lw: Lowering) -> None:
    r = lw.recipe
    lw.plan["checkpoint"] = {
        "every_steps": _every_steps(lw, "checkpoint.every", "E0517"),
        "keep_last": r.value("checkpoint.keep_last"),
        "keep_best": r.value("checkpoint.keep_best"),
        "best_mode": r.value("checkpoint.best_mode"),
        "full_state": bool(r.value("checkpoint.full_state")),
    }


def lower_tracking(lw: Lowering) -> None:
    track = [t for t in lw.recipe.value("train.track", ()) if t != "none"]
    lw.plan["tracking"] = {"backends": ["jsonl"] + sorted(set(track)), "mlflow_uri": None}
    lw.plan["output"] = {"runs_dir": lw.rel(lw.recipe.value("output.runs_dir"), "output.runs_dir"),
                         "merge": bool(lw.recipe.value("output.merge"))}


def lower_sweep(lw: Lowering) -> None:
    r = lw.recipe
    if not r.has_block("sweep"):
        lw.plan["sweep"] = None
        return
    objective = r.value("sweep.objective")
    direction, metric = objective if isinstance(objective, tuple) else tuple(str(objective).split(None, 1))
    space = {}
    for param in r.sweep:
        args = [a.value if isinstance(a, Amount) else a for a in param.args]
        units = {a.unit for a in param.args if isinstance(a, Amount)}
        space[param.target] = {"distribution": param.distribution, "args": args,
                               "unit": units.pop() if units else None}
    timeout = r.value("sweep.timeout")
    lw.plan["sweep"] = {
        "trials": r.value("sweep.trials"),
        "objective": {"direction": direction, "metric": metric},
        "sampler": r.value("sweep.sampler"),
        "pruner": r.value("sweep.pruner"),
        "parallel": r.value("sweep.parallel"),
        "timeout_s": _number(timeout.value) if isinstance(timeout, Amount) else None,
        "space": space,
    }


# ---------------------------------------------------------------- launch, provenance


def lower_launch(lw: Lowering) -> None:
    hw, dist = lw.plan["hardware"], lw.plan["distributed"]
    deepspeed = dist["strategy"] == "deepspeed"
    env = {}
    if deepspeed and hw["accelerator"] == "cpu":
        env["DS_ACCELERATOR"] = "cpu"
    lw.plan["launch"] = {
        "launcher": "python" if dist["strategy"] == "none" else "accelerate",
        "nnodes": hw["nodes"],
        "nproc_per_node": hw["gpus_per_node"],
        "master_addr": "127.0.0.1",
        "master_port": DEFAULT_MASTER_PORT,
        "entry_module": ENTRY_MODULE,
        "env": env,
        "files": {
            "accelerate": "accelerate.yaml",
            "deepspeed": "ds_config.json" if deepspeed else None,
            "hostfile": "hostfile" if deepspeed and hw["nodes"] > 1 else None,
        },
    }


def lower_provenance(lw: Lowering) -> None:
    provenance = {key: s.provenance for key, s in lw.recipe.items()}
    provenance.update(lw.derived)
    lw.plan["auto"] = lw.auto
    lw.plan["provenance"] = dict(sorted(provenance.items()))


PASSES: tuple[Callable[[Lowering], None], ...] = (
    lower_recipe,
    lower_model,
    lower_method,
    lower_data,
    lower_hardware,
    lower_strategy,
    lower_batch,
    lower_memory_autos,
    lower_steps,
    lower_train,
    lower_precision,
    lower_checkpoint,
    lower_tracking,
    lower_sweep,
    lower_launch,
    lower_provenance,
)


def lower(recipe: ResolvedRecipe, out_dir: str | os.PathLike, sink: DiagnosticSink) -> dict | None:
    """The plan for `recipe` compiled into `out_dir`, or None when lowering found errors (in `sink`)."""
    lw = Lowering(recipe, Path(os.path.abspath(out_dir)).resolve(), sink)
    errors_before = sum(1 for d in sink.items if d.is_error)
    for lowering_pass in PASSES:
        lowering_pass(lw)
        if lw.plan.get("batch", True) is None:
            return None  # everything after the batch depends on it
    if sum(1 for d in sink.items if d.is_error) > errors_before:
        return None
    return dict(sorted(lw.plan.items()))
