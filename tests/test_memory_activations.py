"""The per-layer activation formula against what autograd really saves in transformers' modeling code.

A saved-tensors hook records every tensor autograd keeps for backward (parameters excluded, storages
counted once); the difference between a 2-layer and a 1-layer model is one layer. CPU kernels save what
the GPU flash/memory-efficient kernels save (q, k, v, output, log-sum-exp) when no mask is materialized.
"""

from __future__ import annotations

import contextlib
import sys

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from ftc.compiler.memory.activations import layer_bytes_per_token, layer_fixed_bytes  # noqa: E402
from ftc.compiler.memory.setup import MemorySetup  # noqa: E402
from ftc.compiler.models.arch import from_config  # noqa: E402
from ftc.compiler.models.params import resolve_targets  # noqa: E402

from cuda_autocast import cuda_fp32_policy  # noqa: E402
from tiny_configs import SHAPES, transformers_config  # noqa: E402
from tiny_configs import tiny_config as _config  # noqa: E402  (tests swap it per case)


def _saved_bytes(config: dict, seq: int, dtype, lora: dict | None = None, qlora_dir=None, padded: bool = False,
                 autocast: bool = True, attention: str | None = None, gpu_autocast: bool = False,
                 engine_cast: bool = False) -> int:
    """Bytes autograd saves in one training forward. Autocast runs with adapters (the Trainer's, on the
    CPU's op lists) or, with `gpu_autocast`, for any model under CUDA's fp32 policy (tests/cuda_autocast.py).
    `engine_cast`: the whole model, adapters included, cast to `dtype` as DeepSpeed's engine does."""
    hf = transformers_config(config)
    hf.use_cache = False  # as the runtime trains (a cache would copy K and V in some families)
    attention = attention or from_config(config).default_attention
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(hf, dtype=dtype, attn_implementation=attention)
    if qlora_dir is not None:  # as the runtime: bitsandbytes NF4 + prepare_model_for_kbit_training
        import peft

        model.save_pretrained(qlora_dir)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            qlora_dir, dtype=dtype, device_map="cpu", attn_implementation=attention,
            quantization_config=transformers.BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=torch.bfloat16, bnb_4bit_quant_storage=torch.uint8))
        model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if lora is not None:  # as the runtime: peft adapters (fp32), Trainer bf16 autocast
        import peft

        model = peft.get_peft_model(model, peft.LoraConfig(**lora))
    if engine_cast:
        model.to(dtype)
    model.train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            seen.setdefault(ptr, t.untyped_storage().nbytes())
        return t

    ids = torch.randint(0, 1000, (2, seq))
    extra = {}
    if padded:  # the second row three tokens shorter: a padding mask, as in a dynamically padded batch
        extra["attention_mask"] = torch.ones(2, seq, dtype=torch.long)
        extra["attention_mask"][1, -3:] = 0
    policy = cuda_fp32_policy() if gpu_autocast else contextlib.nullcontext()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), policy:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=lora is not None and autocast or gpu_autocast):
            model(input_ids=ids, labels=ids, **extra)
    return sum(seen.values())


def measured_per_token(model_type: str, shape: dict, seq: int = 64, dtype=None, qlora_dir=None, **kwargs) -> float:
    """One layer's saved bytes per token: a 2-layer model minus a 1-layer one (kwargs: `_saved_bytes`'s)."""
    dtype = dtype or torch.bfloat16
    dirs = (qlora_dir / "one", qlora_dir / "two") if qlora_dir is not None else (None, None)
    one = _saved_bytes(_config(model_type, shape, 1), seq, dtype, qlora_dir=dirs[0], **kwargs)
    two = _saved_bytes(_config(model_type, shape, 2), seq, dtype, qlora_dir=dirs[1], **kwargs)
    return (two - one) / (2 * seq)


