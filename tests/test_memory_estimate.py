"""The estimator against published formulas (shared/memory_formulas.md) and measured runs (the CSV)."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ftc.compiler.memory.estimate import estimate
from ftc.compiler.memory.hardware import gpu_memory
from ftc.compiler.memory.setup import MemorySetup
from ftc.compiler.models.resolve import resolve_model

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import estimator_accuracy  # noqa: E402  (the calibration rows and their comparison, torch-free)

GiB = 2**30


def arch(name="meta-llama/Llama-2-7b-hf"):
    return resolve_model(name).architecture


L2 = arch()
P = L2.total_params


def states(**fields) -> int:
    return estimate(MemorySetup(L2, **fields)).model_state_bytes


# ZeRO paper (arXiv 1910.02054), fp16 mixed precision with K = 12: 16Ψ, 4Ψ + 12Ψ/N, 2Ψ + 14Ψ/N, 16Ψ/N.
@pytest.mark.parametrize("zero, expected", [
    (0, 16 * P), (1, 4 * P + 12 * P // 64), (2, 2 * P + 14 * P // 64), (3, 16 * P // 64)])
def test_zero_stages_match_the_paper(zero, expected):
    got = states(method="full", dtype="fp16", mixed_precision="fp16", strategy="deepspeed", zero=zero, dp_world=64,
                 gpus_per_node=8)
    assert abs(got - expected) <= 8  # integer division per component


def test_bytes_per_param_regimes():
    # memory_formulas.md §4: pure bf16 + AdamW 8 B, fp32 + AdamW 16 B, pure bf16 + 8-bit AdamW about 6 B
    assert states(method="full", dtype="bf16") == 8 * P
    assert states(method="full", dtype="fp32", mixed_precision="no") == 16 * P
    assert states(method="full", dtype="bf16", optimizer="adamw_8bit") == pytest.approx(6 * P, rel=0.01)
    assert states(method="full", optimizer="sgd") == 4 * P  # weights + grads, no momentum state


def test_lora_states_are_16_bytes_per_adapter_param():
    lora = 4_194_304  # Llama-2-7B, q and v, r = 8 (litgpt table)
    got = states(method="lora", lora_rank=8, lora_targets=("q_proj", "v_proj"))
    assert got == 2 * P + 16 * lora


def test_qlora_weights_llama3_8b():
    # §2: 6.98e9 NF4-DQ linears (0.5159 B) + 1.05e9 16-bit embedding/head ≈ 5.3 GiB
    est = estimate(MemorySetup(arch("meta-llama/Meta-Llama-3-8B"), method="qlora", kbit_fp32_upcast=False))
    assert est.component("weights") / GiB == pytest.approx(5.3, abs=0.05)
    upcast = estimate(MemorySetup(arch("meta-llama/Meta-Llama-3-8B"), method="qlora"))
    assert upcast.component("weights") - est.component("weights") == 2 * (upcast.params_total - 6_979_321_856 -
                                                                          upcast.params_trainable)


def test_activation_formula_llama2_7b():
    # §7c: b·s·(12h + 4h_kv + 8I) = 153,600 B/token/layer; transformers' RMSNorm also keeps an fp32 copy of
    # each of its two inputs (2 × 4h) and its rstd, and SDPA a fp32 log-sum-exp per head
    est = estimate(MemorySetup(L2, method="full", micro_batch=1, seq_len=1000, padded_batches=False))
    final_norm = 1000 * (8 * 4096 + 4)
    per_layer = 153_600 + 2 * 4 * 4096 + 2 * 4 + 4 * 32
    assert est.component("activations") == 32 * 1000 * per_layer + final_norm


def test_checkpointing_keeps_layer_inputs_only():
    est = estimate(MemorySetup(L2, method="full", micro_batch=2, seq_len=1024, gradient_checkpointing=True))
    assert est.component("activations") == 32 * 2 * 1024 * 4096 * 2 + 2 * 1024 * (8 * 4096 + 4)


def test_logits_term_is_twelve_bytes_per_element_in_training_and_ten_in_eval():
    a = arch("meta-llama/Meta-Llama-3-8B")
    est = estimate(MemorySetup(a, method="lora", micro_batch=1, seq_len=8192, gradient_checkpointing=True,
                               evaluates=True))
    # backward of log-softmax: saved output + incoming and outgoing gradients, fp32 (test_memory_loss.py)
    assert est.component("logits_loss") == 8192 * 128_256 * 12
    assert est.component("eval_pass") >= 8192 * 128_256 * 10  # no backward: bf16 logits + fp32 upcast + log-softmax


def test_a_loop_holding_fp32_logits_adds_four_bytes_per_logit_to_the_loss_peak():
    a = arch("meta-llama/Meta-Llama-3-8B")
    setup = MemorySetup(a, method="lora", micro_batch=1, seq_len=8192, gradient_checkpointing=True)
    held = estimate(setup.with_(loop_keeps_fp32_logits=True)).component("logits_loss")
    assert held - estimate(setup).component("logits_loss") == 8192 * 128_256 * 4


def test_deepspeed_reduce_buckets_are_full_size_whatever_trains():
    lora = dict(method="lora", strategy="deepspeed", dp_world=8, gpus_per_node=8)
    assert estimate(MemorySetup(L2, zero=3, **lora)).component("zero_buckets") == 500_000_000 * 2
    assert estimate(MemorySetup(L2, zero=2, **lora)).component("zero_buckets") == 2 * 500_000_000 * 2
    fp32 = MemorySetup(L2, zero=3, dtype="fp32", mixed_precision="no", **lora)
    assert estimate(fp32).component("zero_buckets") == 500_000_000 * 4


def test_deepspeed_stage3_updates_one_sub_group_at_a_time():
    """The update's fp32 gradient and AdamW temporary cover one sub-group (sub_group_size 1e9 elements),
    so on few ranks they stop growing with the partition; stages 1-2 update the whole partition."""
    l70 = arch("meta-llama/Llama-2-70b-hf")
    full = dict(method="full", strategy="deepspeed", micro_batch=1, seq_len=64, sequences_per_rank=1)

    def step(zero, world):
        setup = MemorySetup(l70, zero=zero, dp_world=world, gpus_per_node=8, **full)
        return estimate(setup).component("optimizer_step")

    one_group = (8 * 1_000_000_000, 8 * (1_000_000_000 + l70.vocab * l70.hidden))  # + one tensor's partition
    assert one_group[0] <= step(3, 4) <= step(3, 2) <= one_group[1] < 8 * l70.total_params // 4
    assert step(3, 128) == 8 * (l70.total_params // 128)  # a partition below it is updated whole
    assert step(2, 4) == 6 * (l70.total_params // 4)  # its 16-bit gradient freed as the fp32 copy is made
    assert step(2, 2) > step(3, 2)  # stage 2 updates the whole, larger partition at once


def test_bitsandbytes_quant_state_stays_whole_on_every_rank():
    qlora = dict(method="qlora", strategy="fsdp", dp_world=2, gpus_per_node=2, kbit_fp32_upcast=False)
    single = estimate(MemorySetup(L2, method="qlora", kbit_fp32_upcast=False))
    sharded = estimate(MemorySetup(L2, **qlora))
    offloaded = estimate(MemorySetup(L2, offload_params="cpu", **qlora))
    state = sharded.component("quant_state")
    assert state == offloaded.component("quant_state") > 0
    assert single.component("weights") == pytest.approx(2 * sharded.component("weights") + state, abs=2)
    assert offloaded.component("weights") == 0
    torchao = estimate(MemorySetup(L2, quant_library="torchao", **qlora))
    assert torchao.component("quant_state") == 0
    assert torchao.component("weights") == pytest.approx(single.component("weights") / 2, abs=2)


def test_eager_attention_adds_the_quadratic_term():
    sdpa = estimate(MemorySetup(L2, method="lora", seq_len=4096, padded_batches=False))
    eager = estimate(MemorySetup(L2, method="lora", seq_len=4096, attention="eager"))
    # fp32 softmax output + 16-bit probabilities (6 B per score) replace the fp32 log-sum-exp
    assert eager.component("activations") - sdpa.component("activations") == 32 * 4096 * (6 * 32 * 4096 - 4 * 32)


def test_components_sum_to_the_peak_and_paged_state_is_outside():
    est = estimate(MemorySetup(L2, method="full", optimizer="paged_adamw_8bit", micro_batch=2, seq_len=2048))
    assert sum(c.bytes for c in est.components) == est.peak_bytes
    assert est.paged_bytes > 0 and est.component("optimizer_states") == 0
    assert est.tensor_peak_bytes < est.peak_bytes


def test_offload_moves_bytes_to_the_host():
    base = dict(method="full", strategy="deepspeed", zero=3, dp_world=8, gpus_per_node=8)
    on_gpu = estimate(MemorySetup(L2, **base))
    off = estimate(MemorySetup(L2, **base, offload_optimizer="cpu"))
    assert off.peak_bytes < on_gpu.peak_bytes
    assert off.cpu_bytes_per_node > on_gpu.cpu_bytes_per_node + 8 * 12 * P // 8  # fp32 master + Adam, 8 ranks


def test_host_ram_is_the_larger_of_loading_and_training():
    """The checkpoint is read (model_load) before the offloaded training state exists: the two phases
    are not added. ZeRO-3's offloaded weight partitions exist in both."""
    base = dict(method="full", strategy="deepspeed", zero=3, dp_world=16, gpus_per_node=8, dtype="bf16")
    offloaded = estimate(MemorySetup(L2, **base, offload_optimizer="cpu", offload_params="cpu"))
    host = {c.name: c.bytes for c in offloaded.host}
    loading = host["model_load"] + host["weights"]
    training = sum(b for name, b in host.items() if name != "model_load")
    assert training > loading and offloaded.cpu_bytes_per_node == training < sum(host.values())
    assert offloaded.host_peak_phase == "training"
    assert host["model_load"] == 2 * P and host["weights"] == 2 * P // 2  # the whole checkpoint; half the shards
    single = estimate(MemorySetup(L2, method="lora", dtype="bf16"))  # nothing offloaded: loading alone
    assert single.cpu_bytes_per_node == 2 * P and single.host_peak_phase == "loading"


