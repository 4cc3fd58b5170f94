"""Measure the real peak memory of a few training setups and print it next to the estimate.

Models are random-initialized from the catalog configs (no download), loaded the way the runtime
loads them (bf16 weights, peft LoRA with fp32 adapters, bitsandbytes NF4 with
prepare_model_for_kbit_training), and trained for a few steps with the loop the Trainer runs
(autocast, loss.backward, foreach AdamW, zero_grad(set_to_none)), one micro-batch per step.

On CUDA the counters are torch.cuda.max_memory_allocated / max_memory_reserved. On CPU (no GPU
needed) live tensors are counted by `live_tensors.LiveTensorBytes`, which counts what the CUDA
allocator's `allocated` counter would; `--layers N` keeps N decoder layers so big architectures
train in seconds (every per-layer term of the estimate scales with the depth, so the comparison holds).

    python bench/memory_measure.py [--device cpu|cuda] [--layers N] [--seq-len N] [--cases NAME ...] [--steps 3]
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from pathlib import Path

from ftc.compiler.memory.estimate import estimate
from ftc.compiler.memory.setup import MemorySetup
from ftc.compiler.models.arch import from_config
from ftc.compiler.models.resolve import catalog

GiB = 2**30

CASES = {
    "qwen0.5b-full": ("Qwen/Qwen2.5-0.5B", dict(method="full", micro_batch=4, seq_len=1024)),
    "qwen0.5b-full-gc": ("Qwen/Qwen2.5-0.5B", dict(method="full", micro_batch=8, seq_len=2048,
                                                   gradient_checkpointing=True)),
    "llama1b-full": ("meta-llama/Llama-3.2-1B", dict(method="full", micro_batch=2, seq_len=2048)),
    "llama1b-lora": ("meta-llama/Llama-3.2-1B", dict(method="lora", lora_rank=16, micro_batch=4, seq_len=2048,
                                                     lora_dropout=0.05)),
    "qwen3-1.7b-lora": ("Qwen/Qwen3-1.7B", dict(method="lora", lora_rank=16, micro_batch=4, seq_len=2048,
                                                 lora_targets="all_linear", lora_dropout=0.05)),
    "tinyllama-qlora": ("TinyLlama/TinyLlama-1.1B-Chat-v1.0", dict(method="qlora", lora_rank=16, micro_batch=4,
                                                                   seq_len=2048, gradient_checkpointing=True,
                                                                   lora_targets="all_linear")),
    "llama8b-lora-gc": ("meta-llama/Llama-3.1-8B", dict(method="lora", lora_rank=16, micro_batch=4, seq_len=4096,
                                                        gradient_checkpointing=True)),
    "llama8b-qlora": ("meta-llama/Llama-3.1-8B", dict(method="qlora", lora_rank=16, micro_batch=2, seq_len=2048,
                                                      gradient_checkpointing=True, lora_targets="all_linear")),
    # LayerNorm families, where CUDA autocast's fp32 LayerNorm and gelu_new keep more than on the CPU
    "gpt2-medium-full": ("openai-community/gpt2-medium", dict(method="full", micro_batch=4, seq_len=1024)),
    "opt1.3b-full": ("facebook/opt-1.3b", dict(method="full", micro_batch=2, seq_len=2048)),
    "phi2-lora": ("microsoft/phi-2", dict(method="lora", lora_rank=16, micro_batch=4, seq_len=2048,
                                          lora_targets="all_linear")),
}


def model_config(model_id: str, layers: int | None) -> dict:
    """The catalog config, with `layers` decoder layers when given."""
    config = dict(catalog()[model_id.lower()])
    if layers:
        for key in ("num_hidden_layers", "n_layer", "num_layers"):
            if key in config:
                config[key] = layers
    return config


def build(config: dict, fields: dict, device: str, reentrant: bool = False):
    """The model as the runtime trains it; QLoRA with `kbit_fp32_upcast=False` as a sharded 4-bit model is
    loaded instead (quant storage in bf16 so FSDP can flatten it, no k-bit preparation, as TRL skips it)."""
    import torch
    import transformers

    config = dict(config)
    model_type = config.pop("model_type")
    hf_config = transformers.AutoConfig.for_model(model_type, **config)
    vocab = hf_config.get_text_config().vocab_size  # a multimodal config keeps it in its text config
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
        value = getattr(hf_config, key, None)
        if isinstance(value, int) and value >= vocab:
            setattr(hf_config, key, None)
    hf_config.use_cache = False
    method = fields.get("method", "full")
    prepared = method == "qlora" and fields.get("kbit_fp32_upcast", True)  # prepare_model_for_kbit_training
    if method == "qlora":
        import tempfile

        from peft import prepare_model_for_kbit_training
        from transformers import BitsAndBytesConfig

        folder = tempfile.mkdtemp(prefix="ftc-measure-")
        model = transformers.AutoModelForCausalLM.from_config(hf_config, dtype=torch.bfloat16)
        model.save_pretrained(folder)
        del model
        model = transformers.AutoModelForCausalLM.from_pretrained(
            folder, dtype=torch.bfloat16, attn_implementation=fields.get("attention", "sdpa"), device_map={"": 0 if device == "cuda" else "cpu"},
            quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                   bnb_4bit_use_double_quant=True,
                                                   bnb_4bit_compute_dtype=torch.bfloat16,
                                                   bnb_4bit_quant_storage=torch.uint8 if prepared else torch.bfloat16))
        if prepared:
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=fields.get(
                "gradient_checkpointing", False), gradient_checkpointing_kwargs={"use_reentrant": reentrant})
    else:
        dtype = torch.float32 if fields.get("dtype") == "fp32" else torch.bfloat16
        with torch.device(device):
            model = transformers.AutoModelForCausalLM.from_config(hf_config, dtype=dtype,
                                                                  attn_implementation=fields.get("attention", "sdpa"))
    if fields.get("gradient_checkpointing") and not prepared:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": reentrant})
        if method != "full":
            model.enable_input_require_grads()
    if method in ("lora", "qlora"):
        from peft import LoraConfig, get_peft_model

        targets = fields.get("lora_targets", ("q_proj", "k_proj", "v_proj", "o_proj"))
        model = get_peft_model(model, LoraConfig(
            r=fields.get("lora_rank", 16), lora_alpha=32, lora_dropout=fields.get("lora_dropout", 0.0),
            target_modules="all-linear" if targets == "all_linear" else list(targets), task_type="CAUSAL_LM"))
    return model, vocab


def train_steps(model, optimizer, vocab: int, b: int, s: int, steps: int, device: str) -> None:
    """The Trainer's loop: autocast forward, backward, optimizer step, zero_grad(set_to_none)."""
    import torch

    for _ in range(steps):
        ids = torch.randint(0, vocab, (b, s), device=device)
        with torch.autocast(device, dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def measure(config: dict, fields: dict, steps: int, device: str) -> tuple[int, int | None]:
    """(peak allocated, peak reserved or None on CPU) over `steps` training steps."""
    import torch

    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model, vocab = build(config, fields, device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5, foreach=True)  # what transformers' adamw_torch gets on CUDA
    b, s = fields["micro_batch"], fields["seq_len"]
    counter = None
    if device == "cpu":
        from live_tensors import LiveTensorBytes

        counter = LiveTensorBytes()
        counter.track(list(model.parameters()) + list(model.buffers()))
        counter.__enter__()
    try:
        train_steps(model, optimizer, vocab, b, s, steps, device)
    finally:
        if counter is not None:
            counter.__exit__(None, None, None)
    if device == "cuda":
        torch.cuda.synchronize()
        result = torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()
    else:
        result = counter.peak, None
    del model, optimizer, params
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    return result


def estimate_for(config: dict, fields: dict, device: str = "cuda"):
    """The estimator on the same architecture and loop (one micro-batch per optimizer step), for the
    device's autocast (CUDA's runs LayerNorm, pow and softmax in fp32, the CPU's does not)."""
    setup = MemorySetup(from_config(config), dtype="bf16", mixed_precision="bf16", padded_batches=False,
                        sequences_per_rank=fields["micro_batch"], device=device,
                        **fields)  # full-length rows, no mask
    return estimate(setup)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")
    parser.add_argument("--layers", type=int, default=None, help="decoder layers kept (default: all on cuda, 2 on cpu)")
    parser.add_argument("--seq-len", type=int, default=None, help="tokens per sequence (default: the case's on cuda, "
                        "256 on cpu, to keep big-vocabulary logits within a laptop's memory)")
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: use --device cpu", file=sys.stderr)
        return 2
    layers = args.layers if args.layers is not None else (2 if device == "cpu" else None)
    if device == "cpu":
        sys.path.insert(0, str(Path(__file__).parent))
        torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = []
    print(f"device {device}" + (f", {layers} decoder layers per model" if layers else "")
          + (f", {args.seq_len or 256} tokens per sequence" if device == "cpu" or args.seq_len else ""))
    print(f"{'case':18} {'alloc':>8} {'est':>8} {'err':>7}   {'reserved':>8} {'est':>8} {'err':>7}")
    for name in args.cases:
        model_id, fields = CASES[name]
        seq_len = args.seq_len or (256 if device == "cpu" else None)
        fields = dict(fields, seq_len=seq_len) if seq_len else fields
        config = model_config(model_id, layers)
        if device == "cpu" and config["model_type"] == "gpt2":  # the CPU's SDPA math path keeps an s² mask
            config["attn_pdrop"] = 0.0  # for attention dropout that the GPU kernels apply in-kernel
        est = estimate_for(config, fields, device)
        try:
            allocated, reserved = measure(config, fields, args.steps, device)
        except torch.cuda.OutOfMemoryError:
            print(f"{name:18} OOM (estimate {est.tensor_peak_bytes / GiB:.2f} GiB)")
            continue
        est_alloc = est.tensor_peak_bytes
        est_res = est.tensor_peak_bytes + est.component("allocator_slack")
        rows.append({"case": name, "device": device, "layers": layers, "seq_len": fields["seq_len"], "allocated": allocated, "reserved": reserved,
                     "estimate_allocated": est_alloc, "estimate_reserved": est_res})
        reserved_cols = (f"{reserved / GiB:8.2f} {est_res / GiB:8.2f} {(est_res - reserved) / reserved:+7.1%}"
                         if reserved else f"{'-':>8} {'-':>8} {'-':>7}")
        print(f"{name:18} {allocated / GiB:8.2f} {est_alloc / GiB:8.2f} {(est_alloc - allocated) / allocated:+7.1%}   "
              f"{reserved_cols}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
