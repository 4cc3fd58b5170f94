"""The preference objectives in the memory estimate: one layer's activations for a [chosen; rejected] batch
held against what autograd saves on small models (the SFT tests' 2% tolerance), and the reference terms
present exactly where a reference copy or a reference forward exists."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

sys.path.insert(0, str(Path(__file__).parent))
from ftc.compiler.memory.estimate import estimate  # noqa: E402
from ftc.compiler.memory.setup import MemorySetup  # noqa: E402
from ftc.compiler.models.arch import from_config  # noqa: E402
from tiny_configs import SHAPES, tiny_config, transformers_config  # noqa: E402


def _pairs_batch(seq: int, pairs: int):
    """TRL's own collator over equal-length pairs: 2 × pairs rows, chosen first."""
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    g = torch.Generator().manual_seed(0)
    rows = [{"prompt_ids": torch.randint(3, 1000, (seq // 2,), generator=g).tolist(),
             "chosen_ids": torch.randint(3, 1000, (seq - seq // 2,), generator=g).tolist(),
             "rejected_ids": torch.randint(3, 1000, (seq - seq // 2,), generator=g).tolist()} for _ in range(pairs)]
    return DataCollatorForPreference(pad_token_id=0)(rows)


def _saved(config: dict, batch, lora: dict | None) -> int:
    model = transformers.AutoModelForCausalLM.from_config(transformers_config(config), dtype=torch.bfloat16,
                                                          attn_implementation="sdpa")
    model.config.use_cache = False
    if lora is not None:
        import peft

        model = peft.get_peft_model(model, peft.LoraConfig(**lora))
    model.train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            seen.setdefault(ptr, t.untyped_storage().nbytes())
        return t

    ids = batch["input_ids"]
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=lora is not None):
            model(input_ids=ids, attention_mask=batch["attention_mask"], use_cache=False)
    return sum(seen.values())


def _layer(model_type: str, objective: str, seq: int, pairs: int, method: str) -> int:
    """The estimate's activations of one layer: a 2-layer model's minus a 1-layer model's."""
    out = []
    for layers in (1, 2):
        arch = from_config(tiny_config(model_type, SHAPES[0], layers))
        setup = MemorySetup(arch, method=method, lora_rank=8, lora_targets=("q_proj", "v_proj"), seq_len=seq,
                            micro_batch=pairs, padded_batches=False, device="cpu", objective=objective,
                            reference="auto" if objective in ("dpo", "kto") else "none")
        out.append(estimate(setup).component("activations"))
    return out[1] - out[0]


@pytest.mark.parametrize("model_type", ["llama", "qwen3"])
@pytest.mark.parametrize("method", ["full", "lora"])
def test_pair_batch_activations_match_autograd(model_type, method):
    seq, pairs = 64, 2
    batch = _pairs_batch(seq, pairs)
    assert tuple(batch["input_ids"].shape) == (2 * pairs, seq)
    lora = dict(r=8, target_modules=["q_proj", "v_proj"]) if method == "lora" else None
    real = _saved(tiny_config(model_type, SHAPES[0], 2), batch, lora) - \
        _saved(tiny_config(model_type, SHAPES[0], 1), batch, lora)
    for objective in ("dpo", "orpo", "simpo", "kto"):
        assert _layer(model_type, objective, seq, pairs, method) == pytest.approx(real, rel=0.02), objective
    # twice the supervised activations of the same micro-batch: chosen and rejected are separate sequences
    assert _layer(model_type, "dpo", seq, pairs, method) == 2 * _layer(model_type, "sft", seq, pairs, method)


def _setup(**kw) -> MemorySetup:
    arch = from_config(tiny_config("llama", SHAPES[1], 4))
    base = dict(method="full", seq_len=512, micro_batch=2, objective="dpo", reference="auto")
    return MemorySetup(arch, **{**base, **kw})


def test_reference_copy_only_where_it_exists():
    full = estimate(_setup())
    assert full.component("reference_weights") == full.component("weights") > 0
    assert full.component("reference_forward") > 0
    for kw in (dict(method="lora"), dict(reference="precomputed"), dict(objective="orpo", reference="none"),
               dict(objective="simpo", reference="none"), dict(objective="sft", reference="none")):
        assert estimate(_setup(**kw)).component("reference_weights") == 0, kw
    assert estimate(_setup(method="lora", reference="model")).component("reference_weights") > 0
    assert estimate(_setup(reference="precomputed")).component("reference_forward") == 0
    assert estimate(_setup(objective="orpo", reference="none")).component("reference_forward") == 0
    zero3 = estimate(_setup(strategy="deepspeed", zero=3, dp_world=4, gpus_per_node=4))
    assert zero3.component("reference_weights") == pytest.approx(full.component("reference_weights") / 4, rel=0.01)