@pytest.mark.parametrize("strategy, extra, loaders", [
    ("ddp", {}, 8), ("deepspeed", {"zero": 2}, 8), ("deepspeed", {"zero": 3}, 1), ("fsdp", {}, 1),
])
def test_a_checkpoint_in_another_dtype_is_converted_by_each_loading_process(strategy, extra, loaders):
    """Llama-2's checkpoint is fp16: loading it as bf16 copies it into each loading process's memory;
    as fp16 the file is memory-mapped and the node's processes share its pages."""
    base = dict(method="lora", strategy=strategy, dp_world=8, gpus_per_node=8, **extra)
    load = {c.name: c for c in estimate(MemorySetup(L2, dtype="bf16", **base)).host}["model_load"]
    assert load.bytes == loaders * 2 * P and "converted to bf16" in load.note
    mapped = {c.name: c for c in estimate(MemorySetup(L2, dtype="fp16", **base)).host}["model_load"]
    assert mapped.bytes == 2 * P and "memory-mapped" in mapped.note


def test_unmodeled_is_named():
    assert estimate(MemorySetup(L2)).unmodeled


def test_fsdp_offload_of_4bit_weights_carries_the_unattributed_published_gap():
    setup = MemorySetup(L2, method="qlora", strategy="fsdp", dp_world=2, gpus_per_node=2)
    assert not any("offload of frozen 4-bit" in line for line in estimate(setup).unmodeled)
    offloaded = estimate(setup.with_(offload_params="cpu")).unmodeled
    assert any("offload of frozen 4-bit" in line and "docs/memory.md" in line for line in offloaded)