def predicted(model_type: str, shape: dict, seq: int = 64, dtype: str = "bf16", device: str = "cpu") -> float:
    """One layer's bytes per token as the estimate has them, with the per-layer fixed bytes spread over the
    2 × seq tokens `measured_per_token` divides by."""
    arch = from_config(_config(model_type, shape, 2))
    setup = MemorySetup(arch, method="full", dtype=dtype, mixed_precision="no" if dtype == "fp32" else "bf16",
                        seq_len=seq, attention="eager" if model_type in ("gemma2", "bloom") else "sdpa",
                        padded_batches=False, device=device)
    return layer_bytes_per_token(setup) + layer_fixed_bytes(setup) / (2 * seq)


EXACT = ("llama", "smollm3", "granite", "mistral", "qwen2", "qwen3", "phi3", "mixtral", "qwen3_moe", "olmo2", "olmo3",
         "gpt_oss", "gemma", "gemma2", "gemma3_text", "opt", "bloom", "gpt2", "phi", "stablelm", "starcoder2", "cohere",
         "gpt_neox")


CASES = [(t, SHAPES[0]) for t in EXACT] + [(t, SHAPES[1]) for t in ("llama", "qwen3", "gemma2", "gemma3_text", "gpt_neox",
                                                                     "mixtral", "phi3", "gpt2")]


@pytest.mark.parametrize("model_type, shape", CASES, ids=[f"{t}-h{s['hidden_size']}" for t, s in CASES])
def test_layer_activations_match_autograd(model_type, shape):
    assert predicted(model_type, shape) == pytest.approx(measured_per_token(model_type, shape), rel=0.02)


@pytest.mark.parametrize("model_type, layout", [("falcon", {}), ("falcon", dict(
    new_decoder_architecture=True, num_kv_heads=2, num_ln_in_parallel_attn=2))], ids=["falcon-7b", "falcon-new"])
def test_layer_activations_bound_autograd(model_type, layout, monkeypatch):
    """Families modeled as a close upper bound (within 20%), on the CPU and under CUDA autocast's policy:
    Falcon-7B's parallel block with one LayerNorm, and the newer layout with two and grouped K/V."""
    base = _config
    monkeypatch.setattr(sys.modules[__name__], "_config", lambda *args: dict(base(*args), **layout))
    for shape in SHAPES:
        got, real = predicted(model_type, shape), measured_per_token(model_type, shape)
        assert real <= got <= 1.2 * real, (shape, got, real)
        got, real = predicted(model_type, shape, device="cuda"), measured_per_token(model_type, shape,
                                                                                   gpu_autocast=True)
        assert real <= got <= 1.2 * real, (shape, got, real)


GPU_CASES = [(t, SHAPES[0]) for t in EXACT] + [(t, SHAPES[1]) for t in ("gpt2", "opt", "phi", "stablelm",
                                                                         "starcoder2", "bloom")]


@pytest.mark.parametrize("model_type, shape", GPU_CASES, ids=[f"{t}-h{s['hidden_size']}" for t, s in GPU_CASES])
def test_layer_activations_under_cuda_autocast(model_type, shape):
    """The Trainer's bf16 autocast on a GPU, whose fp32 LayerNorm, `pow` and softmax keep more than the same
    model saves on the CPU (+33% to +64% per layer in the LayerNorm families; nothing in the RMSNorm ones)."""
    real = measured_per_token(model_type, shape, gpu_autocast=True)
    assert predicted(model_type, shape, device="cuda") == pytest.approx(real, rel=0.02)
    if model_type in ("gpt2", "opt", "phi", "stablelm", "starcoder2", "bloom"):
        assert real > 1.05 * measured_per_token(model_type, shape)  # the policy is what makes the difference


@pytest.mark.parametrize("model_type, key", [("gpt2", "embd_pdrop"), ("starcoder2", "embedding_dropout")])
def test_embedding_dropout_keeps_one_mask_below_the_layers(model_type, key):
    """Once per model, outside the layers: what autograd keeps for it is what the estimate adds."""
    from ftc.compiler.memory.estimate import estimate

    seq = 64
    configs = [{**_config(model_type, SHAPES[0], 1), key: p} for p in (0.0, 0.1)]
    kept = _saved_bytes(configs[1], seq, torch.bfloat16) - _saved_bytes(configs[0], seq, torch.bfloat16)
    added = [estimate(MemorySetup(from_config(c), micro_batch=2, seq_len=seq, padded_batches=False))
             .component("activations") for c in configs]
    assert kept > 0 and added[1] - added[0] == kept


