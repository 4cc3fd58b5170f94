"""Analytic parameter counts equal what transformers and peft instantiate (meta device, no weights)."""

from __future__ import annotations

import json
from importlib import resources

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from ftc.compiler.models.arch import from_config  # noqa: E402
from ftc.compiler.models.params import count  # noqa: E402

ENTRIES = json.loads(resources.files("ftc.compiler.models").joinpath("catalog.json").read_text())["models"]
IDS = [e["ids"][0] for e in ENTRIES]


def _meta_model(config: dict):
    cfg = dict(config)
    model_type = cfg.pop("model_type")
    hf_config = transformers.AutoConfig.for_model(model_type, **cfg)
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):  # defaults may exceed a catalog vocab
        value = getattr(hf_config, key, None)
        if isinstance(value, int) and value >= hf_config.vocab_size:
            setattr(hf_config, key, None)
    with torch.device("meta"):
        return transformers.AutoModelForCausalLM.from_config(hf_config)


def _target_sets(arch):
    names = set(arch.linear_names)
    sets = [["q_proj", "v_proj"], ["q_proj", "k_proj", "v_proj", "o_proj"]]
    sets = [s for s in sets if set(s) <= names]
    if not sets:  # fused attention (gpt2, falcon, bloom, phi3): adapt the first attention module
        sets = [[arch.linear_names[0]]]
    return sets + ["all_linear"]


def _two_layers(config: dict) -> dict:
    """Same architecture with 2 layers: peft wrapping is the slow part and is per-layer identical."""
    small = dict(config)
    for key in ("num_hidden_layers", "n_layer"):
        if key in small:
            small[key] = 2
    return small


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_full_counts_match_transformers(entry):
    arch = from_config(entry["config"])
    model = _meta_model(entry["config"])
    full = count(arch, "full")
    assert full.total == sum(p.numel() for p in model.parameters())
    assert full.trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_lora_counts_match_peft(entry):
    config = _two_layers(entry["config"])
    arch = from_config(config)
    model = _meta_model(config)
    for targets in _target_sets(arch):
        lora = count(arch, "lora", rank=8, targets=targets)
        config = peft.LoraConfig(r=8, lora_alpha=16, target_modules="all-linear" if targets == "all_linear"
                                 else list(targets), task_type="CAUSAL_LM")
        wrapped = peft.get_peft_model(model, config)
        trainable, all_params = wrapped.get_nb_trainable_parameters()
        assert (lora.trainable, lora.total) == (trainable, all_params), targets
        model = wrapped.unload()  # back to the bare base model for the next target set