@settings(max_examples=40, deadline=None)
@given(mb=st.integers(1, 8), seq=st.sampled_from([256, 1024, 4096]), gc=st.booleans(),
       method=st.sampled_from(["full", "lora", "qlora"]), zero=st.integers(0, 3))
def test_monotone_in_batch_length_and_sharding(mb, seq, gc, method, zero):
    s = MemorySetup(L2, method=method, micro_batch=mb, seq_len=seq, gradient_checkpointing=gc,
                    strategy="deepspeed", zero=zero, dp_world=8, gpus_per_node=8)
    est = estimate(s)
    peak = est.peak_bytes
    forward = sum(c.bytes for c in est.components + est.off_peak if c.name in ("activations", "logits_loss"))
    bigger = estimate(s.with_(micro_batch=mb + 1))
    assert bigger.peak_bytes >= peak  # the peak may stay at the optimizer step
    assert sum(c.bytes for c in bigger.components + bigger.off_peak
               if c.name in ("activations", "logits_loss")) > forward
    assert estimate(s.with_(seq_len=seq * 2)).peak_bytes >= peak
    if not gc:
        assert estimate(s.with_(gradient_checkpointing=True)).peak_bytes <= peak
    if zero < 3 and method == "full":
        assert estimate(s.with_(zero=zero + 1)).peak_bytes < peak


