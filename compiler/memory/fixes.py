"""What to change when a recipe does not fit: edits, each estimated, ranked.

Ranking: edits that make the recipe fit come first, cheapest to adopt first (the order of
`_candidates`: recompute before sharding before changing the method or the data, more GPUs last);
then the rest by bytes saved. When no single edit fits, the greedy combination of the best savers is
offered too.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ftc.compiler.batch import divisors
from ftc.compiler.memory.auto import adapter_strategy
from ftc.compiler.memory.estimate import estimate
from ftc.compiler.memory.setup import MemorySetup
from ftc.compiler.memory.units import gib
from ftc.compiler.spelling import spell


# Edits tried in steps (micro_batch 7, 6, …; 2, 4, 8 GPUs): only the first that fits is offered, or the last.
STEPPED = ("train.micro_batch", "hardware.gpus_per_node", "hardware.nodes")


@dataclass(frozen=True)
class Fix:
    field: str  # recipe field, e.g. "train.gradient_checkpointing"
    value: object  # the value to write
    saved_bytes: int
    spare_bytes: int  # budget − new peak (negative: still over)
    changes: tuple[tuple[str, object], ...] = ()  # several fields, for a combined fix
    host_bytes: int = 0  # host RAM per node the edited recipe needs
    host_budget: int | None = None  # `hardware.cpu_memory`; None: not declared, not checked

    @property
    def host_over(self) -> bool:
        return self.host_budget is not None and self.host_bytes > self.host_budget

    @property
    def fits(self) -> bool:
        return self.spare_bytes >= 0 and not self.host_over

    def describe(self) -> str:
        edits = self.changes or ((self.field, self.value),)
        what = " and ".join(f"{f.split('.')[-1]} = {spell(v)}" for f, v in edits)
        if self.host_over:
            outcome = (f"but needs {gib(self.host_bytes)} of host RAM per node, over `cpu_memory` "
                       f"{gib(self.host_budget)}")
        elif self.fits:
            outcome = f"fits with {gib(self.spare_bytes)} to spare"
        else:
            outcome = f"still {gib(-self.spare_bytes)} over"
        return f"{what} saves {gib(self.saved_bytes)} → {outcome}"


def _candidates(s: MemorySetup, global_batch: int | None, auto_strategy: int | None = None):
    """(edits, changed setup) for each applicable edit, in adoption-cost order; `edits` is one
    (field, value) pair, or several for a change that needs them together (more GPUs and a sharding).
    `auto_strategy`: the budget, when `distributed auto` re-decides the strategy for a changed method."""
    if not s.gradient_checkpointing:
        yield (("train.gradient_checkpointing", True),), s.with_(gradient_checkpointing=True)
    if s.micro_batch > 1:
        per_rank = global_batch // s.dp_world if global_batch and global_batch % s.dp_world == 0 else None
        for m in _smaller_micro_batches(s.micro_batch, per_rank):
            yield (("train.micro_batch", m),), s.with_(micro_batch=m)
    if s.attention == "eager":
        yield (("model.attention", "sdpa"),), s.with_(attention="sdpa")
    if s.method != "full" and s.lora_dropout > 0:
        yield (("method.dropout", 0.0),), s.with_(lora_dropout=0.0)
    if s.dp_world > 1 and s.optimizer not in ("adamw_8bit", "paged_adamw_8bit"):
        if s.strategy == "deepspeed":  # higher stages shard more; a lower one can save too (ZeRO-3's linear
            for z in range(1, s.max_shard_stage + 1):  # keeps every input, and LoRA shards little)
                if z != s.zero:
                    yield (("distributed.zero", z),), s.with_(zero=z)
        elif s.strategy in ("none", "ddp") and s.max_shard_stage == 3:
            yield (("distributed", "fsdp"),), s.with_(strategy="fsdp")
    if s.optimizer == "adamw" and s.shard_stage == 0:
        yield (("train.optimizer", "adamw_8bit"),), s.with_(optimizer="adamw_8bit")
    if s.strategy == "deepspeed" and s.zero >= 1 and s.offload_optimizer == "none" and s.optimizer == "adamw":
        yield (("distributed.offload_optimizer", "cpu"),), s.with_(offload_optimizer="cpu")
    if s.shard_stage == 3 and s.offload_params == "none":
        yield (("distributed.offload_params", "cpu"),), s.with_(offload_params="cpu")
    if s.method == "full":
        yield (("method", "lora"),), _as_method(s, "lora", auto_strategy)
    if s.method == "lora":
        qlora = _as_method(s, "qlora", auto_strategy)
        if qlora.shard_stage <= qlora.max_shard_stage:
            yield (("method", "qlora"),), qlora
    if s.method == "qlora":  # saves only where bitsandbytes leaves weights unquantized (fused MoE experts)
        yield (("method", "lora"),), _as_method(s, "lora", auto_strategy)
    if s.seq_len > 256:
        yield (("data.max_length", s.seq_len // 2),), s.with_(seq_len=s.seq_len // 2)
    yield from _more_gpus(s, global_batch)


def _as_method(s: MemorySetup, method: str, auto_strategy: int | None) -> MemorySetup:
    """`s` trained with adapters `method`: under `distributed auto` on several ranks also with the strategy
    auto gives adapters (`adapter_strategy`, against the budget `auto_strategy`), not the one it gave `s`."""
    changed = s.with_(method=method)
    if auto_strategy is None or s.dp_world == 1:
        return changed
    ddp = changed.with_(strategy="ddp", zero=0, offload_optimizer="none", offload_params="none")
    return ddp.with_(strategy=adapter_strategy(ddp, auto_strategy)[0])


def _more_gpus(s: MemorySetup, global_batch: int | None):
    """More GPUs of the same kind, with the weights sharded over them (FSDP unless the recipe already
    shards with DeepSpeed): up to 8 per node, then 2 or 4 times the nodes. Not where the weights cannot be
    sharded (QLoRA: `max_shard_stage`)."""
    if s.max_shard_stage < 3 or s.optimizer in ("adamw_8bit", "paged_adamw_8bit"):
        return
    layouts = [("hardware.gpus_per_node", gpus, gpus, s.nodes) for gpus in (2, 4, 8) if gpus > s.gpus_per_node]
    if s.gpus_per_node >= 8:
        layouts += [("hardware.nodes", s.nodes * k, s.gpus_per_node, s.nodes * k) for k in (2, 4)]
    for field, value, gpus, nodes in layouts:
        world = gpus * nodes
        if global_batch is None or global_batch % world or (global_batch // world) % s.micro_batch:
            continue
        edits = [(field, value)]
        changed = s.with_(gpus_per_node=gpus, nodes=nodes, dp_world=world, sequences_per_rank=global_batch // world)
        if s.strategy == "deepspeed" and s.zero < 3:
            edits.append(("distributed.zero", 3))
            changed = changed.with_(zero=3)
        elif s.strategy in ("none", "ddp"):
            edits.append(("distributed", "fsdp"))
            changed = changed.with_(strategy="fsdp")
        yield tuple(edits), changed


def suggest_fixes(setup: MemorySetup, budget_bytes: int, global_batch: int | None = None,
                  limit: int = 5, host_budget: int | None = None, strategy_written: bool = True) -> list[Fix]:
    """Ranked edits (and a combination when none fits alone). With `host_budget` (`cpu_memory`), an edit
    that fits the GPU but not host RAM (offloading, say) does not count as fitting. Without
    `strategy_written` (`distributed auto`, or no `distributed` block, which has no fields of its own),
    an edit of a `distributed` field names the strategy too."""
    before = estimate(setup).peak_bytes
    fixes: list[tuple[int, Fix]] = []
    seen_fields: set[str] = set()
    auto_strategy = None if strategy_written else budget_bytes
    for order, (edits, changed) in enumerate(_candidates(setup, global_batch, auto_strategy)):
        after_estimate = estimate(changed)
        after = after_estimate.peak_bytes
        if after >= before:
            continue
        (field, value), *_ = edits
        fix = Fix(field, value, before - after, budget_bytes - after, edits if len(edits) > 1 else (),
                  after_estimate.cpu_bytes_per_node, host_budget)
        if field in STEPPED:  # only the smallest change that fits
            if field in seen_fields or (not fix.fits and value != _last_value(setup, field, global_batch)):
                continue
        seen_fields.add(field)
        fixes.append((order, fix))
    fitting = [f for _, f in sorted(fixes, key=lambda p: p[0]) if f.fits]
    others = sorted((f for _, f in fixes if not f.fits), key=lambda f: -f.saved_bytes)
    ranked = fitting + others
    if not fitting and others:
        combined = _combine(setup, budget_bytes, global_batch, before, host_budget)
        if combined is not None:
            ranked.insert(0, combined)
    if not strategy_written:
        ranked = [_naming_strategy(fix, setup.strategy) for fix in ranked]
    return ranked[:limit]


def _naming_strategy(fix: Fix, strategy: str) -> Fix:
    """`distributed = deepspeed and offload_optimizer = cpu`: a `distributed auto` block takes no fields, so
    an edit of one is written with the strategy that auto chose."""
    edits = fix.changes or ((fix.field, fix.value),)
    fields = [field for field, _ in edits]
    if "distributed" in fields or not any(field.startswith("distributed.") for field in fields):
        return fix
    return replace(fix, changes=(("distributed", strategy),) + edits)


def _smaller_micro_batches(micro: int, per_rank: int | None) -> list[int]:
    """Micro-batches below `micro`, largest first: those dividing the sequences per rank, or halvings
    when that is unknown (the batch arithmetic is then an error of its own)."""
    if per_rank:
        return [m for m in divisors(per_rank)[::-1] if m < micro]
    halvings = []
    while micro > 1:
        micro //= 2
        halvings.append(micro)
    return halvings


def _last_value(setup: MemorySetup, field: str, global_batch: int | None):
    """The furthest a stepped edit goes, shown even when it does not fit: micro_batch 1, the most GPUs."""
    if field == "train.micro_batch":
        return 1
    return max((edits[0][1] for edits, _ in _more_gpus(setup, global_batch) if edits[0][0] == field), default=None)


def _combine(setup: MemorySetup, budget: int, global_batch: int | None, before: int,
             host_budget: int | None) -> Fix | None:
    """Greedy: apply the best-saving edit of a different field until the recipe fits (the recipe's own
    method, data and hardware stay: those are offered alone)."""
    current, changes, used = setup, [], set()
    for _ in range(6):
        best = None
        for edits, changed in _candidates(current, global_batch):
            field, value = edits[0]
            if field in used or field in ("method", "data.max_length") or field.startswith("hardware."):
                continue
            changed_estimate = estimate(changed)
            if host_budget is not None and changed_estimate.cpu_bytes_per_node > host_budget:
                continue
            peak = changed_estimate.peak_bytes
            if best is None or peak < best[0]:
                best = (peak, field, value, changed, changed_estimate.cpu_bytes_per_node)
        if best is None:
            return None
        peak, field, value, current, host = best
        used.add(field)
        changes.append((field, value))
        if peak <= budget:
            return Fix(changes[0][0], changes[0][1], before - peak, budget - peak, tuple(changes), host, host_budget)
    return None