def test_fp32_layer_and_eager_quadratic_term():
    shape = SHAPES[0]
    for model_type in ("llama", "qwen3", "olmo2"):
        assert predicted(model_type, shape, dtype="fp32") == measured_per_token(model_type, shape, dtype=torch.float32)
    for model_type in ("gemma3_text", "gpt_oss"):  # their norms also keep a per-layer fp32 copy of `1 + weight`
        real = measured_per_token(model_type, shape, dtype=torch.float32)  # (or the sinks): no per-token term
        assert predicted(model_type, shape, dtype="fp32") == pytest.approx(real, rel=0.002), model_type
    short, long = measured_per_token("llama", shape, seq=64), measured_per_token("llama", shape, seq=128)
    arch = from_config(_config("llama", shape, 2))
    eager = [layer_bytes_per_token(MemorySetup(arch, seq_len=n, attention="eager")) for n in (64, 128)]
    assert eager[1] - eager[0] > 0 and short < long * 1.01  # sdpa: no length term


@pytest.mark.parametrize("model_type", ("llama", "granite", "starcoder2", "gpt2", "opt", "phi", "bloom"))
@pytest.mark.parametrize("attention_dropout", (0.0, 0.1))
@pytest.mark.parametrize("seq", (64, 128))
@pytest.mark.parametrize("device", ("cpu", "cuda"))
def test_eager_attention_with_and_without_its_dropout(model_type, attention_dropout, seq, device):
    """Eager attention's s² terms, and the mask of the probabilities' dropout (Granite's configs set 0.1,
    GPT-2's attn_pdrop), on the CPU and under CUDA autocast's policy (GPT-2's softmax goes fp32)."""
    key = "attn_pdrop" if model_type == "gpt2" else "attention_dropout"
    config = {**_config(model_type, SHAPES[0], 2), key: attention_dropout}
    setup = MemorySetup(from_config(config), seq_len=seq, attention="eager", padded_batches=False, device=device)

    def saved(layers):
        return _saved_bytes({**_config(model_type, SHAPES[0], layers), key: attention_dropout},
                            seq, torch.bfloat16, attention="eager", gpu_autocast=device == "cuda")

    expected = layer_bytes_per_token(setup) + layer_fixed_bytes(setup) / (2 * seq)
    assert expected == (saved(2) - saved(1)) / (2 * seq)


@pytest.mark.parametrize("model_type", ("llama", "opt", "gpt2"))
def test_fp32_eager_attention_keeps_no_copy_of_the_probabilities(model_type):
    """In fp32 the softmax output is the matmul's input: 4 B per score, not the fp32 + 16-bit pair."""
    def saved(layers, seq):
        return _saved_bytes(_config(model_type, SHAPES[0], layers), seq, torch.float32, attention="eager")

    arch = from_config(_config(model_type, SHAPES[0], 2))
    got = [layer_bytes_per_token(MemorySetup(arch, dtype="fp32", mixed_precision="no", seq_len=seq,
                                             attention="eager", padded_batches=False)) for seq in (64, 128)]
    real = [(saved(2, seq) - saved(1, seq)) / (2 * seq) for seq in (64, 128)]
    assert got == real
    assert (got[1] - got[0]) == 4 * arch.heads * 64


@pytest.mark.parametrize("model_type", ("llama", "qwen3", "olmo2", "gemma3_text", "gpt_oss", "granite", "starcoder2",
                                        "stablelm", "cohere"))
@pytest.mark.parametrize("targets, dropout", [
    (["q_proj", "v_proj"], 0.0), (["q_proj", "v_proj"], 0.05), (["o_proj"], 0.0), (["down_proj"], 0.0),
    ("all-linear", 0.0), ("all-linear", 0.05)])
