"""GPU benchmark: `ftc run` against a plain transformers Trainer script with the same settings, on
random-initialized Llama 1B and 8B (catalog configs, no download): useful tokens/s, MFU, and the
estimator's live-tensor peak (`ftc estimate --json`) against torch.cuda.max_memory_allocated.

Both sides train the same model folder (written once per model, bf16), the same chat rows (the
throughput benchmark's, tokenized by the tiny model's tokenizer: ids are valid for any larger vocabulary),
micro-batch, max_length, optimizer and steps. The script pads each batch to its longest row (what a plain
script does); ftc packs, runs attention per example and the chunked loss, as its defaults say. MFU counts
6 × parameters × tokens/s (the usual convention, attention excluded) against the card's dense bf16 peak.

    python bench/gpu_throughput.py [--steps 12] [--cases llama1b-full ...] [--smoke]

`--smoke` runs one tiny case on CPU (a 2-layer model) to check the script itself.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

CASES = {  # name: (catalog id, method, micro_batch, max_length, gradient checkpointing)
    "llama1b-full": ("meta-llama/Llama-3.2-1B", "full", 4, 2048, False),
    "llama1b-lora": ("meta-llama/Llama-3.2-1B", "lora", 4, 2048, False),
    "llama1b-qlora": ("meta-llama/Llama-3.2-1B", "qlora", 4, 2048, False),
    "llama8b-lora": ("meta-llama/Llama-3.1-8B", "lora", 2, 2048, True),
    "llama8b-qlora": ("meta-llama/Llama-3.1-8B", "qlora", 2, 2048, True),
}
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0}

RECIPE = """recipe "{name}"
model "{model}" {{ dtype = bf16 }}
{method}
data {{ train = "{train}"; format = chat; max_length = {max_length} }}
train {{ max_steps = {steps} steps; lr = 1e-4; warmup = 1 steps; global_batch = {micro}; micro_batch = {micro}
        gradient_checkpointing = {gc}; optimizer = adamw; seed = 42; log_every = 1000 steps }}
hardware {{ accelerator = {accelerator}; memory_per_gpu = 80 GiB }}
"""
METHODS = {"full": "method full {}", "lora": "method lora { rank = 16; alpha = 32; dropout = 0.0; targets = all_linear }",
           "qlora": "method qlora { rank = 16; alpha = 32; dropout = 0.0; targets = all_linear; quant = nf4 }"}


def write_model(model_id: str, folder: Path, layers: int | None, device: str) -> None:
    """Random-init weights from the catalog config, saved with the tiny model's tokenizer."""
    import torch
    import transformers

    from memory_measure import model_config

    config = dict(model_config(model_id, layers))
    hf_config = transformers.AutoConfig.for_model(config.pop("model_type"), **config)
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
        setattr(hf_config, key, None)
    with torch.device("cuda" if device == "cuda" else "cpu"):
        model = transformers.AutoModelForCausalLM.from_config(hf_config, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    transformers.AutoTokenizer.from_pretrained(REPO / "examples" / "tiny" / "model").save_pretrained(folder)


def estimate(recipe: Path) -> int:
    ftc = Path(sys.executable).parent / "ftc"
    out = subprocess.run([str(ftc), "estimate", str(recipe), "--json"], capture_output=True, text=True)
    return int(json.loads(out.stdout)["tensor_peak_bytes_per_gpu"])


def child(kind: str, build: Path, method: str) -> dict:
    """One measured training in this process: `ftc run`'s execute, or the plain script."""
    import torch
    from throughput import Meter

    meter = Meter()
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    if kind == "ftc":
        from throughput import run_ftc

        run_ftc(build, meter)
    else:
        plain_script(build, method, meter)
    peak = torch.cuda.max_memory_allocated() if cuda else meter.peak
    return {"tokens": meter.tokens, "seconds": meter.seconds, "peak": peak}


def plain_script(build: Path, method: str, meter) -> None:
    """A Trainer script as users write it: dynamic padding, the model's own loss, torch AdamW."""
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import (AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig, Trainer,
                              TrainingArguments)

    from ftc.runtime.data import default_cache_dir, prepare
    from ftc.runtime.data.collate import PaddingCollator

    plan = json.loads((build / "plan.json").read_text())
    source = plan["model"]["name_or_path"]
    source = str((build / source).resolve()) if not Path(source).is_absolute() else source
    cuda = torch.cuda.is_available()
    kwargs = {"dtype": torch.bfloat16, "attn_implementation": "sdpa"}
    if method == "qlora":
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                           bnb_4bit_use_double_quant=True,
                                                           bnb_4bit_compute_dtype=torch.bfloat16)
        kwargs["device_map"] = {"": 0} if cuda else "cpu"
    model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    gc = bool(plan["train"]["gradient_checkpointing"])
    if method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gc,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    if method in ("lora", "qlora"):
        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                                                 task_type="CAUSAL_LM"))
    model.config.use_cache = False
    tokenizer = AutoTokenizer.from_pretrained(source)
    data = prepare({**plan["data"], "packing": False}, tokenizer, base_dir=build,
                   cache_dir=default_cache_dir(plan["data"]["cache_dir"], plan["output"]["runs_dir"], build))
    args = TrainingArguments(
        output_dir=str(build.parent / "script-out"), per_device_train_batch_size=plan["batch"]["micro_batch"],
        max_steps=plan["train"]["max_steps"], learning_rate=1e-4, warmup_steps=1, optim="adamw_torch",
        bf16=cuda, gradient_checkpointing=gc and method != "qlora",
        gradient_checkpointing_kwargs={"use_reentrant": False}, logging_steps=1000, save_strategy="no",
        eval_strategy="no", report_to="none", disable_tqdm=True, remove_unused_columns=False, use_cpu=not cuda,
        include_num_input_tokens_seen="non_padding", seed=42)
    Trainer(model=model, args=args, train_dataset=data.train, data_collator=PaddingCollator(tokenizer.pad_token_id),
            processing_class=tokenizer, callbacks=[meter.callback]).train()


