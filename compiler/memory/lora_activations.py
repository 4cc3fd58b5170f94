"""What LoRA and QLoRA change in a decoder layer's saved bytes, per family: a frozen base keeps no
input for weight gradients, adapters keep their own. tests/test_memory_activations.py holds each rule to
autograd's saved tensors, on the CPU and under CUDA autocast's policy.
"""

from __future__ import annotations

from ftc.compiler.memory.layer_families import (LAYER_NORMS, LLAMA_LIKE, compute_bytes, expert_bytes,
                                                normalized_bytes)
from ftc.compiler.memory.setup import MemorySetup
from ftc.compiler.models.params import is_all_linear, resolve_targets


def lora_delta(s: MemorySetup, c: int, with_dropout: bool) -> int:
    """A frozen base saves less (no weight gradients need the inputs); adapters save a little more. Each
    family's rule is measured; what none covers (QLoRA or fp32 training on the MoE layout) keeps a generic
    upper bound: the full layer plus every adapter's output."""
    a = s.arch
    names = set(resolve_targets(a, s.lora_targets)[0])
    adapted = [m for m in a.layer_linears if m.name in names]
    if a.model_type in LLAMA_LIKE and (not a.experts or a.model_type == "gpt_oss"):
        return _lora_delta_llama(s, c, with_dropout, names, adapted)
    if _moe_lora_under_autocast(s):
        return _lora_delta_moe(s, c, with_dropout, names, adapted)
    if _lora_in_layer_norm_family(s):
        return _lora_delta_layer_norm_families(s, c, with_dropout, names, adapted)
    delta = sum(c * (m.d_out + s.lora_rank) * m.count for m in adapted)  # adapter outputs
    if with_dropout and s.lora_dropout > 0:
        delta += sum(4 * m.d_in * m.count for m in adapted)  # dropout output and mask of each input
    return delta


def frozen_linears_keep_inputs(s: MemorySetup) -> bool:
    """DeepSpeed ZeRO-3 replaces `torch.nn.functional.linear` with `LinearFunctionForZeroStage3`
    (zero.Init's `mem_efficient_linear`, on by default), which saves every linear's input whether or not
    its weight trains: a frozen base keeps its linears' inputs (measured: bench/deepspeed_memory_measure.py).
    GPT-2's Conv1D layers call `torch.addmm` themselves and keep their behaviour."""
    return s.strategy == "deepspeed" and s.shard_stage == 3 and s.arch.model_type not in CONV1D_FAMILIES


CONV1D_FAMILIES = ("gpt2",)  # transformers' Conv1D instead of nn.Linear


def _lora_in_layer_norm_family(s: MemorySetup) -> bool:
    """LoRA or QLoRA on GPT-2, OPT, Phi, Falcon or BLOOM (measured, with and without autocast)."""
    return (s.method == "lora" or s.qlora_fp32_residual) and s.arch.model_type in LINEAR_ONLY_INPUTS


# Per token, what these families save only as the input of a linear, and the linears that read it: the
# norms' outputs (h); the attention output where it is a copy (Phi: q, BLOOM: attention's h); the MLP
# activation's output where its backward does not need it (I: GPT-2's and Phi's gelu_new, Falcon's and
# BLOOM's GELU; OPT's ReLU keeps its output for itself). A frozen base no longer keeps them.
LINEAR_ONLY_INPUTS = {
    "gpt2": ((("c_attn",), "h"), (("c_fc",), "h"), (("c_proj",), "I")),
    "opt": ((("q_proj", "k_proj", "v_proj"), "h"), (("fc1",), "h")),
    "phi": ((("q_proj", "k_proj", "v_proj", "fc1"), "h"), (("dense",), "q"), (("fc2",), "I")),
    "falcon": ((("query_key_value", "dense_h_to_4h"), "h"), (("dense_4h_to_h",), "I")),
    "bloom": ((("query_key_value",), "h"), (("dense",), "attention h"), (("dense_h_to_4h",), "h"),
              (("dense_4h_to_h",), "I")),
}


def _linear_only_input_bytes(a, size: str, c: int, attention_c: int) -> int:
    return {"h": c * a.hidden, "q": c * a.q_dim, "I": c * a.intermediate, "attention h": attention_c * a.hidden}[size]


