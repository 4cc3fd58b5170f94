"""Activation bytes per token, as transformers' modeling code makes autograd keep them.

One decoder layer's saved tensors, per family, for full fine-tuning, LoRA (peft, with and without
autocast) and QLoRA (bitsandbytes after prepare_model_for_kbit_training); the loss's bytes per logit and
the no-grad eval working set. tests/test_memory_activations.py and tests/test_memory_loss.py hold these
formulas to autograd's saved tensors and to measured live tensors on small models.
"""

from __future__ import annotations

from ftc.compiler.memory.setup import MemorySetup
from ftc.compiler.models.layout import NO_SDPA
from ftc.compiler.models.params import resolve_targets

# Unchunked cross-entropy, bytes per logit element. Forward: the logits (c) + their fp32 upcast + the
# saved log-softmax. Backward (the higher one in 16 bit): saved log-softmax + its incoming gradient + the
# gradient it produces, all fp32 = 12 B. Measured with torch's MemTracker on transformers' Llama loss path:
# 11.9 B in bf16 and 11.8 B in fp32 (tests/test_memory_loss.py).
LOSS_BYTES_FORWARD = 8  # on top of the logits' own dtype
LOSS_BYTES_BACKWARD = 12
LOSS_BYTES_CHUNKED = 1  # chunked output + loss: 16-bit logits stay, one chunk (1/8) upcast + log-softmax at a time

LLAMA_LIKE = ("llama", "smollm3", "granite", "mistral", "mixtral", "qwen2", "qwen3", "qwen3_moe", "olmo2", "olmo3",
              "gemma2", "gemma3_text", "gemma3", "gpt_oss", "phi3", "stablelm", "starcoder2", "cohere")
LAYER_NORMS = ("stablelm", "starcoder2")  # Llama-style layers with LayerNorms, not RMSNorms
# weight × normalized in fp32, then cast
FP32_SCALED_NORMS = ("olmo2", "olmo3", "gemma2", "gemma3_text", "gemma3", "gpt_oss")
# torch's nn.LayerNorm (CUDA autocast runs it in fp32)
TORCH_LAYER_NORMS = ("gpt2", "opt", "bloom", "phi", "falcon") + LAYER_NORMS
# LayerNorms per layer read off the norm parameters (weight and bias each): one in Phi's and Falcon-7B's
# parallel blocks, two in Falcon's newer layout and its sequential one
NORMS_FROM_PARAMS = ("phi", "falcon")
# the linears that read a norm's output
NORM_READERS = frozenset({"q_proj", "k_proj", "v_proj", "c_attn", "query_key_value", "gate_proj", "up_proj",
                          "c_fc", "fc1", "dense_h_to_4h"})
POW_GELU = ("gpt2", "phi")  # transformers' gelu_new, written with torch.pow (CUDA autocast: fp32)


def compute_bytes(s: MemorySetup) -> int:
    return 4 if (s.mixed_precision == "no" and s.dtype == "fp32") else 2


def runs_eager(s: MemorySetup) -> bool:
    return s.attention == "eager" or s.arch.model_type in NO_SDPA


def sdpa_gets_mask(s: MemorySetup) -> bool:
    """A padding mask reaches SDPA (eager adds it to the scores; flash-attention 2 unpads instead)."""
    return s.padded_batches and not runs_eager(s) and s.attention != "flash_attention_2"


def sdpa_masked_layers(s: MemorySetup) -> int:
    """How many layers hand SDPA a mask: all of them with padded batches, else the sliding-window layers
    once the sequence is longer than the window (flash-attention 2 takes the window as an argument)."""
    if sdpa_gets_mask(s):
        return s.arch.layers
    window = s.arch.sliding_window
    if window and s.seq_len > window and not runs_eager(s) and s.attention != "flash_attention_2":
        return s.arch.sliding_layers
    return 0


def eager_score_bytes(s: MemorySetup, c: int) -> int:
    """Bytes eager attention keeps per head and key position: the probabilities, which most families
    compute in fp32 and copy to the compute dtype for the matmul (both kept; no copy when compute is fp32);
    GPT-2's softmax and Falcon's run in their input's dtype, which CUDA autocast makes fp32. The dropout
    of the probabilities adds its mask (c bytes where autograd was checked; CUDA's fused dropout keeps a
    bool) and its output, which takes the copy's place where there is one."""
    a = s.arch
    in_input_dtype = a.model_type in ("gpt2", "falcon")
    fp32_softmax = not in_input_dtype or s.cuda_fp32_ops or c == 4
    copy = fp32_softmax and c < 4
    total = (4 if fp32_softmax else c) + (c if copy else 0)
    if a.attention_dropout > 0 and a.model_type != "falcon":  # (Falcon drops only under ALiBi)
        total += c if copy else 2 * c  # the mask, and an output where no copy is replaced
    return total


