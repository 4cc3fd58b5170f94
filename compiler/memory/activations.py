"""Activation bytes per token, as transformers' modeling code makes autograd keep them.

One decoder layer's saved tensors, per family, for full fine-tuning and, through lora_activations.py,
LoRA (peft, with and without autocast) and QLoRA (bitsandbytes after prepare_model_for_kbit_training);
the loss's bytes per logit and the no-grad eval working set. tests/test_memory_activations.py and
tests/test_memory_loss.py hold these formulas to autograd's saved tensors and to measured live tensors on
small models.
"""

from __future__ import annotations

from ftc.compiler.memory.layer_families import (FP32_SCALED_NORMS, LAYER_NORMS, LLAMA_LIKE, TORCH_LAYER_NORMS,
                                                compute_bytes, expert_bytes, layer_norm_count, normalized_bytes)
from ftc.compiler.memory.lora_activations import LINEAR_ONLY_INPUTS, lora_delta, lora_fixed_bytes
from ftc.compiler.memory.setup import MemorySetup
from ftc.compiler.models.layout import NO_SDPA

# Unchunked cross-entropy, bytes per logit element. Forward: the logits (c) + their fp32 upcast + the
# saved log-softmax. Backward (the higher one in 16 bit): saved log-softmax + its incoming gradient + the
# gradient it produces, all fp32 = 12 B. Measured with torch's MemTracker on transformers' Llama loss path:
# 11.9 B in bf16 and 11.8 B in fp32 (tests/test_memory_loss.py).
LOSS_BYTES_FORWARD = 8  # on top of the logits' own dtype
LOSS_BYTES_BACKWARD = 12
LOSS_BYTES_CHUNKED = 1  # chunked output + loss: 16-bit logits stay, one chunk (1/8) upcast + log-softmax at a time

# the linears that read a norm's output
NORM_READERS = frozenset({"q_proj", "k_proj", "v_proj", "c_attn", "query_key_value", "gate_proj", "up_proj",
                          "c_fc", "fc1", "dense_h_to_4h"})
POW_GELU = ("gpt2", "phi")  # transformers' gelu_new, written with torch.pow (CUDA autocast: fp32)


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
        # QLoRA's fp32 residual runs these layers in fp32 (4-bit linears return their input's dtype);
        # attention's tensors stay the 16-bit copies autocast makes for SDPA and the matmuls (ac)
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
    else:  # falcon, gpt_neox: Q, K, V, output, fp32 log-sum-exp, GELU input and output
        total = layer_norm_count(a) * norm + c * (2 * q + 2 * kv) + c * q + 4 * heads + 2 * c * inter
        if a.shared_norm_input and not s.cuda_fp32_ops:  # GPT-NeoX's parallel LayerNorms keep their one
            total -= c * h  # input once (under CUDA autocast each keeps its own fp32 copy)
        # SDPA's V is a view of the fused qkv output, which stays whole; eager keeps one q-sized tensor less
        total += c * (q + kv) if not eager else -c * q
    if eager and t not in LLAMA_LIKE:  # (the scores come from an autocast matmul)
        total += eager_score_bytes(s, ac) * heads * s.seq_len
        if t == "phi":  # no SDPA output nor log-sum-exp; K and V repeated to every head
            total += 2 * c * (q - kv) - c * q - 4 * heads
        elif t != "bloom":  # no SDPA log-sum-exp (BLOOM's formula is eager's already)
            total -= 4 * heads
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
        total += lora_delta(s, c, with_lora_dropout)
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
        # (frozen linears keep no input; adapters cast their own copy either way)
        readers = sum(m.count for m in a.layer_linears if m.name in NORM_READERS) if s.method == "full" else 0
        total += fp32_layer_norm_extra(h, c, layer_norm_count(a), readers)
    if t in POW_GELU:
        total += (12 - 3 * c) * a.intermediate
    return total


def fp32_layer_norm_extra(h: int, c: int, norms: int, readers: int) -> int:
    """Per token, what `norms` LayerNorms run in fp32 from 16-bit inputs keep beyond the same norms in 16
    bit: each an fp32 copy of its input (for c·h) and fp32 mean and rstd; and, their output being fp32,
    a 16-bit cast per linear reading it that saves its input (`readers`) where each norm's shared 16-bit
    output was kept (with no reader saving it, nothing was)."""
    return norms * ((4 - c) * h + 4) + (readers - norms if readers else 0) * c * h


def layer_fixed_bytes(s: MemorySetup) -> int:
    """Bytes one layer keeps whatever the tokens: under CUDA autocast, the fp32 copies of each 16-bit
    LayerNorm's weight and bias, made per call (autocast caches only casts to 16 bit); and LoRA's
    (`lora_fixed_bytes`)."""
    a = s.arch
    total = 0
    if s.cuda_fp32_ops and a.model_type in TORCH_LAYER_NORMS:
        total += layer_norm_count(a) * 2 * 4 * a.hidden
    return total + lora_fixed_bytes(s)


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
    tokens = (s.eval_batch or s.micro_batch) * s.seq_len
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
