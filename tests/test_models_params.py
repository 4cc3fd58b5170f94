"""Parameter counts against published figures, and model resolution without the network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftc.compiler.models.arch import ArchitectureError, from_config
from ftc.compiler.models.params import count, lora_params, resolve_targets
from ftc.compiler.models.resolve import ModelNotFound, ResolvedModel, catalog, resolve_model

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def arch(name):
    result = resolve_model(name)
    assert isinstance(result, ResolvedModel), result
    return result.architecture


# Published checks from shared/memory_formulas.md §1 and §6 (rounded figures there, exact where given).
@pytest.mark.parametrize("name, billions", [
    ("meta-llama/Llama-2-7b-hf", 6.738), ("meta-llama/Meta-Llama-3-8B", 8.030),
    ("meta-llama/Llama-3.2-3B", 3.213), ("meta-llama/Llama-2-70b-hf", 68.98),
    ("meta-llama/Llama-3.1-405B", 405.85),
])
def test_total_params_match_published(name, billions):
    assert round(arch(name).total_params / 1e9, 3 if billions < 100 else 2) == pytest.approx(billions, abs=0.006)


def test_llama3_linear_share():
    assert round(arch("meta-llama/Meta-Llama-3-8B").linear_params / 1e9, 3) == 6.979


def test_lora_published_counts():
    assert lora_params(arch("meta-llama/Llama-2-7b-hf"), 8, ["q_proj", "v_proj"]) == 4_194_304
    assert lora_params(arch("meta-llama/Meta-Llama-3-8B"), 16, "all_linear") == 41_943_040


def test_lora_formula_qv_and_all_linear():
    a = arch("meta-llama/Llama-2-13b-hf")
    h, kv, inter, layers = a.hidden, a.kv_dim, a.intermediate, a.layers
    assert lora_params(a, 4, ["q_proj", "v_proj"]) == layers * 4 * (3 * h + kv)
    assert lora_params(a, 4, "all_linear") == layers * 4 * (9 * h + 2 * kv + 3 * inter)


def test_counts_by_method():
    a = arch("meta-llama/Llama-2-7b-hf")
    full = count(a, "full")
    assert full.trainable == full.total == a.total_params
    lora = count(a, "lora", 8, ["q_proj", "v_proj"], modules_to_save=["lm_head"])
    assert lora.trainable == 4_194_304 + 32000 * 4096
    assert lora.total == a.total_params + lora.trainable
    q = count(a, "qlora", 8, "all_linear")
    assert q.quantized + q.unquantized == a.total_params
    assert q.unquantized == 2 * 32000 * 4096 + (2 * 32 + 1) * 4096  # embed, head, norms stay 16-bit


def test_unknown_targets_reported():
    matched, unknown = resolve_targets(arch("gpt2"), ["c_attn", "q_proj"])
    assert matched == ("c_attn",) and unknown == ("q_proj",)


def test_catalog_ids_case_insensitive():
    assert resolve_model("META-LLAMA/llama-2-7B-HF").architecture == arch("meta-llama/Llama-2-7b-hf")
    assert isinstance(resolve_model("mistralai/Mistral-7B-v0.1"), ResolvedModel)
    assert len({id(c) for c in catalog().values()}) >= 38


def test_unknown_model_is_a_value_with_suggestion():
    result = resolve_model("meta-llama/Llama-2-7b-hff")
    assert isinstance(result, ModelNotFound)
    assert result.suggestion == "meta-llama/Llama-2-7b-hf"


def test_local_folder_config(tmp_path):
    folder = tmp_path / "tiny"
    folder.mkdir()
    config = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100}
    (folder / "config.json").write_text(json.dumps(config))
    result = resolve_model("tiny", base_dir=tmp_path)
    assert result.source == "local"
    # embed 6400 + head 6400 + norm 64 + 2 layers x (q 4096 + k,v 2x2048 + o 4096 + mlp 3x8192 + norms 128)
    assert result.architecture.total_params == 6400 + 6400 + 64 + 2 * (4096 * 2 + 2048 * 2 + 3 * 8192 + 128)
    missing = resolve_model("./nope", base_dir=tmp_path)
    assert isinstance(missing, ModelNotFound)
    (tmp_path / "empty").mkdir()
    assert "config.json" in resolve_model("empty", base_dir=tmp_path).reason


def test_hub_cache_wins_over_catalog(tmp_path, monkeypatch):
    repo = tmp_path / "hub" / "models--meta-llama--Llama-2-7b-hf"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    snap = repo / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    config = dict(catalog()["meta-llama/llama-2-7b-hf"], num_hidden_layers=2)
    (snap / "config.json").write_text(json.dumps(config))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    result = resolve_model("meta-llama/Llama-2-7b-hf")
    assert result.source == "hf-cache" and result.architecture.layers == 2


def test_unsupported_model_type():
    with pytest.raises(ArchitectureError):
        from_config({"model_type": "t5"})


def test_gemma3_local_and_global_layers():
    one_b = arch("google/gemma-3-1b-it")  # every sixth layer global: 6, 12, 18, 24 of 26
    assert (one_b.sliding_window, one_b.sliding_layers, one_b.layers) == (512, 22, 26)
    config = dict(catalog()["google/gemma-3-270m"], layer_types=["full_attention"] * 18)
    assert from_config(config).sliding_layers == 0 and from_config(config).sliding_window is None
    with pytest.raises(ArchitectureError, match="bidirectional"):
        from_config(dict(config, use_bidirectional_attention=True))


def test_sliding_windows_as_the_config_classes_decide():
    """Mistral-7B-v0.1 attends through a 4096-token window on every layer (MistralConfig's default when the
    key is absent); v0.2 and Mixtral have none; Qwen2 only with use_sliding_window, from max_window_layers on."""
    def window(name, **changes):
        a = from_config(dict(catalog()[name.lower()], **changes))
        return a.sliding_window, a.sliding_layers

    assert window("mistralai/Mistral-7B-v0.1") == (4096, 32)
    assert window("mistralai/Mistral-7B-Instruct-v0.2") == (None, 0)
    assert window("mistralai/Mixtral-8x7B-v0.1") == (None, 0)
    config = {k: v for k, v in catalog()["mistralai/mistral-7b-instruct-v0.2"].items() if k != "sliding_window"}
    assert from_config(config).sliding_window == 4096
    assert window("Qwen/Qwen2.5-7B") == (None, 0)
    assert window("Qwen/Qwen2.5-7B", use_sliding_window=True, sliding_window=4096, max_window_layers=20) == (4096, 8)
    assert window("Qwen/Qwen3-30B-A3B", use_sliding_window=True, sliding_window=4096) == (4096, 48)


def test_gemma3_multimodal_counts_its_vision_tower():
    """The 4B-27B checkpoints load a SigLIP encoder (27 layers of q, k, v, out_proj, fc1, fc2) and a
    projector with the text stack; LoRA's default targets adapt the tower's q/k/v too, as peft matches names."""
    four_b = arch("google/gemma-3-4b-it")
    assert four_b.tower_params == 419_816_304 and four_b.total_params == 4_300_079_472
    assert {m.name for m in four_b.tower_linears} <= set(four_b.linear_names)
    lora = count(four_b, "lora", rank=8, targets=["q_proj", "v_proj"]).lora
    assert lora == 8 * (34 * (2560 + 2048 + 2560 + 1024) + 27 * 2 * (1152 + 1152))
    vision = dict(catalog()["google/gemma-3-4b-it"]["vision_config"], vision_use_head=True)
    with pytest.raises(ArchitectureError, match="vision_use_head"):
        from_config(dict(catalog()["google/gemma-3-4b-it"], vision_config=vision))


@pytest.mark.parametrize("layout", [{"mlp_only_layers": [0, 5]}, {"decoder_sparse_step": 2}])
def test_qwen3_moe_with_dense_layers_is_not_guessed(layout):
    config = dict(catalog()["qwen/qwen3-30b-a3b"], **layout)
    with pytest.raises(ArchitectureError, match="mlp_only_layers"):
        from_config(config)
    assert from_config(dict(config, mlp_only_layers=[], decoder_sparse_step=1)).experts == 128


ISSUE_MODELS = [
    "meta-llama/Llama-2-7b-hf", "meta-llama/Llama-2-13b-hf", "meta-llama/Llama-2-70b-hf",
    "meta-llama/Meta-Llama-3-8B", "meta-llama/Meta-Llama-3-70B", "meta-llama/Llama-3.1-8B",
    "meta-llama/Llama-3.1-70B", "meta-llama/Llama-3.1-405B", "meta-llama/Llama-3.2-1B", "meta-llama/Llama-3.2-3B",
    "mistralai/Mistral-7B-v0.1", "mistralai/Mixtral-8x7B-v0.1",
    "Qwen/Qwen2.5-0.5B", "Qwen/Qwen2.5-1.5B", "Qwen/Qwen2.5-3B", "Qwen/Qwen2.5-7B", "Qwen/Qwen2.5-14B",
    "Qwen/Qwen2.5-32B", "Qwen/Qwen2.5-72B", "google/gemma-2-2b", "google/gemma-2-9b", "google/gemma-2-27b",
    "microsoft/phi-1_5", "microsoft/phi-2", "microsoft/Phi-3-mini-4k-instruct", "gpt2", "gpt2-medium",
    "gpt2-large", "gpt2-xl", "TinyLlama/TinyLlama-1.1B-Chat-v1.0", "stabilityai/stablelm-3b-4e1t",
    "tiiuae/falcon-7b", "bigscience/bloom-7b1", "bigscience/bloomz-7b1", "facebook/opt-1.3b", "facebook/opt-2.7b",
    "facebook/opt-6.7b", "facebook/opt-13b", "facebook/opt-30b",
    # and later releases people fine-tune
    "Qwen/Qwen3-0.6B", "Qwen/Qwen3-1.7B", "Qwen/Qwen3-4B", "Qwen/Qwen3-8B", "Qwen/Qwen3-14B", "Qwen/Qwen3-32B",
    "Qwen/Qwen3-30B-A3B", "Qwen/Qwen3-235B-A22B", "meta-llama/Llama-3.3-70B-Instruct", "microsoft/phi-4",
    "mistralai/Mistral-Nemo-Base-2407", "mistralai/Mistral-Small-24B-Base-2501", "HuggingFaceTB/SmolLM2-135M",
    "HuggingFaceTB/SmolLM2-360M", "HuggingFaceTB/SmolLM2-1.7B", "google/gemma-3-270m", "google/gemma-3-1b-it",
    "google/gemma-3-4b-it", "google/gemma-3-12b-it", "google/gemma-3-27b-it", "microsoft/Phi-4-mini-instruct",
    "deepseek-ai/DeepSeek-R1-Distill-Llama-8B", "deepseek-ai/DeepSeek-R1-Distill-Llama-70B",
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B",
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", "HuggingFaceTB/SmolLM3-3B",
    "allenai/OLMo-2-0425-1B", "allenai/OLMo-2-1124-7B", "allenai/OLMo-2-1124-13B", "allenai/OLMo-2-0325-32B",
    "openai/gpt-oss-20b", "openai/gpt-oss-120b",
]


@pytest.mark.parametrize("name", ISSUE_MODELS)
def test_catalog_covers_the_models_people_fine_tune(name):
    assert isinstance(resolve_model(name), ResolvedModel)


# Parameter counts as the model cards state them (billions; cards round or truncate: one last-digit unit).
@pytest.mark.parametrize("name, billions, digits", [
    ("Qwen/Qwen2.5-0.5B", 0.49, 2), ("Qwen/Qwen2.5-1.5B", 1.54, 2), ("Qwen/Qwen2.5-3B", 3.09, 2),
    ("Qwen/Qwen2.5-7B", 7.61, 2), ("Qwen/Qwen2.5-14B", 14.7, 1), ("Qwen/Qwen2.5-72B", 72.7, 1),
    ("mistralai/Mixtral-8x7B-v0.1", 46.7, 1), ("gpt2-xl", 1.56, 2), ("tiiuae/falcon-7b", 6.92, 2),
    ("bigscience/bloom-7b1", 7.07, 2),
    ("Qwen/Qwen3-0.6B", 0.6, 1), ("Qwen/Qwen3-1.7B", 1.7, 1), ("Qwen/Qwen3-4B", 4.0, 1), ("Qwen/Qwen3-8B", 8.2, 1),
    ("Qwen/Qwen3-14B", 14.8, 1), ("Qwen/Qwen3-32B", 32.8, 1), ("microsoft/phi-4", 14.7, 1),
    ("mistralai/Mistral-Nemo-Base-2407", 12.2, 1), ("Qwen/Qwen3-30B-A3B", 30.5, 1), ("Qwen/Qwen3-235B-A22B", 235, 0),
    ("mistralai/Mistral-Small-24B-Base-2501", 23.6, 1), ("HuggingFaceTB/SmolLM2-135M", 0.135, 3),
    ("HuggingFaceTB/SmolLM2-360M", 0.362, 3), ("HuggingFaceTB/SmolLM2-1.7B", 1.71, 2),
    ("google/gemma-3-270m", 0.268, 3), ("google/gemma-3-1b-it", 1.000, 3),
    ("google/gemma-3-4b-it", 4.30, 2), ("google/gemma-3-12b-it", 12.19, 2), ("google/gemma-3-27b-it", 27.43, 2),
    ("microsoft/Phi-4-mini-instruct", 3.84, 2), ("deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", 32.8, 1),
    ("HuggingFaceTB/SmolLM3-3B", 3.08, 2), ("allenai/OLMo-2-0425-1B", 1.48, 2), ("allenai/OLMo-2-1124-7B", 7.30, 2),
    ("allenai/OLMo-2-1124-13B", 13.7, 1), ("allenai/OLMo-2-0325-32B", 32.2, 1),
    ("openai/gpt-oss-20b", 20.91, 2), ("openai/gpt-oss-120b", 116.83, 2),
])
def test_model_card_counts(name, billions, digits):
    assert abs(arch(name).total_params / 1e9 - billions) <= 10 ** -digits


# Qwen3's cards also state the parameters outside the embedding (and the untied output layer).
@pytest.mark.parametrize("name, billions", [("Qwen/Qwen3-0.6B", "0.44"), ("Qwen/Qwen3-1.7B", "1.4"),
                                            ("Qwen/Qwen3-4B", "3.6"), ("Qwen/Qwen3-8B", "6.95"),
                                            ("Qwen/Qwen3-14B", "13.2"), ("Qwen/Qwen3-32B", "31.2")])
def test_qwen3_card_non_embedding_counts(name, billions):
    a = arch(name)
    head = a.lm_head.params if a.lm_head is not None else 0
    decimals = len(billions.split(".")[1])
    assert f"{(a.total_params - a.embedding_params - head) / 1e9:.{decimals}f}" == billions


def test_a_compile_resolves_the_model_once(monkeypatch):
    """The budget check, lowering and the auto passes share one resolution of `model`: the decide stage's."""
    import ftc.compiler.models.resolve as typed
    from ftc.compiler.pipeline import compile_recipe

    calls = []

    def counting(*args, **kwargs):
        calls.append(args[0])
        return resolve_model(*args, **kwargs)

    monkeypatch.setattr(typed, "resolve_model", counting)
    compiled = compile_recipe(EXAMPLES / "llama2-7b-lora-a100-40gb.ftspec")
    assert compiled.plan["memory"]["peak_bytes_per_gpu"] > 0
    assert calls == ["meta-llama/Llama-2-7b-hf"]