def norm_bytes(a, c: int) -> int:
    """Saved per token by one norm: RMSNorm keeps an fp32 copy of its input, the normalized input and the
    scaled output; LayerNorm keeps input, output and fp32 mean/rstd."""
    if a.model_type == "cohere":  # its LayerNorm in fp32 by hand: three fp32 intermediates, rstd, output
        return 12 * a.hidden + c * a.hidden + 4
    if a.model_type in LLAMA_LIKE and a.model_type not in LAYER_NORMS:
        return 4 * a.hidden + 2 * c * a.hidden + 4
    return 2 * c * a.hidden + (8 if c == 4 else 4)  # (mean and rstd in the input's dtype on the CPU)


def normalized_bytes(a, c: int) -> int:
    """Bytes per element of the normalized input a norm keeps for its weight's gradient: Gemma's, OLMo's,
    gpt-oss's and Cohere's scale in fp32, the others after casting back to the compute dtype."""
    return 4 if a.model_type in FP32_SCALED_NORMS or a.model_type == "cohere" else c


def expert_bytes(s: MemorySetup, c: int) -> int:
    """gpt-oss's expert tensors: in the compute dtype, but fp32 once k-bit preparation has cast the expert
    biases (bare parameters, not 4-bit linears) to fp32, since every expert matmul adds its bias."""
    return 4 if s.qlora_fp32_residual else c


def _llama_style_layer(s: MemorySetup, c: int, eager: bool) -> int:
    """One Llama-style decoder layer (pre-norm or post-norm RMSNorms, rotary attention, gated MLP or
    routed experts) before LoRA, masks and the QLoRA residual: the family-specific terms are each
    measured against autograd in tests/test_memory_activations.py."""
    a = s.arch
    h, q, kv, inter, heads = a.hidden, a.q_dim, a.kv_dim, a.intermediate, a.heads
    t = a.model_type
    # Gemma-3's, OLMo-2's and gpt-oss's norms scale in fp32 (8h + 4 each) and two c·h tensors feed the
    # linears (the pre-norm outputs, OLMo-2's residual); a multimodal Gemma-3 trains on text: only its
    # text stack runs. (Gemma-2's norms do too, but its eager-only formula was fitted as a whole.)
    fp32_norms = t in FP32_SCALED_NORMS and t != "gemma2"
    total = a.hidden_norms * (8 * h + 4) + 2 * c * h if fp32_norms else a.hidden_norms * norm_bytes(a, c)
    if eager and t == "gpt_oss":  # scores and a sink per head, softmax in the sinks' dtype, argmax indices;
        # k-bit preparation casts the sinks to fp32: fp32 probabilities and a 16-bit copy for the matmul
        probs = 4 * heads * (s.seq_len + 1) + c * heads * s.seq_len if s.qlora_fp32_residual else \
            c * heads * (s.seq_len + 1)
        total += c * 4 * q + probs + 8 * heads
    elif eager:  # K and V repeated to all heads; the probabilities (+ softcap)
        total += c * 4 * q + eager_score_bytes(s, c) * heads * s.seq_len
        if t == "gemma2":  # scaled query, tanh soft-capping of the scores
            total += c * q + 3 * heads * s.seq_len + 4 * heads
    else:  # Q and K after RoPE, V, output, fp32 log-sum-exp
        total += c * (2 * q + 2 * kv) + 4 * heads
    if t == "stablelm" or t == "phi3" and not eager:
        total += c * q  # partial-rotary concatenation (StableLM), fused qkv (Phi-3) keep one more query-sized tensor
    if t == "phi3" and not eager and not s.qlora_fp32_residual:
        total += c * (q + kv)  # SDPA's V is a view of the fused qkv output, which stays whole (no 16-bit cast)
    if a.qk_norm:  # per-head RMSNorm of the query and key: fp32 input, rsqrt per head, normalized input
        rows = heads + a.kv_heads if a.qk_norm_per_head else 2  # one rstd per head, or per token
        per_element = 12 if t == "cohere" else 4 + normalized_bytes(a, c)  # Cohere's LayerNorm: 3 fp32 copies
        total += per_element * (q + kv) + 4 * rows
    if a.experts and t == "gpt_oss":  # per routed copy: gathered input, gate_up, its clamped halves,
        k = max(1, a.experts_per_token)  # sigmoid, gate, up + 1 and product, output; routing indices
        total += k * (expert_bytes(s, c) * (7 * inter + 2 * h) + 44)
    elif a.experts:  # gathered input, gate_up, activation and product per routed copy; router in fp32
        k = max(1, a.experts_per_token)
        total += k * (4 * c * inter + 2 * c * h) + 25 * a.experts
    elif a.gated_mlp:
        total += 4 * c * inter  # gate, up, act(gate), product
    else:
        total += 2 * c * inter  # GELU's input and output (StarCoder2's c_fc and c_proj inputs)
    return total


