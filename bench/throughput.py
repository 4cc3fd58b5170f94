"""Useful (non-padding) tokens/s and peak memory of `ftc run` against hand-written Trainer scripts.

Five setups, the same model (the tiny Llama in examples/tiny/model, LoRA r=8 on all linear layers,
fp32), the same tokenized examples (chat rows of a long-tailed length spread, prompts masked), the same
micro-batch (8 rows), optimizer and number of steps:

- pad_to_max:  every row padded to max_length (the seed's setup);
- dynamic:     rows padded to the longest of their batch;
- grouped:     dynamic padding with transformers' length-grouped sampler;
- packed:      examples concatenated in order into rows of max_length, position ids restarting per
               example (transformers' block-diagonal mask: no cross-example attention);
- ftc:         `ftc compile` + `ftc run`'s execute on the recipe with `packing = true`: best-fit-decreasing
               packing, attention per example, chunked cross-entropy.

Each measurement is a fresh child process (peak RSS is per process); the order rotates between
repeats. Tokens/s is non-padding input tokens over `trainer.train()`; peak memory is the RSS high-water
mark during training (reset when training starts). Run:

    python bench/throughput.py [--steps 30] [--repeats 3] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "examples" / "tiny"
SETUPS = ("pad_to_max", "dynamic", "grouped", "packed", "ftc")
MAX_LENGTH, MICRO, LR, SEED = 512, 8, 2e-3, 42


def write_data(folder: Path, rows: int) -> Path:
    """Multi-turn chat rows over the tiny model's facts; turns per row log-normal (a long tail)."""
    sys.path.insert(0, str(TINY))
    from build import SYSTEM, facts

    rng = random.Random(SEED)
    items = facts(rng)
    out = []
    for _ in range(rows):
        turns = max(1, min(24, round(rng.lognormvariate(1.0, 0.9))))
        messages = [{"role": "system", "content": SYSTEM}] if rng.random() < 0.3 else []
        for _ in range(turns):
            q, a, _ = items[rng.randrange(len(items))]
            messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        out.append({"messages": messages})
    path = folder / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in out))
    return path


RECIPE = """recipe "throughput"
model "{model}" {{ dtype = fp32 }}
method lora {{ rank = 8; alpha = 16; dropout = 0.0; targets = all_linear }}
data {{ train = "{train}"; format = chat; max_length = {max_length}; packing = true }}
train {{ max_steps = {steps} steps; lr = {lr}; warmup = 2 steps; global_batch = {micro}; micro_batch = {micro}
        optimizer = adamw; seed = {seed}; log_every = 1000 steps }}
hardware {{ accelerator = cpu }}
"""


