"""Measure real peak GPU memory for a few recipes and print it next to the estimate.

Needs a CUDA GPU. Models are random-initialized from the catalog configs (no download), loaded the
way the runtime loads them (bf16 weights, peft LoRA with fp32 adapters, bitsandbytes NF4 with
prepare_model_for_kbit_training), and trained for a few steps with the loop the Trainer runs
(autocast, loss.backward, foreach AdamW, zero_grad(set_to_none)).

    python bench/gpu_memory_measure.py [--cases NAME ...] [--steps 3]

Prints, per case: torch.cuda.max_memory_allocated vs the estimator's live-tensor peak, and
max_memory_reserved vs live tensors + allocator slack.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys

from ftc.compiler.memory.estimate import estimate
from ftc.compiler.memory.setup import MemorySetup
from ftc.compiler.models.resolve import catalog, resolve_model

GiB = 2**30

CASES = {
    "qwen0.5b-full": ("Qwen/Qwen2.5-0.5B", dict(method="full", micro_batch=4, seq_len=1024)),
    "qwen0.5b-full-gc": ("Qwen/Qwen2.5-0.5B", dict(method="full", micro_batch=8, seq_len=2048,
                                                   gradient_checkpointing=True)),
    "llama1b-full": ("meta-llama/Llama-3.2-1B", dict(method="full", micro_batch=2, seq_len=2048)),
    "llama1b-lora": ("meta-llama/Llama-3.2-1B", dict(method="lora", lora_rank=16, micro_batch=4, seq_len=2048,
                                                     lora_dropout=0.05)),
    "tinyllama-qlora": ("TinyLlama/TinyLlama-1.1B-Chat-v1.0", dict(method="qlora", lora_rank=16, micro_batch=4,
                                                                   seq_len=2048, gradient_checkpointing=True,
                                                                   lora_targets="all_linear")),
    "llama8b-lora-gc": ("meta-llama/Llama-3.1-8B", dict(method="lora", lora_rank=16, micro_batch=4, seq_len=4096,
                                                        gradient_checkpointing=True)),
    "llama8b-qlora": ("meta-llama/Llama-3.1-8B", dict(method="qlora", lora_rank=16, micro_batch=2, seq_len=2048,
                                                      gradient_checkpointing=True, lora_targets="all_linear")),
}


def build(model_id: str, fields: dict):
    import torch
    import transformers

    config = dict(catalog()[model_id.lower()])
    model_type = config.pop("model_type")
    hf_config = transformers.AutoConfig.for_model(model_type, **config)
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
        value = getattr(hf_config, key, None)
        if isinstance(value, int) and value >= hf_config.vocab_size:
            setattr(hf_config, key, None)
    hf_config.use_cache = False
    method = fields.get("method", "full")
    if method == "qlora":
        import tempfile

        from peft import prepare_model_for_kbit_training
        from transformers import BitsAndBytesConfig

        folder = tempfile.mkdtemp(prefix="ftc-measure-")
        model = transformers.AutoModelForCausalLM.from_config(hf_config, dtype=torch.bfloat16)
        model.save_pretrained(folder)
        del model
        model = transformers.AutoModelForCausalLM.from_pretrained(
            folder, dtype=torch.bfloat16, attn_implementation="sdpa", device_map={"": 0},
            quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                   bnb_4bit_use_double_quant=True,
                                                   bnb_4bit_compute_dtype=torch.bfloat16))
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=fields.get(
            "gradient_checkpointing", False), gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        with torch.device("cuda"):
            model = transformers.AutoModelForCausalLM.from_config(hf_config, dtype=torch.bfloat16,
                                                                  attn_implementation="sdpa")
        if fields.get("gradient_checkpointing"):
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            if method != "full":
                model.enable_input_require_grads()
    if method in ("lora", "qlora"):
        from peft import LoraConfig, get_peft_model

        targets = fields.get("lora_targets", ("q_proj", "k_proj", "v_proj", "o_proj"))
        model = get_peft_model(model, LoraConfig(
            r=fields.get("lora_rank", 16), lora_alpha=32, lora_dropout=fields.get("lora_dropout", 0.0),
            target_modules="all-linear" if targets == "all_linear" else list(targets), task_type="CAUSAL_LM"))
    return model, hf_config.vocab_size


def measure(model_id: str, fields: dict, steps: int) -> tuple[int, int]:
    import torch

    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    model, vocab = build(model_id, fields)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)  # foreach on CUDA, as transformers' adamw_torch
    b, s = fields["micro_batch"], fields["seq_len"]
    for _ in range(steps):
        ids = torch.randint(0, vocab, (b, s), device="cuda")
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    result = torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()
    del model, optimizer, params
    gc.collect()
    torch.cuda.empty_cache()
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: nothing to measure", file=sys.stderr)
        return 2
    rows = []
    print(f"{'case':18} {'alloc':>8} {'est':>8} {'err':>7}   {'reserved':>8} {'est':>8} {'err':>7}")
    for name in args.cases:
        model_id, fields = CASES[name]
        setup = MemorySetup(resolve_model(model_id).architecture, dtype="bf16", mixed_precision="bf16", **fields)
        est = estimate(setup)
        try:
            allocated, reserved = measure(model_id, fields, args.steps)
        except torch.cuda.OutOfMemoryError:
            print(f"{name:18} OOM (estimate {est.tensor_peak_bytes / GiB:.2f} GiB)")
            continue
        est_alloc = est.tensor_peak_bytes
        est_res = est.tensor_peak_bytes + est.component("allocator_slack")
        rows.append({"case": name, "allocated": allocated, "reserved": reserved, "estimate_allocated": est_alloc,
                     "estimate_reserved": est_res})
        print(f"{name:18} {allocated / GiB:8.2f} {est_alloc / GiB:8.2f} {(est_alloc - allocated) / allocated:+7.1%}   "
              f"{reserved / GiB:8.2f} {est_res / GiB:8.2f} {(est_res - reserved) / reserved:+7.1%}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