# Measured runs from shared/data/memory_calibration.csv (torch allocated/active GiB).
@pytest.mark.parametrize("case, model, fields, measured", [
    ("TT10", "meta-llama/Llama-3.2-3B", dict(method="full", micro_batch=2, seq_len=4096), 60.0),
    ("TT14", "meta-llama/Llama-3.2-3B", dict(method="full", micro_batch=2, seq_len=4096, chunked_loss=True,
                                             gradient_checkpointing=True, optimizer_in_backward=True), 23.1),
    ("TT07", "meta-llama/Llama-3.1-70B", dict(method="lora", lora_rank=16, lora_targets=("q_proj", "k_proj", "v_proj"),
                                              micro_batch=2, seq_len=2048, gradient_checkpointing=True,
                                              chunked_loss=True, strategy="fsdp", dp_world=8, gpus_per_node=8), 27.6),
])
def test_published_measurements(case, model, fields, measured):
    torchtune = dict(dtype="bf16", mixed_precision="no", adapter_dtype="bf16", kbit_fp32_upcast=False)
    est = estimate(MemorySetup(arch(model), **torchtune, **fields)).tensor_peak_bytes / GiB
    assert -0.15 <= (est - measured) / measured <= 0.25, (case, est)


# Answer.AI's FSDP-QLoRA benchmarks on 2 x 24 GB (bench/estimator_accuracy.py, INDEPENDENT): torch counters.
@pytest.mark.parametrize("case", ["AA04a", "AA09", "AA10"])  # 7B LoRA allocated, 7B QLoRA NO_SHARD, 70B offload
def test_answer_ai_fsdp_qlora_measurements(case):
    model, metric, fields, _, measured = estimator_accuracy.INDEPENDENT[case]
    value, _ = estimator_accuracy.ours(case, model, metric, fields)
    assert -0.12 <= value / measured - 1 <= 0.10


def test_gpu_catalog():
    assert gpu_memory("a100-80gb") == 80 * GiB
    assert gpu_memory("NVIDIA A100-40GB") == 40 * GiB
    assert gpu_memory("RTX 4090") > 23 * GiB
    for name in ("h100-80gb", "h200", "l4", "l40s", "a10g", "t4", "v100-16gb", "v100-32gb", "rtx-3090",
                 "rtx-a6000", "mi250", "mi300x"):
        assert gpu_memory(name) >= 15 * GiB
    # nvidia-smi's totals: 183359 MiB on a B200, 32607 MiB on an RTX 5090
    assert gpu_memory("NVIDIA B200") == 183359 * 2**20 and gpu_memory("GeForce RTX 5090") == 32607 * 2**20
    with pytest.raises(KeyError):
        gpu_memory("a100")  # ambiguous


def test_fsdp_sharding_variants():
    base = MemorySetup(L2, method="full", strategy="fsdp", dp_world=16, gpus_per_node=8)
    full = estimate(base).component("weights")
    assert full == 2 * P // 16
    assert estimate(base.with_(fsdp_sharding="hybrid_shard")).component("weights") == 2 * P // 8
    assert estimate(base.with_(fsdp_sharding="shard_grad_op")).component("weights") == 2 * P
    assert estimate(base.with_(fsdp_sharding="no_shard")).component("optimizer_states") == 4 * P


def test_nvme_offload_does_not_need_host_ram():
    base = dict(method="full", strategy="deepspeed", zero=3, dp_world=8, gpus_per_node=8)
    cpu = estimate(MemorySetup(L2, **base, offload_optimizer="cpu", offload_params="cpu"))
    nvme = estimate(MemorySetup(L2, **base, offload_optimizer="nvme", offload_params="nvme"))
    assert nvme.peak_bytes == cpu.peak_bytes
    assert nvme.cpu_bytes_per_node < cpu.cpu_bytes_per_node
    assert sum(c.bytes for c in nvme.nvme) >= 16 * P  # weights, grads, master weights and Adam: all on NVMe


CATALOG_IDS = sorted({c["model_type"] + "|" + n for n, c in __import__(
    "ftc.compiler.models.resolve", fromlist=["catalog"]).catalog().items()})


@settings(max_examples=60, deadline=None)
@given(model=st.sampled_from(CATALOG_IDS), method=st.sampled_from(["full", "lora", "qlora"]),
       optimizer=st.sampled_from(["adamw", "adamw_8bit", "paged_adamw_8bit", "sgd", "adafactor"]),
       strategy=st.sampled_from(["none", "ddp", "deepspeed", "fsdp"]), zero=st.integers(0, 3),
       offload=st.sampled_from(["none", "cpu", "nvme"]), world=st.sampled_from([1, 2, 8, 64]),
       attention=st.sampled_from(["sdpa", "eager", "flash_attention_2"]), dropout=st.sampled_from([0.0, 0.1]),
       dtype=st.sampled_from(["bf16", "fp16", "fp32"]), evaluates=st.booleans(), gc=st.booleans())