def test_lora_layer_activations(targets, dropout, model_type):
    """bf16 base under autocast with fp32 adapters, as the runtime trains LoRA."""
    shape, seq = SHAPES[0], 64
    if model_type == "starcoder2" and targets == ["down_proj"]:  # its MLP's output projection
        targets = ["c_proj"]
    lora = dict(r=8, target_modules=targets, lora_dropout=dropout)
    arch = from_config(_config(model_type, shape, 2))
    if model_type == "gpt_oss" and targets == ["down_proj"]:  # its experts are bare parameters: no module to adapt
        assert resolve_targets(arch, targets) == ((), ("down_proj",))
        return
    setup = MemorySetup(arch, method="lora", lora_rank=8, lora_dropout=dropout, seq_len=seq, padded_batches=False,
                        lora_targets="all_linear" if targets == "all-linear" else tuple(targets), device="cpu")
    real = measured_per_token(model_type, shape, seq, lora=lora)
    assert layer_bytes_per_token(setup) == pytest.approx(real, rel=0.02)
    if model_type in ("starcoder2", "stablelm"):  # LayerNorms: CUDA autocast's fp32 policy keeps more
        cuda = setup.with_(device="cuda")
        real = measured_per_token(model_type, shape, seq, lora=lora, gpu_autocast=True)
        assert layer_bytes_per_token(cuda) + layer_fixed_bytes(cuda) / (2 * seq) == pytest.approx(real, rel=0.02)


LAYER_NORM_LORA_TARGETS = {"gpt2": (["c_attn"], ["c_fc"], "all-linear"),
                           "opt": (["q_proj", "v_proj"], ["fc2"], "all-linear"),
                           "phi": (["q_proj", "v_proj"], ["dense"], "all-linear"),
                           "bloom": (["query_key_value"], ["dense_4h_to_h"], "all-linear"),
                           "falcon": (["query_key_value"], "all-linear")}
LAYER_NORM_LORA = [(t, targets) for t, all_targets in LAYER_NORM_LORA_TARGETS.items() for targets in all_targets]


@pytest.mark.parametrize("model_type, targets", LAYER_NORM_LORA, ids=[f"{t}-{x}" for t, x in LAYER_NORM_LORA])
@pytest.mark.parametrize("dropout", (0.0, 0.05))
@pytest.mark.parametrize("device", ("cpu", "cuda"))
def test_lora_layer_activations_in_the_layer_norm_families(model_type, targets, dropout, device):
    """The frozen base keeps no linear input, each adapter its own input cast and rank-r intermediate: on
    the CPU and under CUDA autocast's policy (Falcon, whose full formula is an upper bound, within 10%)."""
    shape, seq = SHAPES[0], 64
    attention = "eager" if model_type == "bloom" else "sdpa"
    arch = from_config(_config(model_type, shape, 2))
    setup = MemorySetup(arch, method="lora", lora_rank=8, lora_dropout=dropout, seq_len=seq, padded_batches=False,
                        lora_targets="all_linear" if targets == "all-linear" else tuple(targets), device=device,
                        attention=attention)
    real = measured_per_token(model_type, shape, seq, lora=dict(r=8, target_modules=targets, lora_dropout=dropout),
                              gpu_autocast=device == "cuda", attention=attention)
    got = layer_bytes_per_token(setup) + layer_fixed_bytes(setup) / (2 * seq)
    if model_type == "falcon":
        assert real <= got <= 1.1 * real
    else:
        assert got == pytest.approx(real, rel=0.01)


MOE_LORA = [(("q_proj", "v_proj"), 0.0), (("q_proj", "v_proj"), 0.05), (("o_proj",), 0.0), (("gate",), 0.0),
            (("gate_up_proj",), 0.0), (("down_proj",), 0.0), ("all_linear", 0.0)]