def _lora_delta_layer_norm_families(s: MemorySetup, c: int, with_dropout: bool, names: set, adapted: list) -> int:
    """A frozen base keeps none of its linears' inputs. Under autocast each adapter keeps its own 16-bit
    cast of its input (peft casts it to the fp32 adapter's dtype, autocast back) and its rank-r
    intermediate, and the adapters' 16-bit weight copies are per layer (`lora_fixed_bytes`); without
    autocast (an fp32 model) an input stays kept while an adapter reads it, and each adapter adds its
    rank-r intermediate. Measured against autograd on the CPU and under CUDA's autocast policy
    (tests/test_memory_activations.py)."""
    a = s.arch
    autocast = s.autocast
    dropout = with_dropout and s.lora_dropout > 0  # (adapters then read their dropout's output, not the input)
    cast = compute_bytes(s)  # (16 bit under autocast, also where QLoRA runs the layer in fp32)
    delta = 0
    for readers, size in LINEAR_ONLY_INPUTS[a.model_type] if not frozen_linears_keep_inputs(s) else ():
        if autocast or dropout or not names & set(readers):
            delta -= _linear_only_input_bytes(a, size, c, cast)
    delta += sum(cast * ((m.d_in if autocast else 0) + s.lora_rank) * m.count for m in adapted)
    delta += _rope_kept(a, names, c)
    if dropout:  # each adapter's dropout mask, fp32 (of its fp32 input cast); without autocast its output too
        delta += sum(((cast + 2) if autocast else 2 * cast) * m.d_in * m.count for m in adapted)
    return delta


# What peft adapts as parameters (target_parameters), not modules: the router's weight and the fused experts
PARAMETER_TARGETS = ("gate", "gate_up_proj", "down_proj")


def _moe_lora_under_autocast(s: MemorySetup) -> bool:
    """LoRA on Mixtral's or Qwen3-MoE's layout (router, fused experts) under autocast (measured)."""
    a = s.arch
    return s.method == "lora" and s.autocast and bool(a.experts) and a.model_type != "gpt_oss"


def _lora_delta_moe(s: MemorySetup, c: int, with_dropout: bool, names: set, adapted: list) -> int:
    """A frozen base keeps neither the norms' outputs (the attention's and the router's input), nor the
    norms' normalized inputs, nor each routed copy's gathered input and SwiGLU product (the experts'
    inputs). Attention adapters keep their own 16-bit input cast and rank-r intermediate; peft adapts the
    router and the experts as parameters, so a step materializes `W + B·A` and keeps what that weight's
    gradient needs: the router's input, the gathered inputs (gate_up), the products (down). The
    materialized weights themselves are per layer (`lora_fixed_bytes`). Measured against autograd on the
    CPU (tests/test_memory_activations.py)."""
    a = s.arch
    h, inter, k = a.hidden, a.intermediate, max(1, a.experts_per_token)
    delta = -_frozen_norm_inputs(a, c) - (0 if frozen_linears_keep_inputs(s) else 2 * c * h) - k * c * (h + inter)
    attention = [m for m in adapted if m.name not in PARAMETER_TARGETS]
    delta += sum(c * (m.d_in + s.lora_rank) * m.count for m in attention)
    delta += (c * h if "gate" in names else 0) + (k * c * h if "gate_up_proj" in names else 0) \
        + (k * c * inter if "down_proj" in names else 0)
    delta += _rope_kept(a, names, c)
    if with_dropout and s.lora_dropout > 0:  # each attention adapter's dropout output and mask
        delta += sum((c + 2) * m.d_in * m.count for m in attention)
    return delta


