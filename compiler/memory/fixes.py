"""What to change when a recipe does not fit: single-field edits, each estimated, ranked.

Ranking: edits that make the recipe fit come first, cheapest to adopt first (the order of
`_CANDIDATES`: recompute before sharding before changing the method or the data); then the rest by
bytes saved. When no single edit fits, the greedy combination of the best savers is offered too.
"""

from __future__ import annotations

from dataclasses import dataclass

from ftc.compiler.memory.estimate import estimate
from ftc.compiler.memory.setup import MemorySetup
from ftc.compiler.memory.units import gib


@dataclass(frozen=True)
class Fix:
    field: str  # recipe field, e.g. "train.gradient_checkpointing"
    value: object  # the value to write
    saved_bytes: int
    spare_bytes: int  # budget − new peak (negative: still over)
    changes: tuple[tuple[str, object], ...] = ()  # several fields, for a combined fix

    @property
    def fits(self) -> bool:
        return self.spare_bytes >= 0

    def describe(self) -> str:
        edits = self.changes or ((self.field, self.value),)
        what = " and ".join(f"{f.split('.')[-1]} = {_show(v)}" for f, v in edits)
        outcome = f"fits with {gib(self.spare_bytes)} to spare" if self.fits else \
            f"still {gib(-self.spare_bytes)} over"
        return f"{what} saves {gib(self.saved_bytes)} → {outcome}"


def _show(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _candidates(s: MemorySetup, global_batch: int | None):
    """(field, value, changed setup) for each applicable single edit, in adoption-cost order."""
    if not s.gradient_checkpointing:
        yield "train.gradient_checkpointing", True, s.with_(gradient_checkpointing=True)
    if s.micro_batch > 1:
        per_rank = global_batch // s.dp_world if global_batch and global_batch % s.dp_world == 0 else None
        for m in range(s.micro_batch - 1, 0, -1):
            if per_rank is None or per_rank % m == 0:
                yield "train.micro_batch", m, s.with_(micro_batch=m)
    if s.attention == "eager":
        yield "model.attention", "sdpa", s.with_(attention="sdpa")
    if s.method != "full" and s.lora_dropout > 0:
        yield "method.dropout", 0.0, s.with_(lora_dropout=0.0)
    if s.dp_world > 1 and s.optimizer not in ("adamw_8bit", "paged_adamw_8bit"):
        if s.strategy == "deepspeed":
            for z in range(s.zero + 1, 4):
                yield "distributed.zero", z, s.with_(zero=z)
        elif s.strategy in ("none", "ddp"):
            yield "distributed", "fsdp", s.with_(strategy="fsdp")
    if s.optimizer == "adamw" and s.shard_stage == 0:
        yield "train.optimizer", "adamw_8bit", s.with_(optimizer="adamw_8bit")
    if s.strategy == "deepspeed" and s.zero >= 1 and s.offload_optimizer == "none" and s.optimizer == "adamw":
        yield "distributed.offload_optimizer", "cpu", s.with_(offload_optimizer="cpu")
    if s.shard_stage == 3 and s.offload_params == "none":
        yield "distributed.offload_params", "cpu", s.with_(offload_params="cpu")
    if s.method == "full":
        yield "method", "lora", s.with_(method="lora")
    if s.method == "lora":
        yield "method", "qlora", s.with_(method="qlora")
    if s.seq_len > 256:
        yield "data.max_length", s.seq_len // 2, s.with_(seq_len=s.seq_len // 2)


def suggest_fixes(setup: MemorySetup, budget_bytes: int, global_batch: int | None = None,
                  limit: int = 5) -> list[Fix]:
    """Ranked single-field edits (and a combination when none fits alone)."""
    before = estimate(setup).peak_bytes
    fixes: list[tuple[int, Fix]] = []
    seen_fields: set[str] = set()
    for order, (field, value, changed) in enumerate(_candidates(setup, global_batch)):
        after = estimate(changed).peak_bytes
        if after >= before:
            continue
        fix = Fix(field, value, before - after, budget_bytes - after)
        if field == "train.micro_batch":  # only the largest micro-batch that fits, or 1
            if field in seen_fields or (not fix.fits and value != 1):
                continue
        seen_fields.add(field)
        fixes.append((order, fix))
    fitting = [f for _, f in sorted(fixes, key=lambda p: p[0]) if f.fits]
    others = sorted((f for _, f in fixes if not f.fits), key=lambda f: -f.saved_bytes)
    ranked = fitting + others
    if not fitting and others:
        combined = _combine(setup, budget_bytes, global_batch, before)
        if combined is not None:
            ranked.insert(0, combined)
    return ranked[:limit]


def _combine(setup: MemorySetup, budget: int, global_batch: int | None, before: int) -> Fix | None:
    """Greedy: apply the best-saving edit of a different field until the recipe fits."""
    current, changes, used = setup, [], set()
    for _ in range(6):
        best = None
        for field, value, changed in _candidates(current, global_batch):
            if field in used or field in ("method", "data.max_length"):
                continue
            peak = estimate(changed).peak_bytes
            if best is None or peak < best[0]:
                best = (peak, field, value, changed)
        if best is None:
            return None
        peak, field, value, current = best
        used.add(field)
        changes.append((field, value))
        if peak <= budget:
            return Fix(changes[0][0], changes[0][1], before - peak, budget - peak, tuple(changes))
    return None