@pytest.mark.parametrize("model_type, targets", LAYER_NORM_LORA, ids=[f"{t}-{x}" for t, x in LAYER_NORM_LORA])
@pytest.mark.parametrize("dropout", (0.0, 0.1))
def test_fp32_lora_in_the_layer_norm_families_without_autocast(model_type, targets, dropout):
    """An fp32 model trains without autocast: an input stays kept while an adapter reads it, unless the
    adapters read their dropout's output instead (the dropout's mask and output are then kept)."""
    shape, seq = SHAPES[0], 64
    attention = "eager" if model_type == "bloom" else "sdpa"
    setup = MemorySetup(from_config(_config(model_type, shape, 2)), method="lora", lora_rank=8, lora_dropout=dropout,
                        seq_len=seq, padded_batches=False, dtype="fp32", mixed_precision="no", attention=attention,
                        lora_targets="all_linear" if targets == "all-linear" else tuple(targets))
    real = measured_per_token(model_type, shape, seq, dtype=torch.float32, autocast=False, attention=attention,
                              lora=dict(r=8, target_modules=targets, lora_dropout=dropout))
    got = layer_bytes_per_token(setup) + layer_fixed_bytes(setup) / (2 * seq)
    if model_type == "falcon":
        assert real <= got <= 1.1 * real
    else:
        assert got == pytest.approx(real, rel=0.01)


@pytest.mark.parametrize("model_type", ("mixtral", "qwen3_moe"))
@pytest.mark.parametrize("targets, dropout", MOE_LORA, ids=[f"{t}-{p}" for t, p in MOE_LORA])
def test_moe_lora_per_token_and_per_layer(model_type, targets, dropout):
    """Mixtral's layout: attention adapters as in Llama; the router and the fused experts are adapted as
    parameters (peft's target_parameters), so each step materializes `W + B·A` per layer and keeps it for
    backward, with what its gradient needs per token. Per-token and per-layer bytes are separated by
    measuring two sequence lengths."""
    shape = SHAPES[0]
    if targets == "all_linear":
        lora = dict(target_modules="all-linear")
    else:
        modules = [t for t in targets if t not in ("gate", "gate_up_proj", "down_proj")]
        params = [{"gate": "gate.weight"}.get(t, t) for t in targets if t not in modules]
        lora = dict(target_modules=modules, target_parameters=params or None)
    lora.update(r=8, lora_dropout=dropout)
    layer = {seq: _saved_bytes(_config(model_type, shape, 2), seq, torch.bfloat16, lora=lora)
             - _saved_bytes(_config(model_type, shape, 1), seq, torch.bfloat16, lora=lora) for seq in (64, 128)}
    per_token = (layer[128] - layer[64]) / (2 * 64)
    fixed = layer[64] - per_token * 2 * 64
    setup = MemorySetup(from_config(_config(model_type, shape, 2)), method="lora", lora_rank=8, lora_dropout=dropout,
                        seq_len=64, padded_batches=False, lora_targets=targets, device="cpu")
    assert layer_bytes_per_token(setup) == pytest.approx(per_token, rel=0.01)
    assert layer_fixed_bytes(setup) == pytest.approx(fixed, rel=0.01)


@pytest.mark.parametrize("targets", [("q_proj", "v_proj"), "all_linear"])
def test_moe_qlora_is_a_close_upper_bound(targets, tmp_path):
    """QLoRA on Mixtral's layout: k-bit preparation casts the unquantized experts to fp32, so adapting them
    materializes `W + B·A` in fp32 per layer; the per-token part keeps the generic upper bound."""
    pytest.importorskip("bitsandbytes")
    shape = SHAPES[0]
    lora = dict(r=8, lora_dropout=0.0, target_modules="all-linear" if targets == "all_linear" else list(targets))
    real = measured_per_token("mixtral", shape, 64, lora=lora, qlora_dir=tmp_path)
    setup = MemorySetup(from_config(_config("mixtral", shape, 2)), method="qlora", lora_rank=8, seq_len=64,
                        padded_batches=False, lora_targets=targets, device="cpu")
    got = layer_bytes_per_token(setup) + layer_fixed_bytes(setup) / (2 * 64)
    assert real <= got <= 1.25 * real


LAYER_NORM_QLORA = [(t, targets) for t, all_targets in LAYER_NORM_LORA_TARGETS.items() if t != "falcon"
                    for targets in (all_targets[0], "all-linear")]