def layer_bytes_per_token(s: MemorySetup, with_lora_dropout: bool = True) -> int:
    """Bytes one decoder layer saves for backward per token, as transformers' modeling code does
    (checked against autograd's saved tensors in tests/test_memory_activations.py)."""
    a = s.arch
    c = ac = compute_bytes(s)  # ac: attention's tensors, which autocast's matmuls and SDPA make 16-bit
    if s.qlora_fp32_residual and a.model_type in LINEAR_ONLY_INPUTS:
        # QLoRA's fp32 residual runs these layers in fp32 (4-bit linears return their input's dtype); the
        # 16-bit copies autocast makes for SDPA and the adapters are counted at 4 B too: an upper bound
        c = 4
    h, q, kv, inter, heads = a.hidden, a.q_dim, a.kv_dim, a.intermediate, a.heads
    eager = runs_eager(s)
    norm = norm_bytes(a, c)
    t = a.model_type
    if t in LLAMA_LIKE:
        total = _llama_style_layer(s, c, eager)
    elif t == "gpt2":
        total = 2 * norm + ac * 3 * h + ac * q + 4 * heads + 5 * c * inter  # gelu_new keeps 5 tensors
    elif t == "phi":
        total = norm + ac * (2 * q + 2 * kv) + c * q + 4 * heads + 5 * c * inter
    elif t == "opt":
        total = 2 * norm + ac * (q + 2 * kv) + ac * q + 4 * heads + c * inter  # relu keeps its output only
    elif t == "bloom":  # eager only: ALiBi added to the scores by baddbmm
        total = 2 * norm + ac * 3 * h + ac * h + 2 * c * inter
    else:  # falcon: Q, K, V, output, fp32 log-sum-exp, GELU input and output
        total = _layer_norms(a) * norm + c * (2 * q + 2 * kv) + c * q + 4 * heads + 2 * c * inter
        # SDPA's V is a view of the fused qkv output, which stays whole; eager keeps one q-sized tensor less
        total += c * (q + kv) if not eager else -c * q
    if eager and t not in LLAMA_LIKE:  # (the scores come from an autocast matmul)
        total += eager_score_bytes(s, ac) * heads * s.seq_len
        if t != "bloom":  # (BLOOM's formula is eager's already) no SDPA log-sum-exp; Phi keeps no SDPA
            total -= 4 * heads + (c * q if t == "phi" else 0)  # output either, and repeats K and V to every
            total += 2 * c * (q - kv) if t == "phi" else 0  # head
    if s.cuda_fp32_ops:
        total += _cuda_fp32_terms(s, c)
    masked = sdpa_masked_layers(s)
    if masked:
        # a mask makes transformers repeat K/V to every head for SDPA (no GQA fast path with a mask) and
        # SDPA turns the boolean mask into a 16-bit bias per call, kept for backward; averaged over layers
        total += round((c * 2 * (q - kv) + c * s.seq_len) * masked / a.layers)
    # residual dropout masks (GPT-2, OPT defaults): after attention's output projection, which returns its
    # 16-bit input's dtype under QLoRA, and after the MLP
    total += min(a.hidden_dropout_sites, 1) * ac * h + max(a.hidden_dropout_sites - 1, 0) * c * h
    if s.method != "full":
        total += _lora_delta(s, c, with_lora_dropout)
    if s.qlora_fp32_residual and a.gated_mlp and t != "gpt_oss":
        # fp32 residual stream: 4-bit linears return their input's dtype, so gate, act(gate) and up are fp32
        total += 3 * (4 - c) * inter * max(1, a.experts_per_token if a.experts else 1)
    elif s.qlora_fp32_residual and t in LLAMA_LIKE and not a.gated_mlp:  # GELU's input, the fp32 output
        total += (4 - c) * inter  # of the MLP's first linear (StarCoder2's c_fc)
    if s.qlora_fp32_residual and t in LAYER_NORMS:  # each LayerNorm keeps its fp32 input, mean and rstd
        total += a.hidden_norms * ((4 - c) * h + 4)
    return total


