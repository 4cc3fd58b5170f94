"""Packing: per-example losses of a packed batch equal each example run alone (sdpa and eager, fp32)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from ftc.runtime.data import prepare  # noqa: E402
from ftc.runtime.data.pack import assign_bins  # noqa: E402
from ftc.runtime.data.toy import build_tokenizer  # noqa: E402

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho".split()


def _conversations(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        def words(k):
            return " ".join(rng.choice(WORDS, size=k))
        msgs = [{"role": "user", "content": words(int(rng.integers(2, 12)))},
                {"role": "assistant", "content": words(int(rng.integers(2, 25)))}]
        if rng.random() < 0.4:
            msgs += [{"role": "user", "content": words(3)}, {"role": "assistant", "content": words(4)}]
        out.append({"messages": msgs})
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("pack")
    rows = _conversations(24)
    (root / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tok = build_tokenizer([" ".join(WORDS)] * 50, root / "tok", vocab_size=300)
    from plan_cases import data_section

    spec = data_section(train=["d.jsonl"], format="chat", max_length=96, dedup="none", train_on="completions",
                        seed=3)
    packed = prepare({**spec, "packing": True}, tok, base_dir=root, cache_dir=root / "cache")
    plain = prepare({**spec, "packing": False}, tok, base_dir=root, cache_dir=root / "cache")
    return tok, packed, plain


def _model(tok, impl: str):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         attn_implementation=impl)
    assert config.use_cache  # the default; packing must hold anyway
    return LlamaForCausalLM(config).float().eval()


def _token_losses(model, batch):
    """Per-position loss (positions whose next label is trained), shifted as the model does."""
    args = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        logits = model(**args).logits.float()
    labels = batch["labels"][:, 1:]
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                             ignore_index=-100, reduction="none").view(labels.shape)
    return loss, labels != -100


@pytest.mark.parametrize("impl", ["sdpa", "eager", "ftc_varlen"])
def test_packed_batch_has_no_cross_contamination(setup, impl):
    from ftc.runtime.train import varlen

    varlen.register()
    tok, packed, plain = setup
    model = _model(tok, impl)
    alone = {}
    for row in plain.train:  # each example run alone, keyed by its token ids
        batch = plain.collator([row])
        loss, mask = _token_losses(model, batch)
        alone[tuple(row["input_ids"])] = (loss[mask].mean().item(), int(mask.sum()))
    rows = [packed.train[i] for i in range(len(packed.train))]
    assert any(np.sum(np.asarray(r["position_ids"]) == 0) > 1 for r in rows)  # really packed
    batch = packed.collator(rows)
    assert "attention_mask" not in batch
    loss, mask = _token_losses(model, batch)
    seen = 0
    for b, row in enumerate(rows):
        pos = np.asarray(row["position_ids"])
        starts = list(np.nonzero(pos == 0)[0]) + [len(pos)]
        for s, e in zip(starts[:-1], starts[1:]):
            ids = tuple(row["input_ids"][s:e])
            expected, count = alone[ids]
            m = mask[b, s:e - 1]  # the loss at position t predicts label t + 1
            assert int(m.sum()) == count
            assert abs(loss[b, s:e - 1][m].mean().item() - expected) < 1e-5
            seen += 1
    assert seen == len(plain.train) >= 20


def test_padded_batches_pad_to_the_longest_row_only(setup):
    _, packed, plain = setup
    rows = [plain.train[i] for i in range(5)]
    batch = plain.collator(rows)
    longest = max(len(r["input_ids"]) for r in rows)
    assert batch["input_ids"].shape == (5, longest) < (5, 96)
    assert batch["attention_mask"].sum().item() == sum(len(r["input_ids"]) for r in rows)
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()
    rows = [packed.train[i] for i in range(2)]
    batch = packed.collator(rows)
    assert batch["input_ids"].shape[1] == max(len(r["input_ids"]) for r in rows)


def test_packing_keeps_every_token_and_reports_efficiency(setup):
    _, packed, plain = setup
    assert packed.report.train.tokens == plain.report.train.tokens
    total = sum(len(r["input_ids"]) for r in packed.train)
    assert total == plain.report.train.tokens
    assert all(len(r["input_ids"]) <= 96 for r in packed.train)
    eff = packed.report.packing_efficiency
    assert eff == pytest.approx(total / (len(packed.train) * 96))


def test_best_fit_bins_never_overflow():
    rng = np.random.default_rng(1)
    lengths = np.minimum(rng.lognormal(4.5, 1.0, size=5000).astype(np.int64) + 1, 512)
    bins = assign_bins(lengths, 512)
    fill = np.bincount(bins, weights=lengths)
    assert fill.max() <= 512
    assert lengths.sum() / (len(fill) * 512) > 0.95