@pytest.mark.parametrize("model_type, targets", LAYER_NORM_QLORA, ids=[f"{t}-{x}" for t, x in LAYER_NORM_QLORA])
def test_qlora_layer_activations_in_the_layer_norm_families(model_type, targets, tmp_path):
    """QLoRA runs these layers in fp32 (4-bit linears return their input's dtype) and attention in 16 bit
    (autocast's copies for SDPA and the matmuls). (Falcon's linears stay unquantized: E0715.)"""
    pytest.importorskip("bitsandbytes")
    shape, seq = SHAPES[0], 64
    attention = "eager" if model_type == "bloom" else "sdpa"
    arch = from_config(_config(model_type, shape, 2))
    setup = MemorySetup(arch, method="qlora", lora_rank=8, seq_len=seq, padded_batches=False, attention=attention,
                        lora_targets="all_linear" if targets == "all-linear" else tuple(targets))
    real = measured_per_token(model_type, shape, seq, lora=dict(r=8, target_modules=targets, lora_dropout=0.0),
                              qlora_dir=tmp_path, attention=attention)
    assert layer_bytes_per_token(setup) + layer_fixed_bytes(setup) / (2 * seq) == pytest.approx(real, rel=0.01)


@pytest.mark.parametrize("model_type", ("llama", "qwen3", "olmo2", "olmo3", "gemma3_text", "gpt_oss", "starcoder2",
                                        "stablelm", "cohere"))
@pytest.mark.parametrize("targets", [["q_proj", "v_proj"], "all-linear"])
def test_qlora_layer_activations(targets, model_type, tmp_path):
    pytest.importorskip("bitsandbytes")
    shape, seq = SHAPES[0], 64
    lora = dict(r=8, target_modules=targets, lora_dropout=0.0)
    real = measured_per_token(model_type, shape, seq, lora=lora, qlora_dir=tmp_path)
    arch = from_config(_config(model_type, shape, 2))
    setup = MemorySetup(arch, method="qlora", lora_rank=8, seq_len=seq, padded_batches=False,
                        lora_targets="all_linear" if targets == "all-linear" else tuple(targets))
    assert layer_bytes_per_token(setup) == pytest.approx(real, rel=0.02)
    if model_type in ("starcoder2", "stablelm"):  # the fp32 residual: CUDA's fp32 LayerNorm changes nothing
        assert not setup.cuda_fp32_ops
        gpu = measured_per_token(model_type, shape, seq, lora=lora, qlora_dir=tmp_path / "gpu", gpu_autocast=True)
        assert gpu == pytest.approx(real, rel=0.005)  # (the same tensors; storages vary by ~1 KiB per load)


@pytest.mark.parametrize("model_type", ("llama", "qwen2", "qwen3", "olmo2", "gemma3_text", "gpt2"))
@pytest.mark.parametrize("seq", (64, 128))
def test_padded_batches_add_the_mask_and_repeated_kv(model_type, seq):
    """With a padding mask SDPA gets K/V repeated to every head and keeps a 16-bit bias per layer."""
    shape = SHAPES[0]
    arch = from_config(_config(model_type, shape, 2))
    padded = layer_bytes_per_token(MemorySetup(arch, seq_len=seq, padded_batches=True, device="cpu"))
    full_rows = layer_bytes_per_token(MemorySetup(arch, seq_len=seq, padded_batches=False, device="cpu"))
    assert padded == pytest.approx(measured_per_token(model_type, shape, seq, padded=True), rel=0.02)
    assert padded - full_rows == 2 * 2 * (arch.q_dim - arch.kv_dim) + 2 * seq


@pytest.mark.parametrize("targets, dropout", [(["q_proj", "v_proj"], 0.0), (["o_proj"], 0.0), (["down_proj"], 0.1),
                                              ("all-linear", 0.0), ("all-linear", 0.1)])
