"""Auto passes, ranked fixes, the budget pass on real recipes, and `ftc estimate`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftc.cli import main
from ftc.compiler.frontend import analyze
from ftc.compiler.memory import hardware
from ftc.compiler.emit import emit
from ftc.compiler.memory.auto import resolve_auto, settled
from ftc.compiler.memory.estimate import estimate
from ftc.compiler.memory.fixes import suggest_fixes
from ftc.compiler.memory.recipe import setup_from_recipe
from ftc.compiler.memory.setup import MemorySetup
from ftc.compiler.memory.units import gib
from ftc.compiler.models.resolve import resolve_model

GiB = 2**30
L2 = resolve_model("meta-llama/Llama-2-7b-hf").architecture


def test_micro_batch_auto_is_largest_divisor_that_fits():
    s = MemorySetup(L2, method="lora", seq_len=2048)
    budget = 40 * GiB
    setup, decisions = resolve_auto(s, {"micro_batch"}, budget, global_batch=24, dp_world=1)
    m = setup.micro_batch
    assert 24 % m == 0 and estimate(setup).peak_bytes <= budget
    larger = [d for d in range(m + 1, 25) if 24 % d == 0]
    assert all(estimate(s.with_(micro_batch=d)).peak_bytes > budget for d in larger)
    assert decisions[0].field == "train.micro_batch" and "divides the 24" in decisions[0].reason


def test_micro_batch_fix_is_the_largest_smaller_divisor_that_fits():
    """The micro_batch fix tries the divisors of the sequences per rank below the recipe's micro-batch
    (halvings when the batch does not divide), so a batch of 2**20 sequences costs a few estimates."""
    from ftc.compiler.memory.fixes import _smaller_micro_batches

    assert _smaller_micro_batches(12, 24) == [8, 6, 4, 3, 2, 1]
    assert _smaller_micro_batches(2**20, None) == [2**k for k in range(19, -1, -1)]
    assert len(_smaller_micro_batches(2**20, 2**20)) == 20
    s = MemorySetup(L2, method="lora", micro_batch=96, seq_len=2048)
    budget = 40 * GiB
    (fix,) = [f for f in suggest_fixes(s, budget, global_batch=720720) if f.field == "train.micro_batch"]
    assert fix.fits and 720720 % fix.value == 0
    bigger = [d for d in range(fix.value + 1, 96) if 720720 % d == 0]
    assert all(estimate(s.with_(micro_batch=d)).peak_bytes > budget for d in bigger)


def test_zero_auto_is_smallest_stage_that_fits():
    s = MemorySetup(L2, method="full", strategy="deepspeed", dp_world=8, gpus_per_node=8, seq_len=2048)
    budget = 40 * GiB
    setup, decisions = resolve_auto(s, {"zero"}, budget, global_batch=64, dp_world=8)
    z = setup.zero
    assert estimate(setup).peak_bytes <= budget
    assert all(estimate(s.with_(zero=lower)).peak_bytes > budget for lower in range(z))
    assert decisions[0].field == "distributed.zero" and f"stage {z}" in decisions[0].reason


def test_zero_auto_never_picks_stage_3_for_qlora():
    """Stage 3 would fit a 70B QLoRA on 24 GB cards (the estimator shards the 4-bit weights), but the runtime
    cannot partition them (E0416): the recipe does not fit, and says so."""
    s = MemorySetup(resolve_model("meta-llama/Llama-2-70b-hf").architecture, method="qlora", strategy="deepspeed",
                    dp_world=4, gpus_per_node=4, seq_len=2048, gradient_checkpointing=True, sequences_per_rank=4)
    budget = 24 * GiB
    assert estimate(s.with_(zero=3)).peak_bytes <= budget
    setup, (decision,) = resolve_auto(s, {"zero"}, budget, global_batch=16, dp_world=4)
    assert setup.zero == 2 and estimate(setup).peak_bytes > budget


def test_checkpointing_auto_only_when_needed():
    s = MemorySetup(L2, method="lora", micro_batch=4, seq_len=4096)
    roomy, tight = 140 * GiB, 30 * GiB
    assert estimate(s).peak_bytes <= roomy
    setup, (decision,) = resolve_auto(s, {"gradient_checkpointing"}, roomy, 16, 1)
    assert setup.gradient_checkpointing is False and decision.value is False
    setup, (decision,) = resolve_auto(s, {"gradient_checkpointing"}, tight, 16, 1)
    assert setup.gradient_checkpointing is True and "without it, over 30.0 GiB" in decision.reason


def test_fixes_are_ranked_and_described():
    s = MemorySetup(L2, method="lora", micro_batch=4, seq_len=4096)
    budget = 40 * GiB
    fixes = suggest_fixes(s, budget, global_batch=16)
    assert fixes and fixes[0].fits
    first = fixes[0]
    assert first.field == "train.gradient_checkpointing"
    after = estimate(s.with_(gradient_checkpointing=True)).peak_bytes
    assert first.saved_bytes == estimate(s).peak_bytes - after
    assert first.spare_bytes == budget - after
    text = first.describe()
    assert text.startswith("gradient_checkpointing = true saves ") and "GiB → fits with " in text
    assert all(f.saved_bytes > 0 for f in fixes)


def test_a_lower_zero_stage_is_offered_where_it_saves():
    """LoRA at ZeRO-3 shards little (the frozen 16-bit weights) and keeps every linear's input (DeepSpeed's
    own linear), so with long sequences ZeRO-2 needs less; a full fine-tune at ZeRO-2 gains nothing lower."""
    small = resolve_model("meta-llama/Llama-3.2-1B").architecture
    lora = MemorySetup(small, method="lora", lora_targets=("q_proj", "v_proj"), strategy="deepspeed", zero=3,
                       dp_world=2, gpus_per_node=2, micro_batch=8, seq_len=4096, sequences_per_rank=8)
    zero = {f.value: f for f in suggest_fixes(lora, 20 * GiB, global_batch=16, limit=20)
            if f.field == "distributed.zero"}
    assert 2 in zero and zero[2].saved_bytes == estimate(lora).peak_bytes - estimate(lora.with_(zero=2)).peak_bytes > 0
    full = MemorySetup(L2, method="full", strategy="deepspeed", zero=2, dp_world=8, gpus_per_node=8, seq_len=2048)
    offered = [f.value for f in suggest_fixes(full, 40 * GiB, global_batch=64, limit=20) if f.field == "distributed.zero"]
    assert offered == [3]


def test_combined_fix_when_no_single_edit_fits():
    s = MemorySetup(L2, method="full", micro_batch=8, seq_len=4096, strategy="deepspeed", dp_world=8, gpus_per_node=8)
    fixes = suggest_fixes(s, 30 * GiB, global_batch=64)
    assert fixes[0].fits and len(fixes[0].changes) >= 2


def test_more_gpus_fix_is_the_smallest_count_that_fits_and_compiles(tmp_path):
    s = MemorySetup(resolve_model("meta-llama/Llama-3.1-70B").architecture, method="lora", micro_batch=1,
                    seq_len=4096, gradient_checkpointing=True, sequences_per_rank=16)
    budget = 80 * GiB
    (fix,) = [f for f in suggest_fixes(s, budget, global_batch=16) if f.field == "hardware.gpus_per_node"]
    assert fix.fits and fix.changes == (("hardware.gpus_per_node", fix.value), ("distributed", "fsdp"))
    def on(gpus):
        return estimate(s.with_(gpus_per_node=gpus, dp_world=gpus, sequences_per_rank=16 // gpus,
                                strategy="fsdp")).peak_bytes
    assert on(fix.value) <= budget < on(fix.value // 2)
    assert fix.describe().startswith(f"gpus_per_node = {fix.value} and distributed = fsdp saves ")
    path = write(tmp_path, micro="1", gc="true", hardware="hardware {\n  gpu = h100-80gb\n}")
    path.write_text(path.read_text().replace("meta-llama/Llama-2-7b-hf", "meta-llama/Llama-3.1-70B"))
    (d,) = [d for d in errors(path) if d.code == "E0705"]
    assert f"gpus_per_node = {fix.value} and distributed = fsdp saves" in d.help
    edited = analyze(path, (f"hardware.gpus_per_node={fix.value}", "distributed=fsdp"))
    assert [d.code for d in edited.diagnostics if d.is_error] == []


def test_offload_fix_over_the_host_ram_does_not_fit_and_more_nodes_do():
    s = MemorySetup(resolve_model("meta-llama/Llama-3.1-405B").architecture, method="lora", micro_batch=1,
                    seq_len=4096, gradient_checkpointing=True, strategy="fsdp", dp_world=8, gpus_per_node=8,
                    sequences_per_rank=8)
    budget, host = hardware.gpu_memory("h200"), 1000 * GiB
    assert estimate(s).peak_bytes > budget
    fixes = {f.field: f for f in suggest_fixes(s, budget, global_batch=64, host_budget=host)}
    offload = fixes["distributed.offload_params"]
    assert offload.spare_bytes >= 0 and offload.host_bytes > host and not offload.fits
    assert "of host RAM per node, over `cpu_memory` 1000.0 GiB" in offload.describe()
    assert suggest_fixes(s, budget, global_batch=64)[0].field == "distributed.offload_params"  # no cpu_memory
    nodes = fixes["hardware.nodes"]
    assert nodes.fits and nodes.value == 2 and nodes.changes == ()
    assert estimate(s.with_(nodes=2, dp_world=16, sequences_per_rank=4)).peak_bytes == budget - nodes.spare_bytes


def test_no_more_gpus_for_qlora_or_an_indivisible_batch():
    s = MemorySetup(L2, method="lora", micro_batch=2, seq_len=4096, sequences_per_rank=12)
    offered = [f.value for f in suggest_fixes(s, 10 * GiB, global_batch=12) if f.field == "hardware.gpus_per_node"]
    assert offered == [2]  # 4 and 8 GPUs leave 3 and 1.5 sequences per rank: not whole micro-batches of 2
    q = s.with_(method="qlora")
    assert all(f.field != "hardware.gpus_per_node" for f in suggest_fixes(q, 2 * GiB, global_batch=12))


@pytest.mark.parametrize("strategy", ["ddp", "deepspeed"])
def test_qlora_fixes_never_shard_the_4bit_weights(strategy):
    """ZeRO-3 and FSDP would be E0416 / E0419: no fix for QLoRA proposes them."""
    q = MemorySetup(L2, method="qlora", micro_batch=8, seq_len=4096, strategy=strategy, dp_world=4, gpus_per_node=4,
                    sequences_per_rank=8)
    edits = [f.changes or ((f.field, f.value),) for f in suggest_fixes(q, 4 * GiB, global_batch=32, limit=50)]
    flat = [edit for fix in edits for edit in fix]
    assert flat and ("distributed", "fsdp") not in flat and ("distributed.zero", 3) not in flat


def test_qlora_of_fused_experts_warns_and_lora_is_the_fix(tmp_path):
    path = write(tmp_path, method="qlora", micro="1", gc="true", hardware="hardware {\n  gpu = rtx-4090\n}")
    path.write_text(path.read_text().replace("meta-llama/Llama-2-7b-hf", "mistralai/Mixtral-8x7B-v0.1")
                    .replace("method qlora {}", "method qlora {\n  quant = nf4\n}"))
    diagnostics = analyze(path).diagnostics
    (warning,) = [d for d in diagnostics if d.code == "W0709"]
    assert warning.span.line == 3 and "45.1B of the 46.7B" in warning.message and "method lora" in warning.help
    (over,) = [d for d in diagnostics if d.code == "E0705"]
    assert "method = lora saves" in over.help and "no GPU in the catalog holds" in over.help
    dense = write(tmp_path, method="qlora", micro="1", gc="true")
    dense.write_text(dense.read_text().replace("method qlora {}", "method qlora {\n  quant = nf4\n}"))
    assert all(d.code != "W0709" for d in analyze(dense).diagnostics)


def test_qlora_of_falcon_is_refused_at_method(tmp_path):
    """Falcon's linears are FalconLinear, which transformers' bitsandbytes integration does not convert:
    QLoRA would train an unquantized fp32 model. The estimate counts them as unquantized either way."""
    path = write(tmp_path, method="qlora", micro="1", gc="true", hardware="hardware {\n  gpu = a100-80gb\n}")
    path.write_text(path.read_text().replace("meta-llama/Llama-2-7b-hf", "tiiuae/falcon-7b")
                    .replace("method qlora {}", "method qlora {\n  quant = nf4\n}"))
    (error,) = [d for d in analyze(path).diagnostics if d.code == "E0715"]
    assert error.span.line == 3 and "none of this falcon model's layers" in error.message
    assert error.help == "use `method lora` (weights in bf16)"
    assert all(d.code != "W0709" for d in analyze(path).diagnostics)
    lora = write(tmp_path, method="lora", micro="1", gc="true", hardware="hardware {\n  gpu = a100-80gb\n}")
    lora.write_text(lora.read_text().replace("meta-llama/Llama-2-7b-hf", "tiiuae/falcon-7b"))
    assert errors(lora) == []


@pytest.mark.parametrize("body, where", [
    ("targets = all_linear", "method.targets"),  # the default dropout, 0.05
    ("targets = [gate_up_proj]\n  dropout = 0.1", "method.dropout"),
    ("targets = [q_proj, gate]\n  dropout = 0.1", "method.dropout"),
    ("targets = all_linear\n  dropout = 0", None),
    ("targets = [q_proj, v_proj]", None),  # attention adapters are modules: dropout is fine
])
def test_lora_dropout_on_moe_router_or_experts_is_refused(tmp_path, body, where):
    """peft adapts Mixtral's router and fused experts as parameters, whose wrapper takes no dropout: the
    run would fail in get_peft_model, after loading 47B parameters."""
    path = write(tmp_path, micro="1", gc="true", hardware="")
    path.write_text(path.read_text().replace("meta-llama/Llama-2-7b-hf", "mistralai/Mixtral-8x7B-v0.1")
                    .replace("method lora {}", "method lora {\n  " + body + "\n}"))
    found = [d for d in analyze(path).diagnostics if d.code == "E0716"]
    if where is None:
        assert found == []
        return
    (error,) = found
    key = where.split(".")[1]
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if text.strip().startswith(key))
    assert error.span.line == line and "mixtral" in error.message
    assert "dropout = 0" in error.help and "q_proj, k_proj, v_proj, o_proj" in error.help
    assert ("(the default)" in error.message) == (where == "method.targets")


@pytest.mark.parametrize("model, saved, expected_help", [
    ("openai-community/gpt2", "[embed_tokens]", "use `wte` or `lm_head`"),  # Llama's name on GPT-2
    ("meta-llama/Llama-2-7b-hf", "[lm_heads]", "write `lm_head`"),
    ("meta-llama/Llama-2-7b-hf", "[embed_tokens, lm_head]", None),
    ("openai-community/gpt2", "[wte]", None)])
def test_modules_to_save_must_name_a_module_of_the_model(tmp_path, model, saved, expected_help):
    """peft skips a modules_to_save name no module has without a word: E0718 at the field instead."""
    path = write(tmp_path, micro="1", gc="true", length=1024, hardware="")
    path.write_text(path.read_text().replace("meta-llama/Llama-2-7b-hf", model)
                    .replace("method lora {}", f"method lora {{\n  modules_to_save = {saved}\n}}"))
    found = [d for d in analyze(path).diagnostics if d.code == "E0718"]
    if expected_help is None:
        assert found == []
        return
    (error,) = found
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if "modules_to_save" in t)
    assert error.span.line == line and error.help == expected_help


def test_packing_separation_per_family_is_what_transformers_does():
    """PACKING_NOT_SEPARATED against transformers: a packed row (position_ids restarting at the second
    example, no attention mask, as ftc's packed collator sends it) gives the second example the logits it
    has alone exactly where the family separates packed examples."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from ftc.compiler.memory.compat import PACKING_NOT_SEPARATED
    from ftc.compiler.models.arch import SUPPORTED_TYPES, from_config
    from tiny_configs import tiny_config, transformers_config

    torch.manual_seed(0)
    first, second = torch.randint(0, 128, (1, 6)), torch.randint(0, 128, (1, 7))
    positions = torch.cat([torch.arange(6), torch.arange(7)]).unsqueeze(0)
    separated = {}
    for model_type in SUPPORTED_TYPES:
        if model_type == "gemma3":  # (the multimodal wrapper; its text model is gemma3_text)
            continue
        fields = tiny_config(model_type)
        model = transformers.AutoModelForCausalLM.from_config(
            transformers_config(fields), dtype=torch.float32,
            attn_implementation=from_config(fields).default_attention).eval()
        with torch.no_grad():
            packed = model(input_ids=torch.cat([first, second], 1), position_ids=positions, use_cache=False)
            alone = model(input_ids=second, use_cache=False)
        separated[model_type] = torch.allclose(packed.logits[0, 6:], alone.logits[0], atol=1e-4)
    assert sorted(t for t, ok in separated.items() if not ok) == sorted(PACKING_NOT_SEPARATED)


@pytest.mark.parametrize("model, attention, refused", [
    ("facebook/opt-1.3b", None, True), ("bigscience/bloom-7b1", "eager", True),
    ("facebook/opt-1.3b", "flash_attention_2", False), ("meta-llama/Llama-2-7b-hf", None, False)])
def test_packing_on_a_model_that_does_not_separate_examples_is_refused(tmp_path, model, attention, refused):
    path = write(tmp_path, micro="1", gc="true", length=1024, hardware="")
    text = path.read_text().replace("meta-llama/Llama-2-7b-hf", model).replace("  max_length = 1024",
                                                                                 "  max_length = 1024\n  packing = true")
    if attention:
        text = text.replace("{ dtype = bf16 }", f"{{\n  dtype = bf16\n  attention = {attention}\n}}")
    path.write_text(text)
    found = [d for d in analyze(path).diagnostics if d.code == "E0717"]
    assert bool(found) == refused
    if refused:
        (error,) = found
        line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if t.strip().startswith("packing"))
        assert error.span.line == line and error.help == "set `packing = false` (batches are padded to their longest row)"


