"""The whole estimate against measured training steps, on CPU.

bench/memory_measure.py builds a model the way the runtime does (bf16 weights, peft LoRA, bitsandbytes
NF4 with prepare_model_for_kbit_training), trains two steps the way the Trainer does (autocast,
backward, foreach AdamW, zero_grad(set_to_none)) and counts live tensors with the same rule as
CUDA's `max_memory_allocated` (bench/live_tensors.py). The estimator's live-tensor peak for the same
setup must be within -3% / +10% of it: every component and the choice of peak phase are exercised
(forward/backward with and without checkpointing, the optimizer step, eager attention, LoRA dropout,
4-bit weights, a tied embedding).
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import memory_measure  # noqa: E402

pytestmark = pytest.mark.slow

LLAMA = dict(model_type="llama", hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=8,
             num_key_value_heads=4, vocab_size=4096, max_position_embeddings=1024, tie_word_embeddings=False,
             rms_norm_eps=1e-5)

CASES = {
    "full": dict(method="full", micro_batch=4, seq_len=256),
    "full-checkpointing": dict(method="full", micro_batch=4, seq_len=256, gradient_checkpointing=True),
    "full-optimizer-step": dict(method="full", micro_batch=1, seq_len=32),
    "lora-qv-dropout": dict(method="lora", lora_rank=16, lora_targets=("q_proj", "v_proj"), lora_dropout=0.1,
                            micro_batch=4, seq_len=256),
    "lora-all-checkpointing": dict(method="lora", lora_rank=8, lora_targets="all_linear", micro_batch=4,
                                   seq_len=256, gradient_checkpointing=True),
    "lora-eager": dict(method="lora", lora_rank=8, micro_batch=2, seq_len=256, attention="eager"),
    "qlora-all-checkpointing": dict(method="qlora", lora_rank=8, lora_targets="all_linear", micro_batch=4,
                                    seq_len=256, gradient_checkpointing=True),
    "full-tied-embedding": dict(method="full", micro_batch=1, seq_len=32),
    "qwen3-full": dict(method="full", micro_batch=4, seq_len=256),
    "qwen3-lora-all-dropout": dict(method="lora", lora_rank=8, lora_targets="all_linear", lora_dropout=0.05,
                                   micro_batch=4, seq_len=256),
    "gemma3-sliding-window-full": dict(method="full", micro_batch=4, seq_len=256),
    "gemma3-sliding-window-lora": dict(method="lora", lora_rank=8, lora_targets="all_linear", micro_batch=4,
                                       seq_len=256),
    "gemma3-multimodal-lora": dict(method="lora", lora_rank=8, lora_targets="all_linear", micro_batch=4,
                                   seq_len=256),
    "gemma3-multimodal-full": dict(method="full", micro_batch=1, seq_len=32),
    "olmo2-full-checkpointing": dict(method="full", micro_batch=4, seq_len=256, gradient_checkpointing=True),
}
QWEN3 = dict(LLAMA, model_type="qwen3", head_dim=64, rms_norm_eps=1e-6, tie_word_embeddings=True)
# Gemma-3 with a 64-token window: 256-token sequences make its local layers hand SDPA a mask
GEMMA3 = dict(LLAMA, model_type="gemma3_text", head_dim=64, rms_norm_eps=1e-6, tie_word_embeddings=True,
              sliding_window=64, sliding_window_pattern=2)
# a multimodal Gemma-3 trained on text: its SigLIP tower is loaded, adapted and optimized, never run
GEMMA3_MULTIMODAL = dict(model_type="gemma3", text_config={k: v for k, v in GEMMA3.items() if k != "model_type"},
                         vision_config=dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                                            num_attention_heads=2, image_size=56, patch_size=14, vision_use_head=False),
                         mm_tokens_per_image=16)
CONFIGS = {"full-tied-embedding": dict(LLAMA, vocab_size=16384, tie_word_embeddings=True),
           "gemma3-multimodal-lora": GEMMA3_MULTIMODAL, "gemma3-multimodal-full": GEMMA3_MULTIMODAL,
           "olmo2-full-checkpointing": dict(LLAMA, model_type="olmo2", rms_norm_eps=1e-6),
           "qwen3-full": QWEN3, "qwen3-lora-all-dropout": QWEN3,
           "gemma3-sliding-window-full": GEMMA3, "gemma3-sliding-window-lora": GEMMA3}


# nn.LayerNorm families, tiny: on the CPU as they run there, and under CUDA autocast's fp32 policy
LAYER_NORM_CASES = {
    "gpt2-full": (dict(model_type="gpt2", n_embd=256, n_head=8, n_layer=4, vocab_size=4096, n_positions=1024,
                       attn_pdrop=0.0),  # (the CPU's SDPA math path would keep the s² dropout mask)
                  dict(method="full", micro_batch=4, seq_len=256)),
    "opt-full": (dict(model_type="opt", hidden_size=256, ffn_dim=1024, num_attention_heads=8, num_hidden_layers=4,
                      vocab_size=4096, word_embed_proj_dim=256, max_position_embeddings=1024),
                 dict(method="full", micro_batch=4, seq_len=256)),
    "phi-full": (dict(model_type="phi", hidden_size=256, intermediate_size=1024, num_attention_heads=8,
                      num_hidden_layers=4, vocab_size=4096, max_position_embeddings=1024),
                 dict(method="full", micro_batch=4, seq_len=256)),
    "phi-lora-all": (dict(model_type="phi", hidden_size=256, intermediate_size=1024, num_attention_heads=8,
                          num_hidden_layers=4, vocab_size=4096, max_position_embeddings=1024),
                     dict(method="lora", lora_rank=8, lora_targets="all_linear", micro_batch=4, seq_len=256)),
    "bloom-full": (dict(model_type="bloom", hidden_size=256, n_head=8, n_layer=4, vocab_size=4096),
                   dict(method="full", micro_batch=4, seq_len=256, attention="eager")),
    "starcoder2-full": (dict(model_type="starcoder2", hidden_size=256, intermediate_size=1024, num_attention_heads=8,
                             num_key_value_heads=4, num_hidden_layers=4, vocab_size=4096, max_position_embeddings=1024,
                             residual_dropout=0.1),
                        dict(method="full", micro_batch=4, seq_len=256)),
}


@pytest.mark.parametrize("device", ("cpu", "cuda"))
@pytest.mark.parametrize("case", list(LAYER_NORM_CASES))
def test_layer_norm_families_on_the_cpu_and_under_cuda_autocast(case, device, one_torch_thread):
    """The whole training step of a LayerNorm family (full, and LoRA on Phi): what the estimate says for a
    GPU (fp32 LayerNorm, gelu_new) and for the CPU, against the peak each really has. (Not with
    checkpointing: its recompute runs inside backward, where the policy's function mode is not active.)"""
    from cuda_autocast import cuda_fp32_policy

    config, fields = LAYER_NORM_CASES[case]
    with cuda_fp32_policy() if device == "cuda" else contextlib.nullcontext():
        measured, _ = memory_measure.measure(config, fields, steps=2, device="cpu")
    est = memory_measure.estimate_for(config, fields, device)
    error = (est.tensor_peak_bytes - measured) / measured
    assert -0.03 <= error <= 0.10, f"{case}: estimate {est.tensor_peak_bytes:,} vs measured {measured:,} ({error:+.1%})"


@pytest.mark.parametrize("case", list(CASES))
def test_estimate_matches_measured_live_tensor_peak(case, one_torch_thread):
    fields, config = CASES[case], CONFIGS.get(case, LLAMA)
    measured, _ = memory_measure.measure(config, fields, steps=2, device="cpu")
    est = memory_measure.estimate_for(config, fields)
    error = (est.tensor_peak_bytes - measured) / measured
    assert -0.03 <= error <= 0.10, f"{case}: estimate {est.tensor_peak_bytes:,} vs measured {measured:,} ({error:+.1%})"