def test_a_hand_edited_config_is_refused_never_crashes():
    """Catalog configs with values replaced by wrong types and sizes: from_config either builds an
    architecture the estimator can use, or raises ArchitectureError (a diagnostic), nothing else."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from ftc.compiler.memory.estimate import estimate
    from ftc.compiler.memory.setup import MemorySetup

    entries = sorted(catalog().items())
    values = st.sampled_from(["abc", "12", -1, 0, 1, 3, 1.5, None, [], {}, [1, 2], True, 2**40, {"a": 1}])

    @settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(entries), st.lists(st.tuples(st.integers(0, 10**6), values), min_size=1, max_size=3))
    def check(entry, edits):
        config = json.loads(json.dumps(entry[1]))
        target = config.get("text_config", config)
        for index, value in edits:
            keys = sorted(target) + ["model_type"]
            target[keys[index % len(keys)]] = value
        try:
            architecture = from_config(config if "model_type" in config else target)
        except ArchitectureError as exc:
            assert str(exc)
            return
        for method in ("full", "lora", "qlora"):
            result = estimate(MemorySetup(architecture, method=method, micro_batch=2, seq_len=256,
                                          gradient_checkpointing=method != "full"))
            assert result.peak_bytes > 0

    check()


@pytest.mark.parametrize("key, value, expected", [
    ("torch_dtype", "bfloat16", "bf16"), ("torch_dtype", "float16", "fp16"), ("dtype", "float32", "fp32"),
    ("torch_dtype", "int8", None), ("torch_dtype", None, None),
])
def test_checkpoint_dtype_is_read_from_the_config(key, value, expected):
    config = dict(json.loads((EXAMPLES / "tiny" / "model" / "config.json").read_text()))
    config.pop("dtype", None), config.pop("torch_dtype", None)
    assert from_config({**config, key: value}).checkpoint_dtype == expected


def test_catalog_states_checkpoint_dtypes():
    assert arch("meta-llama/Llama-2-7b-hf").checkpoint_dtype == "fp16"
    assert arch("meta-llama/Llama-3.1-8B").checkpoint_dtype == "bf16"
    assert arch("openai-community/gpt2").checkpoint_dtype == "fp32"
    assert arch("openai/gpt-oss-20b").checkpoint_dtype is None  # MXFP4 experts: not one dtype
