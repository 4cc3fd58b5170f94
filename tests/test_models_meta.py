"""Analytic parameter counts equal what transformers and peft instantiate (meta device, no weights)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from ftc.compiler.models.arch import from_config  # noqa: E402
from ftc.compiler.models.params import count  # noqa: E402
from ftc.compiler.models.resolve import catalog_entries  # noqa: E402
from ftc.runtime.train.model import lora_config  # noqa: E402

from plan_cases import section  # noqa: E402
from tiny_configs import transformers_config  # noqa: E402

ENTRIES = list(catalog_entries())
IDS = [e["ids"][0] for e in ENTRIES]


def _meta_model(config: dict):
    with torch.device("meta"):  # (special token ids beyond a catalog vocabulary dropped)
        return transformers.AutoModelForCausalLM.from_config(transformers_config(config))


def _target_sets(arch):
    names = set(arch.linear_names)
    sets = [["q_proj", "v_proj"], ["q_proj", "k_proj", "v_proj", "o_proj"]]
    sets = [s for s in sets if set(s) <= names]
    if not sets:  # fused attention (gpt2, falcon, bloom, phi3): adapt the first attention module
        sets = [[arch.linear_names[0]]]
    if arch.experts:  # the router and the fused experts, named alone (peft adapts them as parameters)
        sets += [[name] for name in ("gate", "gate_up_proj", "down_proj") if name in names]
    return sets + ["all_linear"]


def _two_layers(config: dict) -> dict:
    """Same architecture with 2 layers (and a 2-layer vision encoder): peft wrapping is the slow part and is
    per-layer identical."""
    small = dict(config)
    for key in ("num_hidden_layers", "n_layer"):
        if key in small:
            small[key] = 2
    for key in ("text_config", "vision_config"):
        if key in small:
            small[key] = _two_layers(small[key])
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
        # as the runtime builds it
        config = lora_config(section("method.lora", targets=targets, rank=8, alpha=16, dropout=0.0), model)
        wrapped = peft.get_peft_model(model, config)
        trainable, all_params = wrapped.get_nb_trainable_parameters()
        assert (lora.trainable, lora.total) == (trainable, all_params), targets
        model = wrapped.unload()  # back to the bare base model for the next target set


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_modules_to_save_names_are_modules_of_the_model(entry):
    """E0718 accepts the embedding's and the head's names only: both must name modules transformers builds
    (peft's modules_to_save matches leaf names and skips the rest silently), and what peft then trains in
    full is what the count says."""
    config = _two_layers(entry["config"])
    arch = from_config(config)
    model = _meta_model(config)
    leaves = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    assert {arch.embed_name, "lm_head"} <= leaves
    for saved in ([arch.embed_name], ["lm_head"]):
        targets = _target_sets(arch)[0]
        counts = count(arch, "lora", rank=8, targets=targets, modules_to_save=saved)
        config = lora_config(section("method.lora", targets=targets, rank=8, alpha=16, dropout=0.0,
                                     modules_to_save=saved), model)
        wrapped = peft.get_peft_model(model, config)
        assert counts.trainable == wrapped.get_nb_trainable_parameters()[0], saved
        model = wrapped.unload()


TINY = {  # small configs of the layouts where quantization differs: dense, fused MoE experts, a vision tower
    "llama": dict(model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, vocab_size=256),
    "qwen3_moe": dict(model_type="qwen3_moe", hidden_size=64, moe_intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_experts=4,
                      num_experts_per_tok=2, vocab_size=256),
    "starcoder2": dict(model_type="starcoder2", hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, vocab_size=256),
    "gpt_oss": dict(model_type="gpt_oss", hidden_size=64, intermediate_size=32, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_local_experts=4,
                    num_experts_per_tok=2, vocab_size=256),
    "gemma3": dict(model_type="gemma3", text_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                                         num_attention_heads=2, num_key_value_heads=1, head_dim=32,
                                                         vocab_size=256, sliding_window=16),
                   vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                      image_size=28, patch_size=14, vision_use_head=False),
                   mm_tokens_per_image=4, image_token_index=255, boi_token_index=253, eoi_token_index=254),
}


@pytest.mark.parametrize("layout", list(TINY))
def test_qlora_quantizes_the_linears_the_count_says(layout, tmp_path):
    """bitsandbytes converts exactly the parameters `count(..., "qlora").quantized` names (a vision tower's
    linears included, fused MoE experts not)."""
    bnb = pytest.importorskip("bitsandbytes")
    config = TINY[layout]
    cfg = dict(config)
    model_type = cfg.pop("model_type")
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(model_type, **cfg)).save_pretrained(
        tmp_path)
    quant = transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4")
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, quantization_config=quant,
                                                              dtype=torch.bfloat16)
    converted = sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, bnb.nn.Linear4bit))
    counts = count(from_config(config), "qlora")
    assert counts.quantized == converted > 0
    assert counts.unquantized == counts.total - converted


OUTSIDE_CATALOG = {  # families ftc reads from a local folder or the cache, with no catalog entry to test above
    "granite": dict(model_type="granite", hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, vocab_size=256, tie_word_embeddings=True,
                    embedding_multiplier=12.0, residual_multiplier=0.22, attention_multiplier=0.015625,
                    logits_scaling=8.0, attention_dropout=0.1),
    "starcoder2": dict(model_type="starcoder2", hidden_size=64, intermediate_size=256, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, vocab_size=256, sliding_window=16,
                       residual_dropout=0.1),
    "starcoder2-unbiased-untied": dict(model_type="starcoder2", hidden_size=64, intermediate_size=256,
                                       num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                                       vocab_size=256, use_bias=False, tie_word_embeddings=False),
    "olmo3": dict(model_type="olmo3", hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                  num_attention_heads=4, num_key_value_heads=2, vocab_size=256, sliding_window=16),
    "cohere": dict(model_type="cohere", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2, vocab_size=256),
    "cohere-qk-norm-untied": dict(model_type="cohere", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2, vocab_size=256, use_qk_norm=True,
                                  tie_word_embeddings=False),
    "granite-biased-untied": dict(model_type="granite", hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=4, vocab_size=256,
                                  attention_bias=True, mlp_bias=True, tie_word_embeddings=False),
}


@pytest.mark.parametrize("name", list(OUTSIDE_CATALOG))
def test_counts_outside_the_catalog_match_transformers_and_peft(name):
    config = OUTSIDE_CATALOG[name]
    arch = from_config(config)
    model = _meta_model(config)
    full = count(arch, "full")
    assert full.total == sum(p.numel() for p in model.parameters())
    for targets in _target_sets(arch):
        lora = count(arch, "lora", rank=8, targets=targets)
        wrapped = peft.get_peft_model(model, peft.LoraConfig(
            r=8, lora_alpha=16, target_modules="all-linear" if targets == "all_linear" else list(targets),
            task_type="CAUSAL_LM"))
        assert (lora.trainable, lora.total) == wrapped.get_nb_trainable_parameters(), targets
        model = wrapped.unload()


@pytest.mark.parametrize("config", [
    dict(model_type="olmo3", num_hidden_layers=10), dict(model_type="olmo3", num_hidden_layers=8, sliding_window=64),
    dict(model_type="gemma3_text", num_hidden_layers=26), dict(model_type="gemma3_text", num_hidden_layers=7),
    dict(model_type="gpt_oss", num_hidden_layers=5), dict(model_type="mistral", num_hidden_layers=3),
    dict(model_type="qwen2", num_hidden_layers=6, use_sliding_window=True, max_window_layers=2),
    dict(model_type="starcoder2", num_hidden_layers=3, sliding_window=128),
], ids=lambda c: f"{c['model_type']}-{c['num_hidden_layers']}")
def test_local_layers_are_those_transformers_config_classes_make(config):
    """Which layers attend through a sliding window, from the config alone, as transformers decides it."""
    sizes = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
                 vocab_size=256)
    cfg = dict(config)
    hf = transformers.AutoConfig.for_model(cfg.pop("model_type"), **sizes, **cfg)
    window = getattr(hf, "sliding_window", None)
    types = getattr(hf, "layer_types", None) or ["sliding_attention"] * hf.num_hidden_layers
    expected = sum(t == "sliding_attention" for t in types) if window else 0
    arch = from_config(dict(config, **sizes))
    assert arch.sliding_layers == expected and (arch.sliding_window == window if expected else True), \
        (arch.sliding_layers, expected, types)
