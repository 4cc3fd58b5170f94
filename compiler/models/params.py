"""Exact parameter counts: total, trainable, LoRA, quantized — analytic, from the layout.

They must equal what transformers instantiates and what peft's `get_nb_trainable_parameters`
reports; the meta-device test holds them to that.
"""

from __future__ import annotations

from dataclasses import dataclass

from ftc.compiler.models.layout import Architecture

ALL_LINEAR = "all_linear"


@dataclass(frozen=True)
class ParamCounts:
    total: int  # every parameter of the trained model, adapters and saved copies included
    trainable: int
    base: int  # the base model alone
    lora: int  # adapter matrices A and B
    saved_copies: int  # trainable copies made by modules_to_save
    quantized: int  # base parameters stored in 4 bits under qlora
    unquantized: int  # base parameters kept in 16 bits (embeddings, head, norms, biases)
    token_rows: int = 0  # peft's trainable_token_indices: the added tokens' rows of the embedding and head


def is_all_linear(targets) -> bool:
    """`targets` means every linear: `all_linear` (peft's `all-linear`), alone or as the one list entry."""
    return targets in (ALL_LINEAR, "all-linear") or targets == [ALL_LINEAR] or targets == (ALL_LINEAR,)


def resolve_targets(arch: Architecture, targets) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(matched module names, unknown names). `targets` is a list of names or 'all_linear'."""
    if is_all_linear(targets):
        return arch.linear_names, ()
    known = set(arch.linear_names)
    names = tuple(dict.fromkeys(str(t) for t in targets))
    return tuple(n for n in names if n in known), tuple(n for n in names if n not in known)


def lora_params(arch: Architecture, rank: int, targets) -> int:
    """r·(d_in + d_out) per adapted module, summed over layers (and experts, and a vision tower); peft's
    all-linear gives fused gate+up experts twice the rank (named alone, they get the rank as written)."""
    names, _ = resolve_targets(arch, targets)
    all_linear = is_all_linear(targets)
    return sum(times * m.count * (m.lora_rank_factor if all_linear else 1) * rank * (m.d_in + m.d_out)
               for m, times in arch.all_linears if m.name in names)


def saved_module_params(arch: Architecture, modules_to_save) -> int:
    """Params of the trainable copies peft makes for `modules_to_save` (lm_head, embeddings)."""
    total = 0
    for name in modules_to_save or ():
        if name == "lm_head":
            total += arch.lm_head_params
        elif name == arch.embed_name:
            total += arch.vocab * arch.hidden
    return total


def count(arch: Architecture, method: str = "full", rank: int = 0, targets=(),
          modules_to_save=(), trainable_tokens: int = 0) -> ParamCounts:
    """`trainable_tokens`: tokens whose embedding rows (and head rows, unless tied) LoRA trains on their own."""
    base = arch.total_params
    quantized = arch.linear_params if method == "qlora" else 0
    if method == "full":
        return ParamCounts(base, base, base, 0, 0, quantized, base - quantized)
    lora = lora_params(arch, rank, targets)
    saved = saved_module_params(arch, modules_to_save)
    rows = trainable_tokens * arch.hidden * (1 if arch.lm_head is None else 2)
    return ParamCounts(base + lora + saved + rows, lora + saved + rows, base, lora, saved, quantized,
                       base - quantized, rows)


def with_added_tokens(arch: Architecture, added: int) -> Architecture:
    """The architecture after its embeddings (and an untied head) are resized for `added` new tokens."""
    if added <= 0:
        return arch
    from dataclasses import replace

    vocab = arch.vocab + added
    head = replace(arch.lm_head, d_out=vocab) if arch.lm_head is not None else None
    return replace(arch, vocab=vocab, embedding_params=arch.embedding_params + added * arch.hidden, lm_head=head)


def new_token_training(modules_to_save: list[str], arch) -> str:
    """How a LoRA run trains the rows of added tokens: peft's `trainable_token_indices` (only those rows of
    the embedding and output layers), or, when `modules_to_save` already trains either layer in full,
    `modules_to_save` for both (peft refuses a layer in both)."""
    embed = arch.embed_name if arch is not None else "embed_tokens"
    return "modules_to_save" if {embed, "lm_head"} & set(modules_to_save) else "trainable_token_indices"
