"""The auto passes: `distributed auto`, `zero = auto`, `gradient_checkpointing = auto`, `micro_batch = auto`.

`distributed auto` for adapters on several ranks comes first (`choose_strategy`): DDP while the weights fit
on every rank, FSDP when they do not. The others are decided jointly, in this order, each against the
per-GPU budget:
1. zero: the smallest stage that fits (with checkpointing on and micro_batch 1 if those are auto);
2. gradient_checkpointing: on only when the recipe does not fit without it;
3. micro_batch: the largest divisor of global_batch / data-parallel world that fits.
Lowering calls `choose` (one field at a time, same answer as the joint decision) and
`plan_estimate` (the estimate written to the plan).
"""

from __future__ import annotations

from dataclasses import dataclass

from ftc.compiler.batch import divisors
from ftc.compiler.memory.estimate import estimate
from ftc.compiler.memory.setup import MemorySetup
from ftc.compiler.memory.units import gib


@dataclass(frozen=True)
class Decision:
    field: str  # "train.micro_batch" | "distributed.zero" | "train.gradient_checkpointing"
    value: object
    reason: str


def _peak(setup: MemorySetup) -> int:
    return estimate(setup).peak_bytes


def resolve_auto(setup: MemorySetup, autos, budget_bytes: int, global_batch: int | None,
                 dp_world: int) -> tuple[MemorySetup, tuple[Decision, ...]]:
    """The setup with every auto in `autos` decided, and one Decision (with its reason) per auto."""
    autos = set(autos)
    per_rank = global_batch // dp_world if global_batch and global_batch % dp_world == 0 else None
    micros = divisors(per_rank)[::-1] if per_rank else [setup.micro_batch]
    smallest_micro = micros[-1] if "micro_batch" in autos else setup.micro_batch
    decisions = []
    budget = gib(budget_bytes)

    if "zero" in autos:
        if setup.optimizer in ("adamw_8bit", "paged_adamw_8bit", "paged_adamw"):
            stages = [0]
        elif setup.offload_params != "none":
            stages = [3]
        else:
            stages = list(range(setup.max_shard_stage + 1))
        probe = setup.with_(micro_batch=smallest_micro)
        if "gradient_checkpointing" in autos:
            probe = probe.with_(gradient_checkpointing=True)
        peaks = [(z, _peak(probe.with_(zero=z))) for z in stages]
        fitting = [(z, p) for z, p in peaks if p <= budget_bytes]
        if fitting:
            zero, peak = fitting[0]
            reason = f"smallest ZeRO stage that fits {budget}: stage {zero} peaks at {gib(peak)}"
            lower = [p for z, p in peaks if z < zero]
            if lower:
                reason += f" (stage {zero - 1}: {gib(lower[-1])})"
        else:
            zero, peak = peaks[-1]
            reason = f"no stage fits {budget}; stage {zero} comes closest at {gib(peak)} (see the budget error)"
        setup = setup.with_(zero=zero)
        decisions.append(Decision("distributed.zero", zero, reason))

    if "gradient_checkpointing" in autos:
        off = _peak(setup.with_(gradient_checkpointing=False, micro_batch=smallest_micro))
        if off <= budget_bytes:
            setup = setup.with_(gradient_checkpointing=False)
            reason = f"off: fits {budget} without recomputation (peak {gib(off)} at micro_batch {smallest_micro})"
            decisions.append(Decision("train.gradient_checkpointing", False, reason))
        else:
            on = _peak(setup.with_(gradient_checkpointing=True, micro_batch=smallest_micro))
            setup = setup.with_(gradient_checkpointing=True)
            reason = (f"on: at micro_batch {smallest_micro} the peak is {gib(off)} without it, over {budget}; "
                      f"{gib(on)} with it")
            decisions.append(Decision("train.gradient_checkpointing", True, reason))

    if "micro_batch" in autos:
        chosen = None
        for m in micros:
            peak = _peak(setup.with_(micro_batch=m))
            if peak <= budget_bytes:
                chosen = (m, peak)
                break
        where = f"divides the {per_rank} sequences per rank" if per_rank else "is allowed"
        if chosen:
            m, peak = chosen
            reason = f"largest micro-batch that fits {budget} and {where}: peak {gib(peak)}"
        else:
            m = micros[-1]
            reason = f"even micro_batch = {m} does not fit {budget} (peak {gib(_peak(setup.with_(micro_batch=m)))}; " \
                     f"see the budget error)"
        setup = setup.with_(micro_batch=m)
        decisions.insert(0, Decision("train.micro_batch", m, reason))
    return setup, tuple(decisions)


def adapter_strategy(ddp: MemorySetup, budget_bytes: int) -> tuple[str, int, int | None]:
    """(strategy, DDP peak, FSDP peak or None) for adapters on several ranks, with `ddp` as the probe:
    DDP (the weights whole on every rank, the least communication) when it fits, else FSDP when sharding
    lowers the peak. QLoRA keeps DDP: its 4-bit weights cannot be sharded here (E0419)."""
    ddp_peak = _peak(ddp)
    if ddp_peak <= budget_bytes or ddp.max_shard_stage < 3:
        return "ddp", ddp_peak, None
    fsdp_peak = _peak(ddp.with_(strategy="fsdp"))
    return ("fsdp" if fsdp_peak < ddp_peak else "ddp"), ddp_peak, fsdp_peak