def test_every_setup_estimates_consistently(model, method, optimizer, strategy, zero, offload, world, attention,
                                           dropout, dtype, evaluates, gc):
    setup = MemorySetup(arch(model.split("|", 1)[1]), method=method, optimizer=optimizer, strategy=strategy,
                        zero=zero, offload_optimizer=offload, offload_params=offload if zero == 3 else "none",
                        dp_world=world, gpus_per_node=min(world, 8), nodes=max(1, world // 8), attention=attention,
                        lora_dropout=dropout, lora_targets="all_linear", dtype=dtype,
                        mixed_precision="no" if dtype == "fp32" else dtype, evaluates=evaluates,
                        gradient_checkpointing=gc, micro_batch=2, seq_len=512)
    est = estimate(setup)
    assert all(c.bytes >= 0 for c in est.components + est.off_peak + est.host)
    assert sum(c.bytes for c in est.components) == est.peak_bytes
    assert est.tensor_peak_bytes < est.peak_bytes and est.cpu_bytes_per_node > 0


def test_deepspeed_bf16_stage0_accumulates_fp32_gradients():
    fp16 = states(method="full", dtype="fp16", mixed_precision="fp16", strategy="deepspeed", zero=0, dp_world=2)
    bf16 = states(method="full", dtype="bf16", mixed_precision="bf16", strategy="deepspeed", zero=0, dp_world=2)
    assert bf16 - fp16 == 2 * P


def test_gradients_are_absent_at_the_start_of_backward_unless_they_accumulate():
    long = dict(method="full", micro_batch=4, seq_len=4096)  # activations dominate: the peak is backward's start
    once = estimate(MemorySetup(L2, sequences_per_rank=4, **long))
    accumulating = estimate(MemorySetup(L2, sequences_per_rank=16, **long))
    grads = 2 * P
    assert once.peak_phase == accumulating.peak_phase == "forward/backward"
    assert once.component("gradients") == accumulating.component("gradients") == grads
    assert "gradients" in [c.name for c in once.off_peak] and "gradients" in [c.name for c in accumulating.components]
    assert accumulating.tensor_peak_bytes - once.tensor_peak_bytes == grads
    short = estimate(MemorySetup(L2, method="full", micro_batch=1, seq_len=64, sequences_per_rank=1))
    assert short.peak_phase == "optimizer step" and "gradients" in [c.name for c in short.components]
    deepspeed = estimate(MemorySetup(L2, strategy="deepspeed", zero=0, sequences_per_rank=4, **long))
    assert "gradients" in [c.name for c in deepspeed.components]  # preallocated buffers


def test_tied_embedding_gradients_meet_at_the_end_of_backward():
    tied = arch("meta-llama/Llama-3.2-1B")
    est = estimate(MemorySetup(tied, method="full", micro_batch=1, seq_len=64, sequences_per_rank=1))
    assert est.component("tied_gradient_sum") == 2 * tied.vocab * tied.hidden * 2
    # at full depth the optimizer's temporary (one state per parameter) is larger; a shallow copy flips it
    assert est.peak_phase == "optimizer step"
    two_layers = estimate(MemorySetup(replace(tied, layers=2), method="full", micro_batch=1, seq_len=64,
                                      sequences_per_rank=1))
    assert two_layers.peak_phase == "end of backward"
    untied = estimate(MemorySetup(L2, method="full", micro_batch=1, seq_len=64, sequences_per_rank=1))
    assert untied.component("tied_gradient_sum") == 0


def test_fsdp1_keeps_its_root_unit_gathered_and_fsdp2_does_not():
    v_h = L2.vocab * L2.hidden
    common = dict(method="lora", strategy="fsdp", dp_world=8, gpus_per_node=8, micro_batch=1, seq_len=512)
    fsdp1 = estimate(MemorySetup(L2, fsdp_version=1, **common))
    fsdp2 = estimate(MemorySetup(L2, fsdp_version=2, **common))
    layer = L2.layer_params * 2
    assert fsdp1.component("gathered_params") == 2 * layer + (2 * v_h + L2.hidden) * 2  # embed + head + norm
    assert fsdp2.component("gathered_params") == 2 * max(layer, v_h * 2)
    assert fsdp1.component("unsharded_gradients") == fsdp2.component("unsharded_gradients") == 0  # frozen
    # gathered only while layers run: the optimizer step's phase holds none
    full = estimate(MemorySetup(L2, **dict(common, method="full", sequences_per_rank=1)))
    assert full.peak_phase != "optimizer step"
    assert {c.name for c in full.off_peak if c.phase == "optimizer step"} == {"gradients", "optimizer_step"}
    # full fine-tuning: at the end of backward the root's two gradient copies meet while it is gathered
    assert full.component("root_gradients") == 2 * (2 * v_h + L2.hidden) * 2
    assert fsdp2.component("root_gradients") == 0
