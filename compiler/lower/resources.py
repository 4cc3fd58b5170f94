"""Passes for where it runs: hardware, the distributed strategy, the batch triple and the memory autos.

Every `auto` here is decided by the memory estimator's `choose` whenever there is a GPU budget and a known
architecture, by a fixed rule otherwise (docs/plan.md); each decision is recorded with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ftc.compiler.batch import BatchProblem, divisors, solve_batch
from ftc.compiler.lower.speed import chunked_loss_on
from ftc.compiler.lower.builder import Lowering, Section, frozen
from ftc.compiler.memory import auto, hardware
from ftc.compiler.resolve import DERIVED
from ftc.compiler.schema import AUTO

MAX_AUTO_MICRO_BATCH = 8  # fallback only: the estimator picks the largest micro-batch that fits


def lower_hardware(lw: Lowering) -> Section:
    r = lw.recipe
    budget = r.value("hardware.memory_per_gpu")
    gpu = r.value("hardware.gpu")
    if budget is None and gpu is not None:
        budget = _catalog_gpu_memory(gpu)
    return frozen({
        "accelerator": r.value("hardware.accelerator", "gpu"),
        "gpu": gpu,
        "memory_per_gpu": budget,
        "gpus_per_node": r.value("hardware.gpus_per_node", 1),
        "nodes": r.value("hardware.nodes", 1),
        "cpu_memory": r.value("hardware.cpu_memory"),
    })


def _catalog_gpu_memory(name: str) -> int | None:
    try:
        return hardware.gpu_memory(name)
    except KeyError:  # unknown or ambiguous: E0702, and no budget
        return None


def lower_strategy(lw: Lowering) -> Section:
    """The `distributed` section but its ZeRO stage, which the memory autos decide (`lower_memory_autos`)."""
    r = lw.recipe
    world = r.world_size()
    written, strategy = r.value("distributed", "auto"), r.strategy()
    if strategy != written:
        lw.decide("distributed", strategy, _strategy_reason(r, written, strategy, world))
    if strategy == "none" and world > 1:
        lw.sink.error("E0518", f"`distributed none` runs one process, but `hardware` gives {world} ranks",
                      lw.span("distributed"), label="a single process",
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
                          lw.span("train.optimizer"), label="DeepSpeed offloads only its own Adam",
                          help="use `optimizer = adamw`, or `offload_optimizer = none`")
    elif strategy == "fsdp":
        dist["fsdp"] = {"sharding": r.value("distributed.sharding", "full_shard"), "wrap": "transformer_layer",
                        "offload_params": r.value("distributed.offload_params", "none") != "none"}
    timeout = r.value("distributed.timeout")
    if timeout is not None:  # (only when written: plans without it keep their shape)
        dist["timeout_s"] = int(timeout.value)
    return frozen(dist)


def _strategy_reason(recipe, written: str, strategy: str, world: int) -> str:
    if recipe.auto_strategy:  # decided by the memory estimate (only ever for `distributed auto`)
        return recipe.auto_strategy[1]
    if written == "ddp":
        return "`distributed ddp` with one rank runs as a single process"
    if strategy == "none":
        return "one rank: a single process"
    if strategy == "deepspeed":
        return f"{world} ranks, full fine-tuning: DeepSpeed partitions optimizer state, gradients and (stage 3) weights"
    return f"{world} ranks, adapters only: the trainable state is small, plain data parallelism"


def lower_batch(lw: Lowering, hardware: Section, method: Section, distributed: Section) -> Section | None:
    """The batch triple from `solve_batch`; `micro_batch = auto` is decided first when nothing else fixes it.
    None (with the error reported) when the numbers do not divide: everything after depends on the batch."""
    r = lw.recipe
    world = distributed["world_size"]
    global_batch = r.value("train.global_batch")
    micro = r.value("train.micro_batch", AUTO)
    accum = r.value("train.grad_accum", AUTO)
    accum = None if accum is AUTO else accum
    if micro is AUTO:
        micro = None
        if accum is None and global_batch % world == 0:
            micro = _auto_micro_batch(lw, global_batch // world, {"hardware": hardware, "method": method,
                                                                  "distributed": distributed})
    result = solve_batch(global_batch, micro, accum, world)
    if isinstance(result, BatchProblem):
        lw.sink.error(result.code, result.message, lw.span(result.key), label=result.label, help=result.help)
        return None
    if r.value("train.micro_batch", AUTO) is AUTO and accum is not None:
        lw.decide("train.micro_batch", result.micro_batch,
                  f"global_batch {global_batch} / ({accum} grad_accum × {world} ranks)")
    if accum is None:
        lw.derived["train.grad_accum"] = DERIVED
    return frozen({"global_batch": result.global_batch, "micro_batch": result.micro_batch,
                   "grad_accum": result.grad_accum, "data_parallel_world": result.data_parallel_world})


def _auto_micro_batch(lw: Lowering, per_rank: int, lowered: dict) -> int:
    estimator = _estimator_choice(lw, "micro_batch", lowered, per_rank=per_rank)
    if estimator is not None:
        value, reason = estimator
        return lw.decide("train.micro_batch", value, reason)
    if _unestimated_gpu_run(lw, lowered["hardware"]):
        _warn_safe_end(lw, "train.micro_batch")
        return lw.decide("train.micro_batch", 1,
                         f"{_why_no_estimate(lowered['hardware'])}: the safe end, 1 sequence per rank")
    below = [d for d in divisors(per_rank) if d <= MAX_AUTO_MICRO_BATCH]
    return lw.decide("train.micro_batch", below[-1],
                     f"{_why_no_estimate(lowered['hardware'])}: largest divisor of the {per_rank} sequences per rank "
                     f"up to {MAX_AUTO_MICRO_BATCH}")


def _unestimated_gpu_run(lw: Lowering, hw: Section) -> bool:
    """A GPU run with a budget whose model has no architecture: nothing proves a fast setting fits, so the
    autos take the safe end (micro_batch 1, checkpointing on), not the fast one."""
    return hw["accelerator"] != "cpu" and hw["memory_per_gpu"] is not None and lw.architecture is None


def _warn_safe_end(lw: Lowering, key: str) -> None:
    lw.sink.warning("W0722", f"`{key.split('.')[1]} = auto` takes the safe end: there is no memory estimate for "
                    "this model", lw.span(key), label="chosen without an estimate",
                    help="make the model's config.json readable (see W0701) so that auto can size it, or set "
                         "the value yourself")


def _why_no_estimate(hw: Section) -> str:
    """Why an auto fell back to its fixed rule (the estimator decides whenever it can)."""
    if hw["accelerator"] == "cpu":
        return "cpu run, no GPU memory budget"
    if hw["memory_per_gpu"] is None:
        return "no GPU memory budget (set `hardware.gpu` or `memory_per_gpu`)"
    return "no memory estimate for this model"


@dataclass(frozen=True)
class MemoryAutos:
    """What the memory pass settles: the `distributed` section with its ZeRO stage, gradient checkpointing
    (which `train` reports) and the estimate of exactly these values (`memory`)."""

    distributed: Section
    batch: Section  # with its `eval_batch`, decided beside what training keeps
    gradient_checkpointing: bool
    memory: Section | None


def lower_memory_autos(lw: Lowering, hardware: Section, method: Section, distributed: Section,
                       batch: Section) -> MemoryAutos:
    """`zero = auto` and `gradient_checkpointing = auto` (unset means auto), then the plan's estimate."""
    r = lw.recipe
    lowered = {"hardware": hardware, "method": method, "distributed": distributed, "batch": batch}
    zero = None
    if distributed["strategy"] == "deepspeed":
        zero = _zero(lw, lowered)
        if distributed["offload_params"] != "none" and zero != 3:
            lw.sink.error("E0514", f"`offload_params` needs ZeRO stage 3; `zero = auto` chose {zero}",
                          lw.span("distributed.offload_params"), help="set `zero = 3`")
    distributed = frozen({**distributed, "zero": zero})
    lowered["distributed"] = distributed
    checkpointing = r.value("train.gradient_checkpointing", AUTO)
    if checkpointing is AUTO:
        choice = _estimator_choice(lw, "gradient_checkpointing", lowered)
        if choice is not None:
            checkpointing = lw.decide("train.gradient_checkpointing", *choice)
        elif _unestimated_gpu_run(lw, hardware):
            _warn_safe_end(lw, "train.gradient_checkpointing")
            checkpointing = lw.decide("train.gradient_checkpointing", True,
                                      f"{_why_no_estimate(hardware)}: on, the safe end")
        else:
            checkpointing = lw.decide("train.gradient_checkpointing", False,
                                      f"{_why_no_estimate(hardware)}: off (it costs about a third more compute)")
    lowered["train"] = {"gradient_checkpointing": bool(checkpointing),
                        "chunked_cross_entropy": chunked_loss_on(r, lw.architecture, distributed["strategy"], zero)}
    from ftc.compiler.lower.evaluation import lower_eval_batch

    batch = frozen({**batch, "eval_batch": lower_eval_batch(lw, lowered)})
    lowered["batch"] = batch
    return MemoryAutos(distributed, batch, bool(checkpointing), _estimate(lw, lowered))