def _cuda_fp32_terms(s: MemorySetup, c: int) -> int:
    """What CUDA autocast's fp32 LayerNorm and `pow` keep per token beyond the same ops in 16 bit
    (measured against autograd under CUDA's op lists in tests/test_memory_activations.py). A LayerNorm
    keeps an fp32 copy of its input and fp32 mean and rstd; its output is fp32, so every linear that
    reads it saves its own 16-bit cast (autocast caches casts of weights only) where one shared 16-bit
    output was kept. gelu_new's tanh, its `1 + tanh` and the cube go fp32."""
    a = s.arch
    t, h = a.model_type, a.hidden
    total = 0
    if t in TORCH_LAYER_NORMS:
        norms = _layer_norms(a)
        total += norms * ((4 - c) * h + 4)
        if s.method == "full":  # (frozen linears keep no input; adapters cast their own copy either way)
            readers = sum(m.count for m in a.layer_linears if m.name in NORM_READERS)
            total += (readers - norms) * c * h
    if t in POW_GELU:
        total += (12 - 3 * c) * a.intermediate
    return total


def layer_fixed_bytes(s: MemorySetup) -> int:
    """Bytes one layer keeps whatever the tokens: under CUDA autocast, the fp32 copies of each 16-bit
    LayerNorm's weight and bias, made per call (autocast caches only casts to 16 bit); under autocast,
    the 16-bit copies of the fp32 adapters' weights (cached, one per layer) where LoRA is modeled by
    `_lora_delta_layer_norm_families` (the Llama-style formula counts them per token)."""
    a = s.arch
    total = 0
    if s.cuda_fp32_ops and a.model_type in TORCH_LAYER_NORMS:
        total += _layer_norms(a) * 2 * 4 * a.hidden
    moe_qlora = s.method == "qlora" and s.mixed_precision != "no" and a.experts and a.model_type != "gpt_oss"
    if _lora_under_autocast(s) or _moe_lora_under_autocast(s) or moe_qlora:
        names = set(resolve_targets(a, s.lora_targets)[0])
        c = compute_bytes(s)
        doubled = s.lora_targets in ("all_linear", "all-linear")  # (all-linear's fused gate+up rank, measured)
        # `W + B·A` in the weight's dtype: fp32 for QLoRA's unquantized experts after k-bit preparation
        materialized = 4 if s.qlora_fp32_residual else c
        for m in a.layer_linears:
            if m.name in names:  # 16-bit copies of the adapter's weights; a parameter target's `W + B·A`
                total += c * m.count * (m.d_in + m.d_out) * s.lora_rank * (m.lora_rank_factor if doubled else 1)
                total += materialized * m.weight_params if a.experts and m.name in PARAMETER_TARGETS else 0
    return total