def test_bitsandbytes_leaves_falcon_unquantized_and_converts_the_other_families(tmp_path):
    """What E0715 and the catalog's `quantizable` rest on, from the libraries themselves."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    bnb = pytest.importorskip("bitsandbytes")
    from ftc.compiler.models.arch import from_config
    from tiny_configs import tiny_config, transformers_config

    for model_type in ("falcon", "gpt2", "phi"):
        config = tiny_config(model_type, layers=1)
        transformers.AutoModelForCausalLM.from_config(transformers_config(config), dtype=torch.bfloat16) \
            .save_pretrained(tmp_path / model_type)
        model = transformers.AutoModelForCausalLM.from_pretrained(
            tmp_path / model_type, dtype=torch.bfloat16, device_map="cpu",
            quantization_config=transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4"))
        converted = sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
        expected = sum(m.count for m in from_config(config).layer_linears if m.quantizable)
        assert converted == expected, model_type


def test_memory_per_gpu_above_the_named_card_warns(tmp_path):
    path = write(tmp_path, gc="true", length=512, hardware="hardware {\n  gpu = rtx-4090\n  memory_per_gpu = 48 GB\n}")
    (warning,) = [d for d in analyze(path).diagnostics if d.code == "W0713"]
    assert "44.7 GiB" in warning.message and "RTX 4090" in warning.message
    assert warning.span.line == path.read_text().splitlines().index("  memory_per_gpu = 48 GB") + 1
    path.write_text(path.read_text().replace("48 GB", "22 GiB"))
    assert all(d.code != "W0713" for d in analyze(path).diagnostics)


def test_larger_gpu_keeps_the_vendor_when_it_can():
    need = 60 * GiB
    nvidia, amd, anyone = (hardware.smallest_holding(need, like=g) for g in ("rtx-4090", "mi250", None))
    assert anyone == "mi250" and amd == "mi250"  # 64 GB, the smallest card of all that holds 60 GiB
    assert hardware.vendor(nvidia) == "nvidia" and hardware.gpu_memory(nvidia) >= need
    assert all(hardware.gpu_memory(g) < need or hardware.gpu_memory(g) >= hardware.gpu_memory(nvidia)
               for g in hardware.GPUS if hardware.vendor(g) == "nvidia")
    assert hardware.smallest_holding(170 * GiB, like="h100") == "b200"
    assert hardware.smallest_holding(185 * GiB, like="h100") == "mi300x"  # no NVIDIA card holds it
    assert hardware.smallest_holding(500 * GiB, like="h100") is None


def test_larger_gpu_named_when_no_edit_fits(tmp_path):
    path = write(tmp_path, method="full", micro="1", gc="true", length=512, hardware="hardware {\n  gpu = t4\n}")
    odd_batch = ("train.global_batch=3",)  # no GPU count divides it: only a larger card helps
    (d,) = [d for d in analyze(path, odd_batch).diagnostics if d.code == "E0705"]
    assert "fits with" not in d.help and "holds it as written" in d.help
    name = d.help.split("`gpu = ")[1].split("`")[0]
    assert [x.code for x in analyze(path, odd_batch + (f"hardware.gpu={name}",)).diagnostics if x.is_error] == []
    next_smaller = max((g for g in hardware.GPUS if hardware.GPUS[g][0] < hardware.GPUS[name][0]
                        and hardware.vendor(g) == hardware.vendor(name)),  # the suggestion keeps the vendor
                       key=lambda g: hardware.GPUS[g][0])
    assert [x.code for x in analyze(path, odd_batch + (f"hardware.gpu={next_smaller}",)).diagnostics
            if x.is_error] == ["E0705"]


RECIPE = """recipe "r"
model "meta-llama/Llama-2-7b-hf" {{ dtype = bf16 }}
method {method} {{}}
data {{
  train = "train.jsonl"
  format = text
  max_length = {length}
}}
train {{
  lr = 1e-4
  global_batch = 16
  micro_batch = {micro}
  gradient_checkpointing = {gc}
}}
{hardware}
"""


def write(tmp_path: Path, method="lora", length=4096, micro="4", gc="false",
          hardware='hardware {\n  gpu = a100-40gb\n}') -> Path:
    (tmp_path / "train.jsonl").write_text('{"text": "a"}\n')
    path = tmp_path / "r.ftspec"
    path.write_text(RECIPE.format(method=method, length=length, micro=micro, gc=gc, hardware=hardware))
    return path


def errors(path: Path) -> list:
    return [d for d in analyze(path).diagnostics if d.is_error]


def test_over_budget_is_located_at_hardware_with_breakdown_and_fixes(tmp_path):
    path = write(tmp_path)
    (d,) = [d for d in errors(path) if d.code == "E0705"]
    assert d.span is not None and d.span.line == path.read_text().splitlines().index("hardware {") + 1
    assert "40.0 GiB" in d.message and any(n.startswith("activations:") for n in d.notes)
    assert "gradient_checkpointing = true saves" in d.help


def test_fitting_recipe_and_autos_pass(tmp_path):
    assert errors(write(tmp_path, micro="auto", gc="auto")) == []
    assert errors(write(tmp_path, gc="true", length=1024)) == []


def test_no_budget_without_hardware_or_on_cpu(tmp_path):
    assert errors(write(tmp_path, hardware="")) == []
    assert errors(write(tmp_path, hardware="hardware {\n  accelerator = cpu\n}")) == []


def test_unknown_gpu_has_did_you_mean(tmp_path):
    (d,) = errors(write(tmp_path, hardware='hardware {\n  gpu = a100-80g8\n}'))
    assert d.code == "E0702" and "a100-80gb" in d.help and "`ftc catalog gpus`" in d.help
    (d,) = errors(write(tmp_path, hardware='hardware {\n  gpu = a100\n}'))
    assert "a100-40gb" in d.help and "a100-80gb" in d.help


def test_unknown_lora_target(tmp_path):
    path = write(tmp_path, gc="true", length=512)
    path.write_text(path.read_text().replace("method lora {}", "method lora {\n  targets = [q_proj, c_attn]\n}"))
    (d,) = errors(path)
    assert d.code == "E0704" and "`c_attn`" in d.message and "q_proj" in d.help


def test_unknown_model_is_a_located_warning(tmp_path):
    path = write(tmp_path, gc="true", length=512)
    path.write_text(path.read_text().replace("meta-llama/Llama-2-7b-hf", "org/unknown-model"))
    warnings = [d for d in analyze(path).diagnostics if d.code == "W0701"]
    assert warnings and warnings[0].span is not None and "config.json" in warnings[0].help
    assert "`ftc catalog models`" in warnings[0].help


LLAMA_CONFIG = ('{"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128, '
                '"num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256}')


@pytest.mark.parametrize("folder, config, code", [
    ("./models/m", None, "E0714"),  # no folder: the run could not load it either
    ("models/m", "", "E0714"),  # a folder without config.json
    ("models/m", '{"model_type": "llama", "hidden_size": ', "E0714"),  # config.json cut short
    ("models/m", "[1, 2]", "E0714"),  # not a config object
    ("models/m", '{"model_type": "t5", "d_model": 64}', "W0701"),  # readable, an architecture ftc lacks
    ("models/m", LLAMA_CONFIG.replace('"hidden_size": 64', '"hidden_size": "abc"'), "E0714"),  # not a number
    ("models/m", LLAMA_CONFIG.replace('"hidden_size": 64', '"hidden_size": 0'), "E0714"),  # no model has it
    ("models/m", LLAMA_CONFIG.replace('"num_key_value_heads": 2', '"num_key_value_heads": 3'), "E0714"),
    ("models/m", LLAMA_CONFIG.replace('"model_type": "llama"', '"model_type": ["llama"]'), "W0701"),
    ("models/m", LLAMA_CONFIG, None),  # the same folder, well formed: resolved, nothing to say
    ("org/unknown-model", None, "W0701"),  # a hub id: the run may fetch it
])
def test_local_model_folder_the_run_cannot_load_is_an_error(tmp_path, folder, config, code):
    path = write(tmp_path, gc="true", length=512)
    path.write_text(path.read_text().replace("meta-llama/Llama-2-7b-hf", folder))
    if config is not None:
        (tmp_path / folder).mkdir(parents=True)
        if config:
            (tmp_path / folder / "config.json").write_text(config)
    found = [d for d in analyze(path).diagnostics if d.code in ("E0714", "W0701")]
    assert [d.code for d in found] == ([code] if code else [])
    if code:
        assert found[0].span is not None and found[0].span.line == 2
    if code == "E0714" and config:  # the file, and for a readable one what is wrong in it
        assert "config.json" in found[0].notes[0]
        readable = config.startswith('{"model_type": "llama"') and config.endswith("}")
        assert ("llama config" in found[0].notes[0]) == readable
    if code == "W0701" and folder.startswith("models"):  # a folder is not fetched from the hub
        assert "huggingface-cli" not in found[0].help and "does not model" in found[0].message


def test_estimate_json(tmp_path, capsys):
    path = write(tmp_path, gc="true", length=1024)
    assert main(["estimate", str(path), "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    for key in ("peak_bytes_per_gpu", "tensor_peak_bytes_per_gpu", "budget_bytes_per_gpu", "fits",
                "cpu_bytes_per_node", "components"):
        assert key in obj
    assert obj["fits"] is True and obj["budget_bytes_per_gpu"] == 40 * GiB
    assert sum(obj["components"].values()) == obj["peak_bytes_per_gpu"]
    assert obj["tensor_peak_bytes_per_gpu"] < obj["peak_bytes_per_gpu"]


def test_estimate_json_with_errors_prints_them_on_stderr(tmp_path, capsys):
    path = write(tmp_path, gc="true", length=1024)
    assert main(["estimate", str(path), "--json", "--set", "model.dtype=%"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["ok"] is False
    assert "error[E0203]" in captured.err and "model.dtype=%" in captured.err


def test_estimate_table_and_exit_code(tmp_path, capsys):
    assert main(["estimate", str(write(tmp_path))]) == 1  # over budget
    out = capsys.readouterr().out
    assert "does NOT fit" in out and "activations" in out and "share" in out
    assert out.startswith("r: llama, 6.76B params (16,777,216 trainable)")  # 6,738,415,616 + the LoRA


@pytest.mark.parametrize("count, shown", [(77_824, "77.8K"), (979_072, "979K"), (494_032_768, "494M"),
                                          (999_999_999, "1.00B"), (70_553_706_496, "70.6B"), (405_000_000_000, "405B"),
                                          (999, "999")])
def test_parameter_counts_read_as_model_cards_round_them(count, shown):
    from ftc.compiler.memory.units import param_count

    assert param_count(count) == shown


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_estimate_of_a_recipe_without_a_model_block_is_a_diagnostic(tmp_path, capsys, json_flag):
    path = tmp_path / "no_model.ftspec"
    path.write_text('recipe "no-model"\n\nhardware {\n  gpu = l40s\n}\n')
    assert main(["estimate", str(path), *json_flag]) == 1
    captured = capsys.readouterr()
    assert "missing block `model`" in captured.err and 'add `model "org/name" { ... }`' in captured.err
    if json_flag:  # still one document on stdout: nothing estimated, and why
        document = json.loads(captured.out)
        assert document["ok"] is False and document["peak_bytes_per_gpu"] is None and document["fits"] is None
        assert "E0109" in [d["code"] for d in document["diagnostics"]]


def test_estimate_json_of_an_architecture_ftc_does_not_model(tmp_path, capsys):
    path = write(tmp_path, gc="true", length=512)
    path.write_text(path.read_text().replace("meta-llama/Llama-2-7b-hf", "models/m"))
    (tmp_path / "models" / "m").mkdir(parents=True)
    (tmp_path / "models" / "m" / "config.json").write_text('{"model_type": "t5", "d_model": 64}')
    assert main(["estimate", str(path), "--json"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["ok"] is False and document["peak_bytes_per_gpu"] is None
    assert document["budget_bytes_per_gpu"] == 40 * GiB  # the budget is known; the need is not
    assert [d["code"] for d in document["diagnostics"]] == ["W0701"]


@pytest.mark.parametrize("name", ["llama2-7b-lora-a100-40gb", "lora-ddp-2gpu", "llama2-7b-full-zero3"])
def test_examples_fit(name):
    root = Path(__file__).resolve().parent.parent
    assert [d.code for d in analyze(root / "examples" / f"{name}.ftspec").diagnostics if d.is_error] == []


def test_lowering_uses_the_estimator_for_autos(tmp_path):
    from ftc.compiler.pipeline import compile_recipe

    path = write(tmp_path, micro="auto", gc="auto", length=4096,
                 hardware='hardware {\n  gpu = a100-80gb\n  gpus_per_node = 2\n}\ndistributed deepspeed {\n  zero = auto\n}')
    path.write_text(path.read_text().replace("method lora", "method full"))
    result = compile_recipe(path, out_dir=tmp_path / "out")
    assert result.plan is not None, [d.message for d in result.diagnostics]
    plan = result.plan
    autos = {a["field"]: a for a in plan["auto"]}
    assert {"train.micro_batch", "distributed.zero", "train.gradient_checkpointing"} <= set(autos)
    assert all("no memory estimate" not in a["reason"] for a in autos.values())
    memory = plan["memory"]
    assert memory["fits"] and memory["peak_bytes_per_gpu"] <= 80 * GiB
    assert memory["setup"]["micro_batch"] == plan["batch"]["micro_batch"]
    assert memory["setup"]["zero"] == plan["distributed"]["zero"] == autos["distributed.zero"]["value"]
    assert memory["setup"]["gradient_checkpointing"] == autos["train.gradient_checkpointing"]["value"]


@pytest.mark.parametrize("hardware", [
    "hardware {\n  gpus_per_node = 2\n}",  # no budget: lowering's fixed rules decide the autos
    "hardware {\n  gpu = a100-80gb\n  gpus_per_node = 2\n}",  # the estimator decides them
    "hardware {\n  gpu = l4\n}\ndistributed deepspeed {\n  zero = auto\n}",
])
def test_estimate_shows_what_the_plan_records(tmp_path, capsys, hardware):
    """`ftc estimate` and `plan["memory"]` are one estimate of one setup: the autos as lowering decided them."""
    from ftc.compiler.pipeline import compile_recipe

    path = write(tmp_path, micro="auto", gc="auto", length=1024, hardware=hardware)
    plan = compile_recipe(path, out_dir=tmp_path / "out").plan
    assert plan is not None
    assert main(["estimate", str(path), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["peak_bytes_per_gpu"] == plan["memory"]["peak_bytes_per_gpu"]
    assert document["setup"] == plan["memory"]["setup"]
    assert document["setup"]["micro_batch"] == plan["batch"]["micro_batch"]
    assert document["auto"] == plan["auto"]


def test_plan_memory_is_null_on_cpu(tmp_path):
    from ftc.compiler.pipeline import compile_recipe

    path = write(tmp_path, micro="2", gc="false", length=512, hardware="hardware {\n  accelerator = cpu\n}")
    result = compile_recipe(path, out_dir=tmp_path / "out")
    assert result.plan is not None and result.plan["memory"] is None


def test_compile_path_imports_no_training_library():
    import subprocess
    import sys

    code = ("import sys, ftc.compiler.memory.budget, ftc.compiler.memory.auto, ftc.commands.estimate, "
            "ftc.compiler.models.resolve\n"
            "heavy = [m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'transformers', 'peft', 'deepspeed', 'accelerate')]\nprint(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_sdpa_on_a_model_without_it(tmp_path):
    path = write(tmp_path, gc="true", length=512)
    path.write_text(path.read_text().replace("meta-llama/Llama-2-7b-hf", "google/gemma-2-2b")
                    .replace("dtype = bf16", "dtype = bf16\n  attention = sdpa"))
    (d,) = errors(path)
    assert d.code == "E0708" and "eager" in d.help
    path.write_text(path.read_text().replace("attention = sdpa", "attention = eager"))
    assert errors(path) == []


def compiled_plan(path: Path, tmp_path: Path) -> dict:
    from ftc.compiler.pipeline import compile_recipe

    result = compile_recipe(path, (), out_dir=tmp_path / "out")
    assert result.plan is not None, [d.code for d in result.diagnostics]
    return result.plan


@pytest.mark.parametrize("model, attention, targets", [
    ("google/gemma-2-2b", "eager", ["q_proj", "k_proj", "v_proj", "o_proj"]),
    ("bigscience/bloomz-7b1", "eager", ["query_key_value", "dense"]),
    ("tiiuae/falcon-7b", "sdpa", ["query_key_value", "dense"]),
    ("microsoft/Phi-3-mini-4k-instruct", "sdpa", ["qkv_proj", "o_proj"]),
    ("facebook/opt-1.3b", "sdpa", ["q_proj", "k_proj", "v_proj", "out_proj"]),
    ("openai-community/gpt2", "sdpa", ["c_attn"]),
    ("meta-llama/Llama-2-7b-hf", "sdpa", ["q_proj", "k_proj", "v_proj", "o_proj"]),
    ("openai/gpt-oss-20b", "eager", ["q_proj", "k_proj", "v_proj", "o_proj"]),
    ("Qwen/Qwen3-8B", "sdpa", ["q_proj", "k_proj", "v_proj", "o_proj"]),
])
def test_unset_attention_and_targets_follow_the_architecture(tmp_path, model, attention, targets):
    """Not written: the family's attention projections and, where transformers has no sdpa, eager attention;
    each recorded with its reason, and the estimate counts the same adapters."""
    from ftc.compiler.memory.recipe import setup_from_recipe
    from ftc.compiler.models.params import lora_params

    path = write(tmp_path, gc="true", length=512, hardware="hardware {\n  gpu = h100-80gb\n}")
    path.write_text(path.read_text().replace("meta-llama/Llama-2-7b-hf", model))
    assert errors(path) == []
    plan = compiled_plan(path, tmp_path)
    assert plan["model"]["attention"] == attention and plan["method"]["lora"]["targets"] == targets
    decided = {a["field"]: a for a in plan["auto"]}
    assert decided["method.targets"]["value"] == targets and "attention projections" in decided["method.targets"]["reason"]
    assert ("model.attention" in decided) == (attention == "eager")
    setup = setup_from_recipe(analyze(path).recipe).setup
    assert setup.attention == attention and setup.lora_targets == tuple(targets)
    assert lora_params(setup.arch, 8, tuple(targets)) > 0


def test_written_targets_and_attention_are_kept(tmp_path):
    path = write(tmp_path, gc="true", length=512)
    path.write_text(path.read_text().replace("method lora {}", "method lora {\n  targets = [q_proj, v_proj]\n}")
                    .replace("dtype = bf16", "dtype = bf16\n  attention = eager"))
    plan = compiled_plan(path, tmp_path)
    assert plan["method"]["lora"]["targets"] == ["q_proj", "v_proj"] and plan["model"]["attention"] == "eager"
    assert not {"method.targets", "model.attention"} & {a["field"] for a in plan["auto"]}


@pytest.mark.parametrize("method, dtype, hardware, expected", [
    ("full", "fp16", 'hardware {\n  gpu = v100-32gb\n}', ["E0418"]),
    ("full", "fp16", 'hardware {\n  gpu = v100-32gb\n  gpus_per_node = 2\n}', ["E0705"]),  # DeepSpeed: fp32 master
    ("lora", "fp16", 'hardware {\n  gpu = v100-32gb\n}', []),
    ("lora", "fp16", 'hardware {\n  accelerator = cpu\n}', ["E0417"]),
    ("lora", "bf16", 'hardware {\n  gpu = v100-32gb\n}', ["E0711"]),
    ("lora", "bf16", 'hardware {\n  gpu = a10g\n}', []),
    ("lora", "fp32", 'hardware {\n  gpu = v100-32gb\n}', []),
])
def test_precision_against_the_hardware(tmp_path, method, dtype, hardware, expected):
    path = write(tmp_path, method=method, micro="1", gc="true", length=512, hardware=hardware)
    path.write_text(path.read_text().replace("dtype = bf16", f"dtype = {dtype}"))
    assert [d.code for d in errors(path)] == expected


def test_max_length_past_learned_positions_is_an_error_and_past_rotary_a_warning(tmp_path):
    path = write(tmp_path, gc="true", length=2048, hardware="hardware {\n  gpu = h100-80gb\n}")
    text = path.read_text()
    path.write_text(text.replace("meta-llama/Llama-2-7b-hf", "openai-community/gpt2"))
    (d,) = errors(path)
    assert d.code == "E0710" and "1024 learned position embeddings of a gpt2 model" in d.message
    assert d.span.line == text.splitlines().index("  max_length = 2048") + 1
    path.write_text(text.replace("meta-llama/Llama-2-7b-hf", "facebook/opt-1.3b").replace("2048", "4096"))
    assert [d.code for d in errors(path)] == ["E0710"] and "an opt model" in errors(path)[0].message
    path.write_text(text.replace("meta-llama/Llama-2-7b-hf", "tiiuae/falcon-7b").replace("2048", "4096"))
    assert errors(path) == [] and "W0707" in [d.code for d in analyze(path).diagnostics]


@pytest.mark.parametrize("hardware, version", [('hardware {\n  gpu = a100-80gb\n  gpus_per_node = 2\n}', 1),
                                               ('hardware {\n  accelerator = cpu\n  gpus_per_node = 2\n}', 2)])
def test_fsdp_version_follows_the_emitted_accelerate_config(tmp_path, hardware, version):
    from ftc.compiler.memory.recipe import setup_from_recipe

    path = write(tmp_path, gc="true", length=512, hardware=hardware)
    path.write_text(path.read_text() + "\ndistributed fsdp {}\n")
    setup = setup_from_recipe(analyze(path).recipe).setup
    assert setup.strategy == "fsdp" and setup.fsdp_version == version
    build = tmp_path / "build"
    assert main(["compile", str(path), "-o", str(build)]) == 0
    assert f"fsdp_version: {version}" in (build / "accelerate.yaml").read_text()


def test_off_peak_phases_in_estimate_json(tmp_path, capsys):
    path = write(tmp_path, gc="true", length=512, hardware='hardware {\n  gpu = a100-80gb\n  gpus_per_node = 2\n}')
    path.write_text(path.read_text().replace("method lora {}", "method full {}") + "\ndistributed fsdp {}\n")
    assert main(["estimate", str(path), "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    phases = {obj["peak_phase"], *obj["off_peak"]}
    assert phases == {"forward/backward", "optimizer step", "end of backward", "eval pass"}
    assert "gathered_params" not in obj["off_peak"].get("optimizer step", {})
    end = obj["components"] if obj["peak_phase"] == "end of backward" else obj["off_peak"]["end of backward"]
    assert {"gathered_params", "root_gradients"} <= set(end)


@pytest.mark.parametrize("model,gpu,expected", [
    ("meta-llama/Llama-2-7b-hf", "a100-80gb", "ddp"),  # the weights fit on every rank
    ("meta-llama/Llama-3.1-70B", "a100-80gb", "fsdp"),  # 131 GiB of weights cannot be replicated; sharded they fit
    ("meta-llama/Llama-3.1-70B", "a100-40gb", "fsdp"),  # neither fits; FSDP comes closest and the error says so
])
def test_distributed_auto_shards_lora_only_when_the_replicated_weights_do_not_fit(tmp_path, model, gpu, expected):
    from ftc.compiler.pipeline import compile_recipe

    path = write(tmp_path, micro="auto", gc="auto", length=2048,
                 hardware=f"hardware {{\n  gpu = {gpu}\n  gpus_per_node = 4\n}}")
    path.write_text(path.read_text().replace("meta-llama/Llama-2-7b-hf", model))
    recipe = analyze(path).recipe
    assert recipe.strategy() == expected
    strategy, reason = recipe.auto_strategy
    rm_ddp = setup_from_recipe(recipe, strategy="ddp")
    smallest = rm_ddp.setup.with_(micro_batch=1, gradient_checkpointing=True)
    budget = hardware.gpu_memory(gpu)
    assert (estimate(smallest).peak_bytes <= budget) == (expected == "ddp")
    assert f"{estimate(smallest).peak_bytes / GiB:.1f} GiB at micro_batch 1 and checkpointing on" in reason
    result = compile_recipe(path, out_dir=tmp_path / "out")
    if gpu == "a100-40gb":
        (d,) = [d for d in result.diagnostics if d.is_error]
        assert d.code == "E0705" and "distributed = fsdp and offload_params = cpu saves" in d.help
        assert "FSDP shards them" in reason and "still over" in reason
        return
    assert result.plan is not None, [d.message for d in result.diagnostics]
    assert result.plan["distributed"]["strategy"] == expected == result.plan["memory"]["setup"]["strategy"]
    (decision,) = [a for a in result.plan["auto"] if a["field"] == "distributed"]
    assert decision["reason"] == reason and result.plan["memory"]["fits"]
    accelerate = emit(result.plan)["accelerate.yaml"].decode()
    assert ("distributed_type: FSDP" in accelerate) == (expected == "fsdp")


@pytest.mark.parametrize("body,strategy", [("", None), ("distributed ddp {}", "ddp"), ("distributed auto {}", None)])
def test_distributed_auto_keeps_the_rule_without_a_budget_or_when_written(tmp_path, body, strategy):
    path = write(tmp_path, micro="auto", gc="auto", length=2048,
                 hardware=f"hardware {{\n  gpus_per_node = 4\n  memory_per_gpu = 40 GiB\n}}\n{body}")
    path.write_text(path.read_text().replace("meta-llama/Llama-2-7b-hf", "meta-llama/Llama-3.1-70B"))
    recipe = analyze(path).recipe
    if strategy:  # as written: DDP does not fit, the budget error says to shard
        assert recipe.auto_strategy is None and recipe.strategy() == "ddp"
        (d,) = errors(path)
        assert "distributed = fsdp saves" in d.help and "distributed = fsdp and" not in d.help
        return
    assert recipe.strategy() == "fsdp"
    path.write_text(path.read_text().replace("  memory_per_gpu = 40 GiB\n", ""))  # no budget: the rule
    recipe = analyze(path).recipe
    assert recipe.auto_strategy is None and recipe.strategy() == "ddp"


def test_distributed_auto_keeps_ddp_for_qlora(tmp_path):
    """QLoRA's 4-bit weights are not sharded here (E0419): auto stays on DDP and says why."""
    path = write(tmp_path, method="qlora", micro="auto", gc="auto", length=2048,
                 hardware="hardware {\n  gpu = l4\n  gpus_per_node = 4\n}")
    path.write_text(path.read_text().replace("meta-llama/Llama-2-7b-hf", "meta-llama/Llama-3.1-70B")
                    .replace("method qlora {}", "method qlora {\n  quant = nf4\n}"))
    recipe = analyze(path).recipe
    strategy, reason = recipe.auto_strategy
    assert strategy == recipe.strategy() == "ddp" and "4-bit weights are not sharded" in reason
    assert [d.code for d in errors(path)] == ["E0705"]