def test_fp32_lora_layer_activations_without_autocast(targets, dropout):
    """An fp32 model trains without autocast: nothing is cast, so LoRA keeps much less than under bf16."""
    shape, seq = SHAPES[0], 64
    lora = dict(r=8, target_modules=targets, lora_dropout=dropout)
    arch = from_config(_config("llama", shape, 2))
    got = layer_bytes_per_token(MemorySetup(arch, method="lora", lora_rank=8, lora_dropout=dropout, seq_len=seq,
                                            dtype="fp32", mixed_precision="no", padded_batches=False,
                                            lora_targets="all_linear" if targets == "all-linear" else tuple(targets)))
    real = measured_per_token("llama", shape, seq, torch.float32, lora=lora, autocast=False)
    if dropout:  # (c + 2) B per dropped input element is exact for attention inputs, an upper bound for down_proj's
        assert real <= got <= 1.1 * real
        return
    assert got == pytest.approx(real, rel=0.02)
    arch = from_config(_config("qwen3", shape, 2))  # and with the query/key norms
    got = layer_bytes_per_token(MemorySetup(arch, method="lora", lora_rank=8, seq_len=seq, dtype="fp32",
                                            mixed_precision="no", padded_batches=False,
                                            lora_targets="all_linear" if targets == "all-linear" else tuple(targets)))
    assert got == pytest.approx(measured_per_token("qwen3", shape, seq, torch.float32, lora=lora, autocast=False),
                                rel=0.02)


def test_gemma2_lora_layer_activations_are_a_close_upper_bound():
    """Gemma's norms scale in fp32: frozen, they keep no fp32 normalized input (the estimate was 14-19% over)."""
    shape, seq = SHAPES[0], 64
    arch = from_config(_config("gemma2", shape, 2))
    for targets, ours in ((["q_proj", "v_proj"], ("q_proj", "v_proj")), ("all-linear", "all_linear")):
        real = measured_per_token("gemma2", shape, seq, lora=dict(r=8, target_modules=targets, lora_dropout=0.0))
        got = layer_bytes_per_token(MemorySetup(arch, method="lora", lora_rank=8, seq_len=seq, attention="eager",
                                                padded_batches=False, lora_targets=ours))
        assert real <= got <= 1.05 * real, (targets, got, real)


# How each family's config turns a window on for some layers (`sliding`) or leaves it off (`full`).
WINDOWED = {
    "gemma3_text": (lambda w, n: dict(sliding_window=w, layer_types=["sliding_attention"] * n),
                    lambda w, n: dict(sliding_window=w, layer_types=["full_attention"] * n)),
    "mistral": (lambda w, n: dict(sliding_window=w), lambda w, n: dict(sliding_window=None)),
    "qwen2": (lambda w, n: dict(use_sliding_window=True, sliding_window=w, max_window_layers=0),
              lambda w, n: dict(use_sliding_window=False, sliding_window=w)),
    "starcoder2": (lambda w, n: dict(sliding_window=w), lambda w, n: dict(sliding_window=None)),
    "olmo3": (lambda w, n: dict(sliding_window=w, layer_types=["sliding_attention"] * n),
              lambda w, n: dict(sliding_window=w, layer_types=["full_attention"] * n)),
}


@pytest.mark.parametrize("model_type", list(WINDOWED))
@pytest.mark.parametrize("window, seq", [(32, 128), (128, 64)])
def test_sliding_window_layers_hand_sdpa_a_mask_past_the_window(model_type, window, seq, monkeypatch):
    """Sliding-window layers (Gemma-3's local ones, Mistral-7B-v0.1's, Qwen2's with use_sliding_window):
    once the sequence is longer than the window, SDPA gets a mask (repeated K/V and a 16-bit bias, as with
    padding); without a window the causal fast path stays."""
    shape = SHAPES[0]
    base = _config
    per_kind = {}
    for kind, extra in zip(("sliding", "full"), WINDOWED[model_type]):
        def build(model_type, shape, layers, extra=extra):
            return dict(base(model_type, shape, layers), **extra(window, layers))

        monkeypatch.setattr(sys.modules[__name__], "_config", build)
        arch = from_config(_config(model_type, shape, 2))
        assert arch.sliding_layers == (2 if kind == "sliding" else 0)
        got = layer_bytes_per_token(MemorySetup(arch, seq_len=seq, padded_batches=False, device="cpu"))
        assert got == pytest.approx(measured_per_token(model_type, shape, seq), rel=0.02), kind
        per_kind[kind] = got
    masked = per_kind["sliding"] - per_kind["full"]
    assert masked == (2 * 2 * (arch.q_dim - arch.kv_dim) + 2 * seq if seq > window else 0)