def peak_tflops() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(0)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def run_case(name: str, args, tmp: Path, models: dict) -> list[str]:
    from throughput import write_data

    model_id, method, micro, max_length, gc = CASES[name]
    if args.smoke:
        micro, max_length = 2, 256
    folder = models.setdefault(model_id, tmp / model_id.rsplit("/", 1)[1])
    if not (folder / "config.json").is_file():
        write_model(model_id, folder, 2 if args.smoke else None, "cpu" if args.smoke else "cuda")
    data = write_data(tmp, 400 if args.smoke else 4000)
    recipe = tmp / f"{name}.ftspec"
    recipe.write_text(RECIPE.format(name=name, model=folder, method=METHODS[method], train=data, max_length=max_length,
                                    steps=args.steps, micro=micro, gc=str(gc).lower(),
                                    accelerator="cpu" if args.smoke else "gpu"))
    build = tmp / f"build-{name}"
    ftc = Path(sys.executable).parent / "ftc"
    subprocess.run([str(ftc), "compile", str(recipe), "-o", str(build)], check=True, capture_output=True)
    est = estimate(recipe)
    results = {}
    for kind in ("script", "ftc"):
        proc = subprocess.run([sys.executable, __file__, "--child", kind, "--folder", str(build), "--method", method],
                              capture_output=True, text=True)
        line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            return [f"| {name} | {kind} failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else '?'} "
                    "| | | | | |"]
        results[kind] = json.loads(line[7:])
    from ftc.compiler.models.resolve import resolve_model

    params = resolve_model(model_id).architecture.total_params if not args.smoke else None
    peak = peak_tflops()
    rows = []
    for kind in ("script", "ftc"):
        r = results[kind]
        tps = r["tokens"] / r["seconds"]
        mfu = f"{6 * params * tps / (peak * 1e12):.1%}" if params and peak else "–"
        rows.append(f"| {name} | {kind} | {tps:,.0f} | {tps / (results['script']['tokens'] / results['script']['seconds']):.2f}× "
                    f"| {mfu} | {r['peak'] / 2**30:.2f} GiB | {est / 2**30:.2f} GiB "
                    f"| {est / r['peak']:.2f} |")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--child", choices=("ftc", "script"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args.child, args.folder, args.method)), flush=True)
        return 0
    import torch

    cases = ["llama1b-lora"] if args.smoke else args.cases
    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit("bench/gpu_throughput.py needs a CUDA GPU (or --smoke)")
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU (smoke)"
    lines = [f"Card: {device}. Workload: random-init catalog configs, bf16, the throughput benchmark's chat rows, "
             f"{args.steps} steps per run, one run each; baseline: the plain Trainer script (dynamic padding). MFU: "
             "6 × params × tokens/s over the card's dense bf16 peak. Estimate: `ftc estimate --json` "
             "`tensor_peak_bytes_per_gpu`; measured: torch.cuda.max_memory_allocated over the run.", "",
             "| case | side | useful tok/s | × script | MFU | measured peak | estimated peak | estimate / measured |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        models: dict = {}
        for name in cases:
            lines += run_case(name, args, Path(tmp), models)
            print(f"  {name} done at {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
