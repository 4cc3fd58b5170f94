"""What the activation formulas know about each family's layers, shared by the layer formulas
(activations.py) and LoRA's changes to them (lora_activations.py): the compute dtype and which norms
a family has, and in which dtype they keep what they keep.
"""

from __future__ import annotations

from ftc.compiler.memory.setup import MemorySetup

LLAMA_LIKE = ("llama", "smollm3", "granite", "mistral", "mixtral", "qwen2", "qwen3", "qwen3_moe", "olmo2", "olmo3",
              "gemma", "gemma2", "gemma3_text", "gemma3", "gpt_oss", "phi3", "stablelm", "starcoder2", "cohere")
LAYER_NORMS = ("stablelm", "starcoder2")  # Llama-style layers with LayerNorms, not RMSNorms
# weight × normalized in fp32, then cast
FP32_SCALED_NORMS = ("olmo2", "olmo3", "gemma", "gemma2", "gemma3_text", "gemma3", "gpt_oss")
# torch's nn.LayerNorm (CUDA autocast runs it in fp32)
TORCH_LAYER_NORMS = ("gpt2", "opt", "bloom", "phi", "falcon", "gpt_neox") + LAYER_NORMS
# LayerNorms per layer read off the norm parameters (weight and bias each): one in Phi's and Falcon-7B's
# parallel blocks, two in Falcon's newer layout and its sequential one
NORMS_FROM_PARAMS = ("phi", "falcon")


def compute_bytes(s: MemorySetup) -> int:
    return 4 if (s.mixed_precision == "no" and s.dtype == "fp32") else 2


def normalized_bytes(a, c: int) -> int:
    """Bytes per element of the normalized input a norm keeps for its weight's gradient: Gemma's, OLMo's,
    gpt-oss's and Cohere's scale in fp32, the others after casting back to the compute dtype."""
    return 4 if a.model_type in FP32_SCALED_NORMS or a.model_type == "cohere" else c


def expert_bytes(s: MemorySetup, c: int) -> int:
    """gpt-oss's expert tensors: in the compute dtype, but fp32 once k-bit preparation has cast the expert
    biases (bare parameters, not 4-bit linears) to fp32, since every expert matmul adds its bias."""
    return 4 if s.qlora_fp32_residual else c


def layer_norm_count(a) -> int:
    """Norms per layer over the hidden size (LayerNorms counted off the parameters in Phi and Falcon)."""
    return max(1, a.layer_other_params // (2 * a.hidden)) if a.model_type in NORMS_FROM_PARAMS else a.hidden_norms