DEEPSPEED_LORA = [("llama", ["q_proj", "v_proj"]), ("llama", ["o_proj"]), ("llama", ["down_proj"]),
                  ("llama", "all-linear"), ("bloom", ["query_key_value"]), ("opt", ["q_proj", "v_proj"]),
                  ("gpt2", ["c_attn"])]


@pytest.mark.parametrize("model_type, targets", DEEPSPEED_LORA)
@pytest.mark.parametrize("zero", (2, 3))
def test_lora_under_deepspeed_bf16_engine(model_type, targets, zero, monkeypatch):
    """DeepSpeed's bf16 engine casts the model, adapters included, to bf16 and runs it without autocast; at
    stage 3 its linear keeps every input as well."""
    pytest.importorskip("deepspeed")
    from deepspeed.runtime.zero.linear import zero3_linear_wrap

    shape, seq = SHAPES[0], 64
    attention = "eager" if model_type == "bloom" else "sdpa"
    setup = MemorySetup(from_config(_config(model_type, shape, 2)), method="lora", lora_rank=8, seq_len=seq,
                        padded_batches=False, attention=attention, strategy="deepspeed", zero=zero, dp_world=2,
                        gpus_per_node=2, lora_targets="all_linear" if targets == "all-linear" else tuple(targets))
    if zero == 3:
        monkeypatch.setattr(torch.nn.functional, "linear", zero3_linear_wrap)
    real = measured_per_token(model_type, shape, seq, dtype=torch.bfloat16, autocast=False, attention=attention,
                              engine_cast=True, lora=dict(r=8, target_modules=targets, lora_dropout=0.0))
    got = layer_bytes_per_token(setup) + layer_fixed_bytes(setup) / (2 * seq)
    assert got == pytest.approx(real, rel=0.02)


@pytest.mark.parametrize("model_type, targets", [t for t in DEEPSPEED_LORA if t[1] != "all-linear"])
def test_frozen_linears_keep_their_inputs_under_deepspeed_zero3(model_type, targets, monkeypatch):
    """ZeRO-3 swaps `F.linear` for DeepSpeed's LinearFunctionForZeroStage3, which saves every linear's input
    whether or not its weight trains, so a frozen base keeps what LoRA otherwise frees."""
    pytest.importorskip("deepspeed")
    from deepspeed.runtime.zero.linear import zero3_linear_wrap

    shape, seq = SHAPES[0], 64
    attention = "eager" if model_type == "bloom" else "sdpa"
    lora = dict(r=8, target_modules=targets, lora_dropout=0.0)
    setup = MemorySetup(from_config(_config(model_type, shape, 2)), method="lora", lora_rank=8, seq_len=seq,
                        padded_batches=False, dtype="fp32", mixed_precision="no", attention=attention,
                        lora_targets=tuple(targets), strategy="deepspeed", zero=3, dp_world=2, gpus_per_node=2)
    plain = measured_per_token(model_type, shape, seq, dtype=torch.float32, autocast=False, attention=attention,
                               lora=lora)
    monkeypatch.setattr(torch.nn.functional, "linear", zero3_linear_wrap)  # as zero.Init leaves it
    real = measured_per_token(model_type, shape, seq, dtype=torch.float32, autocast=False, attention=attention,
                              lora=lora)
    got = layer_bytes_per_token(setup) + layer_fixed_bytes(setup) / (2 * seq)
    if model_type == "gpt2":  # Conv1D calls torch.addmm itself: nothing changes
        assert real == plain
    else:
        assert real > plain  # the base's inputs are kept
    assert got == pytest.approx(real, rel=0.02)