def choose_strategy(recipe) -> tuple[str, str] | None:
    """`distributed auto` for adapters on several ranks (`adapter_strategy`), probed at the recipe's
    smallest setting (micro_batch 1 and checkpointing on, where those are auto). None without a budget or
    a known model: the fixed rule applies."""
    from ftc.compiler.memory.recipe import setup_from_recipe

    rm = setup_from_recipe(recipe, strategy="ddp")
    if rm.setup is None or rm.budget_bytes is None:
        return None
    probe = rm.setup
    smallest = []
    if "micro_batch" in rm.autos:
        probe = probe.with_(micro_batch=1)
        smallest.append("micro_batch 1")
    if "gradient_checkpointing" in rm.autos:
        probe = probe.with_(gradient_checkpointing=True)
        smallest.append("checkpointing on")
    at = f" at {' and '.join(smallest)}" if smallest else ""
    world, budget = probe.dp_world, gib(rm.budget_bytes)
    strategy, ddp, fsdp = adapter_strategy(probe, rm.budget_bytes)
    if ddp <= rm.budget_bytes:
        return "ddp", (f"{world} ranks, adapters only: DDP fits {budget} with the weights on every rank "
                       f"(peak {gib(ddp)}{at})")
    if fsdp is None:
        return "ddp", (f"{world} ranks, QLoRA: DDP (its 4-bit weights are not sharded), although it needs "
                       f"{gib(ddp)}{at}, over {budget} (see the budget error)")
    if strategy == "ddp":
        return "ddp", f"{world} ranks, adapters only: DDP needs {gib(ddp)}{at}, over {budget}; FSDP would not save"
    still = "" if fsdp <= rm.budget_bytes else ", still over (see the budget error)"
    return "fsdp", (f"{world} ranks, adapters only: DDP, with the weights on every rank, needs {gib(ddp)}{at}, "
                    f"over {budget}; FSDP shards them: {gib(fsdp)}{still}")


# ---------------------------------------------------------------- hooks called by lowering

_FIELDS = {"micro_batch": "train.micro_batch", "zero": "distributed.zero",
           "gradient_checkpointing": "train.gradient_checkpointing"}


def choose(recipe, what: str, plan: dict, **context):
    """(value, reason) for one auto field, or None when there is no GPU budget or no architecture."""
    from ftc.compiler.memory.recipe import setup_from_plan

    rm = setup_from_plan(recipe, plan)
    if rm.setup is None or rm.budget_bytes is None or what not in rm.autos:
        return None
    world = rm.setup.dp_world
    global_batch = rm.global_batch
    if context.get("per_rank") and global_batch is None:
        global_batch = context["per_rank"] * world
    _, decisions = resolve_auto(rm.setup, rm.autos, rm.budget_bytes, global_batch, world)
    for decision in decisions:
        if decision.field == _FIELDS[what]:
            return decision.value, decision.reason
    return None


MAX_AUTO_EVAL_BATCH = 64  # beyond this, evaluation is no faster: the batches are padded to their longest row


def choose_eval_batch(recipe, plan: dict) -> tuple[int, str] | None:
    """(value, reason) for `eval_batch = auto`: the largest evaluation batch whose no-grad forward (one
    layer's working set, or the whole logits and their loss) fits beside the training state; None when
    there is no GPU budget or no architecture."""
    from ftc.compiler.memory.recipe import setup_from_plan

    rm = setup_from_plan(recipe, plan)
    if rm.setup is None or rm.budget_bytes is None:
        return None
    setup, _ = settled(rm)
    budget = rm.budget_bytes

    def peak(b: int) -> int:
        return estimate(setup.with_(eval_batch=b, evaluates=True)).peak_bytes

    if peak(1) > budget:
        return 1, f"even 1 sequence does not fit {gib(budget)} (peak {gib(peak(1))}; see the budget error)"
    low, high = 1, MAX_AUTO_EVAL_BATCH
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if peak(middle) <= budget else (low, middle - 1)
    cap = " (the cap)" if low == MAX_AUTO_EVAL_BATCH else ""
    return low, (f"largest evaluation batch{cap} that fits {gib(budget)}: peak {gib(peak(low))}; evaluation keeps "
                 f"no activations for backward, but the whole logits")


def plan_estimate(recipe, plan: dict) -> dict | None:
    """The estimate written to `plan["memory"]`: null on cpu or when the model is unknown."""
    from ftc.compiler.memory.recipe import setup_from_plan
    from ftc.compiler.memory.report import to_json

    hw = plan.get("hardware") or {}
    if hw.get("accelerator") == "cpu":
        return None
    rm = setup_from_plan(recipe, plan)
    if rm.setup is None:
        return None
    setup, _ = settled(rm)
    return to_json(estimate(setup), setup, rm.budget_bytes, rm.cpu_memory, rm.assumptions)


def settled(rm) -> tuple[MemorySetup, tuple[Decision, ...]]:
    """`rm.setup` with the autos it still has decided against the budget; as it is without a budget
    (lowering's fixed rules have decided them then) or with nothing left open."""
    if rm.autos and rm.budget_bytes is not None:
        return resolve_auto(rm.setup, rm.autos, rm.budget_bytes, rm.global_batch, rm.setup.dp_world)
    return rm.setup, ()
