"""The chunked linear cross-entropy's shape, shared by the estimator (which counts one chunk of fp32 logits)
and the runtime (which computes the loss chunk by chunk): one definition, so the two cannot disagree."""

from __future__ import annotations

# logits elements one chunk holds (128 MiB in fp32)
LOSS_CHUNK_ELEMENTS = 1 << 25
# the families whose output head is a plain Linear on the last hidden states, with no logit scaling,
# soft-capping or auxiliary loss, so that the chunked loss replaces transformers' loss exactly
CHUNKED_LOSS_FAMILIES = frozenset({"llama", "mistral", "qwen2", "qwen3", "phi3", "olmo2", "smollm3", "gemma"})
