"""Optimizer memory: the state each optimizer keeps per trainable parameter, and the temporaries of
its update step (formulas and sources: docs/memory.md)."""

from __future__ import annotations

from ftc.compiler.memory.setup import MemorySetup
from ftc.compiler.models.params import resolve_targets

BNB_MIN_8BIT_SIZE = 4096  # bnb keeps 32-bit state for smaller tensors
DS_SUB_GROUP_SIZE = 1_000_000_000  # DeepSpeed's stage-3 default (elements); the emitted ds_config keeps it


def optimizer_state_bytes(s: MemorySetup, trainable: int, state_dtype: int, counts) -> tuple[int, bool]:
    """(bytes of optimizer state for all trainable params, paged?)."""
    a = s.arch
    if s.optimizer in ("adamw", "paged_adamw"):
        return trainable * 2 * state_dtype, s.optimizer == "paged_adamw"
    if s.optimizer in ("adamw_8bit", "paged_adamw_8bit"):
        small = a.layers * a.layer_other_params + a.final_params if s.method == "full" else 0
        small += sum(times * m.count * m.d_out for m, times in a.all_linears if m.bias) if s.method == "full" else 0
        big = trainable - small
        # two uint8 states + one fp32 absmax per 256-element block each; small tensors keep 2 fp32 states
        return int(big * (2 + 8 / 256)) + small * 8, s.optimizer == "paged_adamw_8bit"
    if s.optimizer == "sgd":
        return 0, False  # transformers' "sgd": torch SGD without momentum keeps no state
    if s.optimizer == "adafactor":
        # factored second moment: one fp32 value per row and per column of each matrix
        if s.method == "full":
            rows_cols = sum(times * m.count * (m.d_in + m.d_out) for m, times in a.all_linears)
            rows_cols += a.vocab + a.hidden + (a.vocab + a.hidden if a.lm_head else 0)
            rows_cols += a.layers * a.layer_other_params + a.final_params
            rows_cols += a.tower_other_params  # unfactored (an upper bound: the embeddings are matrices)
        else:
            names, _ = resolve_targets(a, s.lora_targets)
            rows_cols = sum(times * m.count * 2 * (m.d_in + m.d_out + 2 * s.lora_rank)
                            for m, times in a.all_linears if m.name in names)
            rows_cols += counts.saved_copies // max(1, a.hidden) + a.hidden
        return rows_cols * 4, False
    raise ValueError(f"unknown optimizer {s.optimizer!r}")


def step_transient_bytes(s: MemorySetup, trainable: int, state_dtype: int, offloaded: bool, *,
                         gradient_bytes: int) -> int:
    """Bytes the optimizer step allocates on top of the model states (`gradient_bytes`: the gradients' dtype)."""
    if offloaded or s.optimizer_in_backward or s.fused_optimizer:
        return 0
    shard = s.shards if s.shard_stage >= 1 else 1
    if s.strategy == "deepspeed":
        # the fp32 gradient partition built for the update, and the client optimizer's own temporary: foreach
        # AdamW's one state-sized (fp32) tensor (measured: bench/deepspeed_memory_measure.py). Stage 3 updates
        # one sub-group at a time: parameters are grouped until a group's partition reaches sub_group_size.
        per_update = trainable // shard
        if s.shard_stage == 3:
            per_update = min(per_update, DS_SUB_GROUP_SIZE + _largest_parameter(s) // shard)
        temporary = 4 * per_update if s.optimizer in ("adamw", "paged_adamw") else 0
        # stages 1-2 free the 16-bit gradient partition as its fp32 copy is made; stage 3 keeps its buffer
        freed = gradient_bytes * per_update if s.shard_stage in (1, 2) else 0
        return 4 * per_update + temporary - freed
    if s.optimizer in ("adamw", "paged_adamw"):
        return trainable * state_dtype // shard  # foreach AdamW: one state-sized temporary
    if s.optimizer == "adafactor":
        return max(m.d_in * m.d_out for m, _ in s.arch.all_linears) * 4 * 2
    return 0


def _largest_parameter(s: MemorySetup) -> int:
    """Elements of the largest trainable tensor, an upper bound: the embedding (trained, or a saved module),
    a linear's (or fused experts') weight, or a LoRA factor."""
    a = s.arch
    if s.method == "full" or s.modules_to_save:
        return max([a.vocab * a.hidden] + [m.weight_params for m, _ in a.all_linears])
    return max(max(m.d_in, m.d_out) * s.lora_rank * m.lora_rank_factor for m, _ in a.all_linears)