def compile_recipe(folder: Path, data: Path, steps: int) -> Path:
    recipe = folder / "throughput.ftspec"
    recipe.write_text(RECIPE.format(model=TINY / "model", train=data, max_length=MAX_LENGTH, steps=steps, lr=LR,
                                    micro=MICRO, seed=SEED))
    build = folder / "build"
    ftc = Path(sys.executable).parent / "ftc"
    proc = subprocess.run([str(ftc), "compile", str(recipe), "-o", str(build)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"ftc compile failed:\n{proc.stdout}{proc.stderr}")
    return build


class Meter:
    """A Trainer callback: wall and CPU time of train(), and the RSS high-water mark from its start."""

    def __init__(self):
        from transformers import TrainerCallback

        meter = self

        class _CB(TrainerCallback):
            def on_train_begin(self, args, state, control, **kw):
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
                meter.start, meter.cpu = time.perf_counter(), time.process_time()

            def on_train_end(self, args, state, control, **kw):
                meter.seconds = time.perf_counter() - meter.start
                meter.cpu = time.process_time() - meter.cpu
                meter.tokens = int(state.num_input_tokens_seen)
                meter.peak = _vm("VmHWM")

        self.callback = _CB()


def _vm(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def run_ftc(build: Path, meter: Meter) -> None:
    from ftc.runtime.train import RunOptions, execute, load_plan
    from ftc.runtime.train.cli import quiet_libraries

    quiet_libraries()
    with open(os.devnull, "w") as sink:
        execute(load_plan(build), RunOptions(callbacks=(meter.callback,)), out=sink)


class GreedyPacked:
    """Examples concatenated in order into rows of at most max_length; position ids restart per example."""

    def __init__(self, dataset, capacity: int):
        rows, cur = [], []
        for i in range(len(dataset)):
            ex = dataset[i]
            if cur and sum(len(e["input_ids"]) for e in cur) + len(ex["input_ids"]) > capacity:
                rows.append(cur)
                cur = []
            cur.append(ex)
        rows += [cur] if cur else []
        self.rows = [self._join(r) for r in rows]

    @staticmethod
    def _join(examples):
        ids, labels, pos = [], [], []
        for e in examples:
            ids += list(e["input_ids"])
            lab = list(e["labels"])
            lab[0] = -100  # the token before belongs to another example
            labels += lab
            pos += list(range(len(e["input_ids"])))
        return {"input_ids": ids, "labels": labels, "position_ids": pos}

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


def run_script(setup: str, build: Path, meter: Meter) -> None:
    """The hand-written Trainer script: same tokenized examples (ftc's prepare, packing off), same settings."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments, set_seed

    from ftc.runtime.data import default_cache_dir, prepare
    from ftc.runtime.data.collate import PackedCollator, PaddingCollator
    from ftc.runtime.train.cli import quiet_libraries

    quiet_libraries()
    plan = json.loads((build / "plan.json").read_text())
    set_seed(SEED)
    tokenizer = AutoTokenizer.from_pretrained(TINY / "model")
    model = AutoModelForCausalLM.from_pretrained(TINY / "model", dtype=torch.float32, attn_implementation="sdpa")
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    model.config.use_cache = False
    data = prepare({**plan["data"], "packing": False}, tokenizer, base_dir=build,
                   cache_dir=default_cache_dir(plan["data"]["cache_dir"], plan["output"]["runs_dir"], build))
    train, pad = data.train, tokenizer.pad_token_id
    collator = PaddingCollator(pad)
    if setup == "pad_to_max":
        collator = PaddingCollator(pad, pad_to_multiple_of=MAX_LENGTH)
    elif setup == "packed":
        train, collator = GreedyPacked(train, MAX_LENGTH), PackedCollator(pad)
    extra = {"train_sampling_strategy": "group_by_length"} if setup == "grouped" else {}
    if setup == "grouped":
        train = train.map(lambda r: {"length": len(r["input_ids"])})
        extra["length_column_name"] = "length"
    args = TrainingArguments(
        output_dir=str(build.parent / f"script-{setup}"), per_device_train_batch_size=MICRO,
        max_steps=plan["train"]["max_steps"], learning_rate=LR, lr_scheduler_type="cosine", warmup_steps=2,
        optim="adamw_torch", max_grad_norm=1.0, logging_steps=1000, save_strategy="no", eval_strategy="no",
        seed=SEED, use_cpu=True, report_to="none", disable_tqdm=True, remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding", dataloader_num_workers=0, **extra)
    Trainer(model=model, args=args, train_dataset=train, data_collator=collator, processing_class=tokenizer,
            callbacks=[meter.callback]).train()


def child(setup: str, build: Path, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    meter = Meter()
    (run_ftc(build, meter) if setup == "ftc" else run_script(setup, build, meter))
    return {"tokens": meter.tokens, "seconds": meter.seconds, "cpu_seconds": meter.cpu, "peak_rss": meter.peak,
            "tokens_per_second": meter.tokens / meter.seconds, "tokens_per_cpu_second": meter.tokens / meter.cpu}


def measure(args) -> tuple[dict, dict]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "DS_ACCELERATOR": "cpu",
           "OMP_NUM_THREADS": str(args.threads), "OMP_WAIT_POLICY": "PASSIVE"}
    results: dict[str, list[dict]] = {s: [] for s in SETUPS}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = write_data(folder, args.rows)
        build = compile_recipe(folder, data, args.steps)
        chosen = tuple(s for s in SETUPS if not args.only or s in args.only)
        for i in range(args.repeats):
            order = chosen[i % len(chosen):] + chosen[:i % len(chosen)]
            for setup in order:
                load = os.getloadavg()[0]
                proc = subprocess.run([sys.executable, __file__, "--child", setup, "--folder", str(build),
                                       "--threads", str(args.threads)], env=env, capture_output=True, text=True)
                line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
                if proc.returncode != 0 or line is None:
                    raise SystemExit(f"{setup} failed:\n{proc.stdout[-2000:]}{proc.stderr[-4000:]}")
                r = json.loads(line[7:])
                r["load"] = load
                results[setup].append(r)
                print(f"  run {i + 1} {setup:10s} {r['tokens_per_second']:8.0f} tok/s "
                      f"{r['tokens_per_cpu_second']:8.0f} tok/cpu-s  {r['tokens']:7d} tokens  "
                      f"{r['peak_rss'] / 2**20:7.1f} MiB  load {load:.1f}", file=sys.stderr, flush=True)
    meta = {"steps": args.steps, "repeats": args.repeats, "threads": args.threads, "rows": args.rows,
            "machine": machine()}
    return results, meta


def machine() -> str:
    import torch
    import transformers

    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor())
    return (f"{cpu}, {os.cpu_count()} cores, {platform.system()}; torch {torch.__version__}, "
            f"transformers {transformers.__version__}")


def table(results: dict, meta: dict) -> str:
    keys = ("tokens_per_second", "tokens_per_cpu_second", "peak_rss", "tokens")
    med = {s: {k: statistics.median(r[k] for r in results[s]) for k in keys} for s in SETUPS}
    base = med["pad_to_max"]
    loads = [r["load"] for rs in results.values() for r in rs]
    lines = [f"Workload: {meta['rows']:,} chat rows (turns per row log-normal: median ~100 tokens, a tail to "
             f"{MAX_LENGTH}), prompts masked, max_length {MAX_LENGTH}, micro-batch {MICRO}, {meta['steps']} steps, "
             f"LoRA r=8 on all linear layers of the tiny Llama, fp32, {meta['threads']} thread per process. "
             f"Machine: {meta['machine']}; load average {min(loads):.1f}–{max(loads):.1f} at the starts. "
             f"Median of {meta['repeats']} runs per setup, each a fresh process; baseline: pad_to_max.", "",
             "| setup | useful tok/s | × | useful tok per CPU-s | × | peak RSS | × | useful tokens | raw tok/s "
             "| raw tok per CPU-s | raw MiB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|"]
    for s in SETUPS:
        m = med[s]
        raw = {k: " / ".join(f"{r[k]:,.0f}" for r in results[s]) for k in ("tokens_per_second", "tokens_per_cpu_second")}
        raw_m = " / ".join(f"{r['peak_rss'] / 2**20:.0f}" for r in results[s])
        lines.append(f"| {s} | {m['tokens_per_second']:,.0f} | {m['tokens_per_second'] / base['tokens_per_second']:.2f} "
                     f"| {m['tokens_per_cpu_second']:,.0f} | "
                     f"{m['tokens_per_cpu_second'] / base['tokens_per_cpu_second']:.2f} "
                     f"| {m['peak_rss'] / 2**20:,.0f} MiB | {m['peak_rss'] / base['peak_rss']:.2f} | {m['tokens']:,.0f} "
                     f"| {raw['tokens_per_second']} | {raw['tokens_per_cpu_second']} | {raw_m} |")
    ftc = med["ftc"]
    for key, what in (("tokens_per_second", "wall"), ("tokens_per_cpu_second", "CPU")):
        best = max((med[s][key], s) for s in SETUPS if s != "ftc")
        lines.append(f"\n{what}: ftc / pad_to_max {ftc[key] / base[key]:.2f}× (target ≥ 3×); ftc / best other "
                     f"({best[1]}) {ftc[key] / best[0]:.2f}× (target > 1).")
    lines.append(f"\nPeak RSS ftc / pad_to_max: {ftc['peak_rss'] / base['peak_rss']:.2f} (target ≤ 1).")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--only", nargs="+", choices=SETUPS, help="measure only these setups (a quick look)")
    parser.add_argument("--child", choices=SETUPS, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args.child, args.folder, args.threads)), flush=True)
        return 0
    results, meta = measure(args)
    if args.only:
        return 0
    print(table(results, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