def _lora_delta_llama(s: MemorySetup, c: int, with_dropout: bool, names: set, adapted: list) -> int:
    """Measured against autograd on Llama (tests/test_memory_activations.py). A frozen base keeps no
    input for weight gradients and frozen norms no normalized input. Without autocast an adapter keeps
    its rank-r intermediate and a linear input stays saved while some adapter reads it. Under autocast
    (16-bit base, fp32 adapters) peft casts each adapter's input to fp32 and autocast back to 16 bit, so
    every adapter keeps its own 16-bit copy of its input, and 10 B per rank."""
    a = s.arch
    autocast = s.autocast
    delta = -_frozen_norm_inputs(a, c)
    attention_in = bool(names & {"q_proj", "k_proj", "v_proj", "qkv_proj"})
    mlp_in = bool(names & {"gate_proj", "up_proj", "gate_up_proj", "c_fc"})
    if a.model_type == "gpt_oss":  # frozen experts keep neither their gathered input nor the down input;
        k = max(1, a.experts_per_token)  # eager attention's output is o_proj's input alone; and no dense MLP
        delta -= k * expert_bytes(s, c) * (a.hidden + a.intermediate) - c * a.intermediate  # input to drop
        if not frozen_linears_keep_inputs(s):
            delta -= c * a.q_dim  # (an adapted o_proj keeps its own copy, counted with the adapters)
    parallel = a.model_type == "cohere"  # attention and MLP read one norm's output
    if autocast:
        delta += sum((c * m.d_in + 10 * s.lora_rank) * m.count for m in adapted)
        # the shared inputs, now copied per adapter
        delta -= (1 if parallel else 2) * c * a.hidden + c * a.intermediate
    else:
        delta += sum(c * s.lora_rank * m.count for m in adapted)
        if not frozen_linears_keep_inputs(s):  # the frozen linears' inputs no adapter reads
            if parallel:
                delta -= 0 if attention_in or mlp_in else c * a.hidden
            else:
                delta -= (0 if attention_in else c * a.hidden) + (0 if mlp_in else c * a.hidden)
                delta -= 0 if names & {"down_proj", "c_proj"} else c * a.intermediate
    delta += _rope_kept(a, names, c)
    if a.model_type == "stablelm":  # the query copy its partial rotary keeps for full fine-tuning is not kept
        delta -= c * a.q_dim
    if with_dropout and s.lora_dropout > 0:
        delta += sum((c + 2) * m.d_in * m.count for m in adapted)  # each adapter's dropout output and mask
    return delta


def _frozen_norm_inputs(a, c: int) -> int:
    """What frozen RMSNorms no longer keep: the normalized input their weight's gradient needs (hidden
    norms, and the query/key norms); LayerNorms' own bytes do not change."""
    total = a.hidden_norms * normalized_bytes(a, c) * a.hidden if a.model_type not in LAYER_NORMS else 0
    return total + (normalized_bytes(a, c) * (a.q_dim + a.kv_dim) if a.qk_norm else 0)


# the families without rotary embeddings, and the linears that compute queries or keys
NO_ROPE = ("gpt2", "opt", "bloom")
QUERY_KEY_LINEARS = frozenset({"q_proj", "k_proj", "qkv_proj", "query_key_value"})


def _rope_kept(a, names: set, c: int) -> int:
    """RoPE's cos and sin stay saved per layer when no adapter reads the queries' or keys' projection."""
    return 0 if a.model_type in NO_ROPE or names & QUERY_KEY_LINEARS else c * a.head_dim


def lora_fixed_bytes(s: MemorySetup) -> int:
    """Bytes per layer LoRA keeps whatever the tokens, where it is modeled per family: under autocast the
    16-bit copies of the fp32 adapters' weights (cached, one per layer; the Llama-style formula counts
    them per token), and a parameter target's materialized `W + B·A`."""
    a = s.arch
    total = 0
    autocast = s.autocast
    moe = bool(a.experts) and a.model_type != "gpt_oss" and s.method in ("lora", "qlora")
    if autocast and (_lora_in_layer_norm_family(s) or moe):
        names = set(resolve_targets(a, s.lora_targets)[0])
        c = compute_bytes(s)
        doubled = is_all_linear(s.lora_targets)  # (all-linear's fused gate+up rank, measured)
        # `W + B·A` in the weight's dtype: fp32 for QLoRA's unquantized experts after k-bit preparation
        materialized = 4 if s.qlora_fp32_residual else c
        for m in a.layer_linears:
            if m.name in names:  # 16-bit copies of the adapter's weights; a parameter target's `W + B·A`
                total += c * m.count * (m.d_in + m.d_out) * s.lora_rank * (m.lora_rank_factor if doubled else 1)
                total += materialized * m.weight_params if a.experts and m.name in PARAMETER_TARGETS else 0
    return total