def _settled_peak(recipe) -> int:
    setup, _ = settled(setup_from_recipe(recipe))
    return estimate(setup).peak_bytes


@pytest.mark.parametrize("method,gpus,edit", [
    ("full", 4, "lora"),  # DeepSpeed under auto for full fine-tuning; FSDP for the LoRA it becomes
    ("lora", 2, "qlora"),  # FSDP under auto for LoRA; DDP for QLoRA (offered although FSDP cannot take it)
])
def test_a_method_fix_under_distributed_auto_is_estimated_with_the_strategy_auto_gives_it(tmp_path, method, gpus,
                                                                                          edit):
    path = write(tmp_path, method=method, micro="auto", gc="auto", length=2048,
                 hardware=f"hardware {{\n  gpu = a100-40gb\n  gpus_per_node = {gpus}\n}}")
    path.write_text(path.read_text().replace("meta-llama/Llama-2-7b-hf", "meta-llama/Llama-3.1-70B"))
    recipe = analyze(path).recipe
    setup, _ = settled(setup_from_recipe(recipe))
    budget = hardware.gpu_memory("a100-40gb")
    (fix,) = [f for f in suggest_fixes(setup, budget, 16, limit=20, strategy_written=False)
              if f.field == "method" and f.value == edit]
    overrides = ("method=" + edit,) + (("method.quant=nf4",) if edit == "qlora" else ())
    edited = analyze(path, overrides).recipe
    assert edited.strategy() != recipe.strategy()
    assert _settled_peak(edited) == budget - fix.spare_bytes
    (d,) = errors(path)
    assert f"method = {edit} saves {gib(fix.saved_bytes)}" in d.help
    written = {"full": "distributed deepspeed {}", "lora": "distributed fsdp {}"}[method]
    path.write_text(path.read_text() + written + "\n")  # the strategy as written stays: the fix keeps it too
    (d,) = errors(path)
    assert f"method = {edit} saves {gib(fix.saved_bytes)}" not in d.help
