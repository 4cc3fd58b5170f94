"""The estimator's cross-entropy term against the real loss path, measured on CPU.

torch's MemTracker (a dispatch mode that counts live tensor storages the way the CUDA caching
allocator's `allocated` counter does) runs one training forward + backward of transformers' Llama with
labels. The vocabulary is varied with everything else fixed, so the slope of the peak over b·s·V is
the loss path's bytes per logit element, once the vocabulary-sized weights and their gradients are
taken out.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from ftc.compiler.memory.activations import loss_bytes_per_logit  # noqa: E402

HIDDEN, TOKENS = 64, 2048


# the heads that scale their logits before the loss (Granite divides, Cohere multiplies) keep the same bytes
SCALED_LOGITS = {"llama": {}, "granite": {"logits_scaling": 8.0}, "cohere": {"logit_scale": 0.0625}}


def _training_peak(vocab: int, dtype, family: str = "llama") -> int:
    from torch.distributed._tools.mem_tracker import MemTracker

    torch.manual_seed(0)
    config = transformers.AutoConfig.for_model(
        family, hidden_size=HIDDEN, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=4, vocab_size=vocab, tie_word_embeddings=False, bos_token_id=None, eos_token_id=None,
        pad_token_id=None, **SCALED_LOGITS[family])
    model = transformers.AutoModelForCausalLM.from_config(config).to(dtype)
    ids = torch.randint(0, vocab, (1, TOKENS))
    tracker = MemTracker()
    tracker.track_external(model)
    with tracker:
        loss = model(input_ids=ids, labels=ids).loss  # the output (and its logits) dropped, as the Trainer does
        loss.backward()
    return tracker.get_tracker_snapshot("peak")[torch.device("cpu")]["Total"]


@pytest.mark.parametrize("family", list(SCALED_LOGITS))
@pytest.mark.parametrize("dtype, compute_bytes", [("bfloat16", 2), ("float32", 4)])
def test_loss_bytes_per_logit_match_transformers(dtype, compute_bytes, family):
    dt = getattr(torch, dtype)
    small, large = 8000, 16000
    grown = _training_peak(large, dt, family) - _training_peak(small, dt, family)
    weights = (large - small) * HIDDEN * compute_bytes * 4  # embedding + head, weights and gradients
    measured = (grown - weights) / (TOKENS * (large - small))
    assert measured == pytest.approx(loss_bytes_per_logit(compute_bytes), abs=0.5), measured