def _zero(lw: Lowering, lowered: dict) -> int:
    """The ZeRO stage: as written, else the estimator's choice, else the fixed rules of docs/plan.md."""
    r = lw.recipe
    zero = r.value("distributed.zero", AUTO)
    if zero is not AUTO:
        return zero
    choice = _estimator_choice(lw, "zero", lowered)
    why = _why_no_estimate(lowered["hardware"])
    if choice is not None:
        return lw.decide("distributed.zero", *choice)
    if r.value("train.optimizer") in ("adamw_8bit", "paged_adamw_8bit", "paged_adamw"):
        return lw.decide("distributed.zero", 2, f"{why}: stage 2 partitions the bitsandbytes optimizer state and "
                         "gradients (stage 3 does not take them)")
    if lowered["distributed"]["offload_params"] != "none":
        return lw.decide("distributed.zero", 3, "`offload_params` needs stage 3")
    if lowered["method"]["kind"] == "full":
        return lw.decide("distributed.zero", 3, f"{why}: full fine-tuning partitions weights too (stage 3)")
    return lw.decide("distributed.zero", 2, f"{why}: adapters keep full weights on every rank; stage 2 "
                     "partitions optimizer state and gradients")


def _estimator_choice(lw: Lowering, what: str, lowered: dict, **context) -> tuple[Any, str] | None:
    """(value, reason) from the memory estimator's auto pass, or None when it cannot decide."""
    try:
        return auto.choose(lw.recipe, what, lowered, **context)
    except Exception as exc:  # noqa: BLE001 - a bug there must not become a traceback for a valid recipe
        _estimator_failed(lw, exc)
        return None


def _estimator_failed(lw: Lowering, exc: Exception) -> None:
    lw.sink.warning("W0519", f"the memory estimator failed ({type(exc).__name__}: {exc}); fixed rules used instead",
                    lw.recipe.block_span("hardware") or lw.recipe.block_span("train"),
                    help="please report this; the plan is still valid, its autos are not memory-aware")


def _estimate(lw: Lowering, lowered: dict) -> Section | None:
    try:
        return frozen(auto.plan_estimate(lw.recipe, lowered))
    except Exception as exc:  # noqa: BLE001 - see _estimator_choice
        _estimator_failed(lw, exc)
        return None
