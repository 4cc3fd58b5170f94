"""What a preference objective adds to a rank's memory (docs/memory.md, "Preference objectives").

- Two sequences per example: DPO, ORPO and SimPO run the chosen and the rejected answer (after the prompt)
  as one batch of 2 × micro_batch rows; KTO runs each completion and its KL completion. Activations, logits
  and the eval pass are those of the doubled batch.
- The reference forward (DPO, KTO, unless precomputed): no saved activations, but its log-probabilities over
  the vocabulary for both sequences, alive while the policy's activations are.
- Reference weights: none under LoRA with `reference = auto` (the adapter-disabled base), with precomputed
  log-probs, or for the reference-free objectives; otherwise a frozen copy of the base in the weights' dtype,
  sharded like the weights under ZeRO-3 and FSDP (TRL prepares it with the policy's engine settings).
"""

from __future__ import annotations

from ftc.compiler.memory.layer_families import compute_bytes

SEQUENCES = {"sft": 1, "dpo": 2, "orpo": 2, "simpo": 2, "kto": 2}


def doubled(s):
    """The setup whose micro-batch is the rows the model really runs per example."""
    k = SEQUENCES.get(s.objective, 1)
    return s if k == 1 else s.with_(micro_batch=s.micro_batch * k, eval_batch=s.eval_batch * k)


def holds_reference(s) -> bool:
    """Whether a frozen reference copy of the weights is on the GPU."""
    if s.objective not in ("dpo", "kto") or s.reference in ("precomputed", "none"):
        return False
    return s.method == "full" or s.reference == "model"


def reference_forward_bytes(s) -> int:
    """The no-grad reference forward's output: log-probabilities over the vocabulary, both sequences."""
    if s.objective not in ("dpo", "kto") or s.reference == "precomputed":
        return 0
    a = s.arch
    tokens = s.micro_batch * SEQUENCES[s.objective] * s.seq_len
    return tokens * a.vocab * (compute_bytes(s) + 4)  # logits, then their fp32 log-softmax