def _layer_norms(a) -> int:
    return max(1, a.layer_other_params // (2 * a.hidden)) if a.model_type in NORMS_FROM_PARAMS else a.hidden_norms


def _lora_delta(s: MemorySetup, c: int, with_dropout: bool) -> int:
    """A frozen base saves less (no weight gradients need the inputs); adapters save a little more."""
    a = s.arch
    names = set(resolve_targets(a, s.lora_targets)[0])
    adapted = [m for m in a.layer_linears if m.name in names]
    if a.model_type in LLAMA_LIKE and (not a.experts or a.model_type == "gpt_oss"):
        return _lora_delta_llama(s, c, with_dropout, names, adapted)
    if _moe_lora_under_autocast(s):
        return _lora_delta_moe(s, c, with_dropout, names, adapted)
    if _lora_under_autocast(s):
        return _lora_delta_layer_norm_families(s, c, with_dropout, names, adapted)
    delta = sum(c * (m.d_out + s.lora_rank) * m.count for m in adapted)  # adapter outputs
    if with_dropout and s.lora_dropout > 0:
        delta += sum(4 * m.d_in * m.count for m in adapted)  # dropout output and mask of each input
    return delta


def _lora_under_autocast(s: MemorySetup) -> bool:
    """LoRA on GPT-2, OPT, Phi, Falcon or BLOOM under the Trainer's autocast (measured; QLoRA and fp32
    training keep the generic upper bound)."""
    return (s.method == "lora" or s.qlora_fp32_residual) and s.mixed_precision != "no" \
        and s.arch.model_type in LINEAR_ONLY_INPUTS


# Per token, what these families save only as the input of a linear, which a frozen base no longer keeps:
# the norms' outputs; the attention output where it is a copy (Phi, BLOOM); the MLP activation's output
# where its backward does not need it (GPT-2's and Phi's gelu_new, Falcon's and BLOOM's GELU; OPT's ReLU
# keeps its output for itself). (c, attention's c, h, q, I) -> bytes.
LINEAR_ONLY_INPUTS = {
    "gpt2": lambda c, ac, h, q, inter: 2 * c * h + c * inter,
    "opt": lambda c, ac, h, q, inter: 2 * c * h,
    "phi": lambda c, ac, h, q, inter: c * h + c * q + c * inter,
    "falcon": lambda c, ac, h, q, inter: c * h + c * inter,
    "bloom": lambda c, ac, h, q, inter: 2 * c * h + ac * h + c * inter,
}


def _lora_delta_layer_norm_families(s: MemorySetup, c: int, with_dropout: bool, names: set, adapted: list) -> int:
    """A frozen base keeps none of its linears' inputs; each adapter keeps its own 16-bit cast of its input
    (peft casts it to the fp32 adapter's dtype, autocast back) and its rank-r intermediate; the adapters'
    16-bit weight copies are per layer (`layer_fixed_bytes`). Measured against autograd on the CPU and
    under CUDA's autocast policy (tests/test_memory_activations.py)."""
    a = s.arch
    cast = compute_bytes(s)  # (16 bit, also where QLoRA runs the layer in fp32)
    delta = -LINEAR_ONLY_INPUTS[a.model_type](c, cast, a.hidden, a.q_dim, a.intermediate)
    delta += sum(cast * (m.d_in + s.lora_rank) * m.count for m in adapted)
    if a.model_type in ("phi", "falcon") and not names & {"q_proj", "k_proj", "query_key_value"}:
        delta += c * a.head_dim  # RoPE's cos and sin then stay saved per layer
    if with_dropout and s.lora_dropout > 0:  # each adapter's dropout: the fp32 mask of its fp32 input
        delta += sum((cast + 2) * m.d_in * m.count for m in adapted)
    return delta


# What peft adapts as parameters (target_parameters), not modules: the router's weight and the fused experts
PARAMETER_TARGETS = ("gate", "gate_up_proj", "down_proj")


def _moe_lora_under_autocast(s: MemorySetup) -> bool:
    """LoRA on Mixtral's or Qwen3-MoE's layout (router, fused experts) under autocast (measured)."""
    a = s.arch
    return s.method == "lora" and s.mixed_precision != "no" and bool(a.experts) and a.model_type != "gpt_oss"


def _lora_delta_moe(s: MemorySetup, c: int, with_dropout: bool, names: set, adapted: list) -> int:
    """A frozen base keeps neither the norms' outputs (the attention's and the router's input), nor the
    norms' normalized inputs, nor each routed copy's gathered input and SwiGLU product (the experts'
    inputs). Attention adapters keep their own 16-bit input cast and rank-r intermediate; peft adapts the
    router and the experts as parameters, so a step materializes `W + B·A` and keeps what that weight's
    gradient needs: the router's input, the gathered inputs (gate_up), the products (down). The
    materialized weights themselves are per layer (`layer_fixed_bytes`). Measured against autograd on the
    CPU (tests/test_memory_activations.py)."""
    a = s.arch
    h, inter, k = a.hidden, a.intermediate, max(1, a.experts_per_token)
    delta = -a.hidden_norms * normalized_bytes(a, c) * h
    if a.qk_norm:  # nor the frozen query/key norms
        delta -= normalized_bytes(a, c) * (a.q_dim + a.kv_dim)
    delta -= 2 * c * h + k * c * (h + inter)
    attention = [m for m in adapted if m.name not in PARAMETER_TARGETS]
    delta += sum(c * (m.d_in + s.lora_rank) * m.count for m in attention)
    delta += (c * h if "gate" in names else 0) + (k * c * h if "gate_up_proj" in names else 0) \
        + (k * c * inter if "down_proj" in names else 0)
    if not names & {"q_proj", "k_proj"}:
        delta += c * a.head_dim  # RoPE's cos and sin then stay saved per layer
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
    autocast = s.mixed_precision != "no"
    delta = -a.hidden_norms * normalized_bytes(a, c) * a.hidden if a.model_type not in LAYER_NORMS else 0
    if a.qk_norm:  # nor the frozen query/key norms
        delta -= normalized_bytes(a, c) * (a.q_dim + a.kv_dim)
    attention_in = bool(names & {"q_proj", "k_proj", "v_proj", "qkv_proj"})
    mlp_in = bool(names & {"gate_proj", "up_proj", "gate_up_proj", "c_fc"})
    if a.model_type == "gpt_oss":  # frozen experts keep neither their gathered input nor the down input;
        k = max(1, a.experts_per_token)  # eager attention's output is o_proj's input alone; and no dense MLP
        delta -= k * expert_bytes(s, c) * (a.hidden + a.intermediate) - c * a.intermediate  # input to drop
        delta -= c * a.q_dim  # (an adapted o_proj keeps its own copy, counted with the adapters)
    parallel = a.model_type == "cohere"  # attention and MLP read one norm's output
    if autocast:
        delta += sum((c * m.d_in + 10 * s.lora_rank) * m.count for m in adapted)
        # the shared inputs, now copied per adapter
        delta -= (1 if parallel else 2) * c * a.hidden + c * a.intermediate
    elif parallel:
        delta += sum(c * s.lora_rank * m.count for m in adapted)
        delta -= 0 if attention_in or mlp_in else c * a.hidden
    else:
        delta += sum(c * s.lora_rank * m.count for m in adapted)
        delta -= (0 if attention_in else c * a.hidden) + (0 if mlp_in else c * a.hidden)
        delta -= 0 if names & {"down_proj", "c_proj"} else c * a.intermediate
    if not names & {"q_proj", "k_proj", "qkv_proj"}:
        delta += c * a.head_dim  # RoPE's cos and sin then stay saved per layer
    if a.model_type == "stablelm":  # the query copy its partial rotary keeps for full fine-tuning is not kept
        delta -= c * a.q_dim
    if with_dropout and s.lora_dropout > 0:
        delta += sum((c + 2) * m.d_in * m.count for m in adapted)  # each adapter's dropout output and mask
    return delta


def layer_and_checkpoint_bytes(s: MemorySetup, with_lora_dropout: bool) -> tuple[float, float]:
    """(bytes saved per token by one layer, bytes per token of one checkpointed layer input)."""
    c = compute_bytes(s)
    # the residual stream is fp32 for an fp32 model under plain autocast and for QLoRA after the fp32
    # upcast; DeepSpeed and FSDP mixed precision run the layers in 16 bit
    # (BLOOM's embedding LayerNorm, fp32 under CUDA autocast, makes it fp32 too)
    if s.qlora_fp32_residual or s.dtype == "fp32" and not s.sharded_mixed_precision or \
            s.cuda_fp32_ops and s.arch.model_type == "bloom":
        resid = 4
    else:
        resid = c
    return layer_bytes_per_token(s, with_lora_dropout), s.arch.hidden * resid


def eval_bytes(s: MemorySetup) -> int:
    """No-grad forward: nothing is saved, so the peak is the larger of one layer's working set and the
    loss (logits, their fp32 upcast unless already fp32, log-softmax), on top of the residual stream."""
    a = s.arch
    tokens = s.micro_batch * s.seq_len
    c = compute_bytes(s)
    loss = tokens * a.vocab * (c + 4 + (4 if c < 4 else 0))
    mlp = max(1, a.experts_per_token if a.experts else 1) * 3 * a.intermediate  # gate, up, act(gate)
    layer = tokens * c * (a.hidden + mlp)
    if runs_eager(s):
        layer += tokens * a.heads * s.seq_len * (4 + c)  # fp32 scores and 16-bit probabilities
    elif sdpa_masked_layers(s):
        layer += tokens * c * s.seq_len  # the mask turned into a bias
    return max(layer, loss) + tokens * a.hidden * c


def loss_bytes_per_logit(compute: int) -> int:
    """Peak bytes per logit element of unchunked cross-entropy in training (forward or backward)."""
    return max(compute + LOSS_BYTES_FORWARD, LOSS_BYTES_BACKWARD)
