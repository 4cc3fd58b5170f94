"""Runtime overhead: the same training (tiny model, same data, steps, seed) through `ftc run`'s
machinery and through a hand-written transformers Trainer script; prints tokens/s and peak RSS
side by side with the ratio.

    python bench/runtime_overhead.py [--steps 40] [--repeats 3] [--threads 2]

Each measurement runs in a fresh child process, alternating ftc and script: peak RSS is a
per-process high-water mark that cannot be reset inside one process, and alternating spreads the
noise of a shared machine evenly over both. Tokens/s counts non-padding input tokens over the
`trainer.train()` call in both cases (loading and data preparation excluded from both).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "examples" / "tiny"


def write_plan(folder: Path, steps: int) -> Path:
    """A plan exactly as docs/plan.md specifies: LoRA on the tiny model, no eval, no checkpoints."""
    sys.path.insert(0, str(REPO / "tests"))
    from test_runtime_plan import make_plan

    return make_plan(folder, method="lora", max_steps=steps, every=None, eval_every=None, max_length=256,
                     micro=8, lr=2e-3, runs_dir=folder.parent / "runs")


def one_ftc(folder: Path) -> dict:
    from ftc.runtime.train import RunOptions, execute, load_plan
    from ftc.runtime.train.cli import quiet_libraries

    quiet_libraries()
    with open(os.devnull, "w") as sink:
        result = execute(load_plan(folder), RunOptions(), out=sink)
    s = result.summary
    return {"tokens": s["tokens_seen"], "seconds": s["train_seconds"], "final_loss": s["final_train_loss"]}


def one_script(folder: Path) -> dict:
    """What a user would write by hand with the same settings (the plan is read only for paths)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments, set_seed

    from ftc.runtime.data import default_cache_dir, prepare
    from ftc.runtime.train.cli import quiet_libraries

    quiet_libraries()
    plan = json.loads((folder / "plan.json").read_text())
    set_seed(42)
    model_dir = str(TINY / "model")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"],
                                             task_type="CAUSAL_LM"))
    model.config.use_cache = False
    data = prepare(plan["data"], tokenizer, base_dir=folder, cache_dir=default_cache_dir(plan["data"]["cache_dir"], plan["output"]["runs_dir"], folder))
    args = TrainingArguments(
        output_dir=str(folder.parent / "script-out"), per_device_train_batch_size=8, gradient_accumulation_steps=1,
        max_steps=plan["train"]["max_steps"], learning_rate=2e-3, lr_scheduler_type="cosine", warmup_steps=2,
        optim="adamw_torch", max_grad_norm=1.0, logging_steps=1, save_strategy="no", eval_strategy="no", seed=42,
        use_cpu=True, report_to="none", disable_tqdm=True, remove_unused_columns=False, dataloader_num_workers=0)
    trainer = Trainer(model=model, args=args, train_dataset=data.train, data_collator=data.collator,
                      processing_class=tokenizer)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    return {"tokens": None, "seconds": seconds, "final_loss": losses[-1]}


def child(kind: str, folder: Path, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    result = (one_ftc if kind == "ftc" else one_script)(folder)
    result["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", choices=("ftc", "script"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args.child, args.folder, args.threads)), flush=True)
        return 0

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": str(args.threads)}
    results: dict[str, list[dict]] = {"ftc": [], "script": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_plan(Path(tmp) / "build", args.steps)
        for i in range(args.repeats):
            for kind in (("ftc", "script") if i % 2 == 0 else ("script", "ftc")):
                proc = subprocess.run([sys.executable, __file__, "--child", kind, "--folder", str(folder),
                                       "--threads", str(args.threads)], env=env, capture_output=True, text=True)
                line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
                if proc.returncode != 0 or line is None:
                    print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
                    return 1
                r = json.loads(line[7:])
                # ftc runs first in repeat 1 and counts the trained (non-padding) tokens once for both
                r["tokens"] = r["tokens"] or results["ftc"][0]["tokens"]
                r["tokens_per_second"] = r["tokens"] / r["seconds"]
                results[kind].append(r)
                print(f"  run {i + 1} {kind:6s} {r['tokens_per_second']:9.0f} tok/s  "
                      f"{r['peak_rss_bytes'] / 2**20:7.1f} MiB  loss {r['final_loss']:.4f}", flush=True)

    def med(kind, key):
        return statistics.median(r[key] for r in results[kind])

    # The same training: identical final losses. The tokens trained are counted once (by ftc, non-padding
    # input tokens) and used for both, so the script carries no counting code at all.
    assert len({r["final_loss"] for rs in results.values() for r in rs}) == 1, "the two trainings differ"
    f_tps, s_tps = med("ftc", "tokens_per_second"), med("script", "tokens_per_second")
    f_rss, s_rss = med("ftc", "peak_rss_bytes"), med("script", "peak_rss_bytes")
    print(f"\n{'':14s}{'ftc run':>12s}{'script':>12s}{'ratio':>9s}")
    print(f"{'tokens/s':14s}{f_tps:12.0f}{s_tps:12.0f}{f_tps / s_tps:9.3f}")
    print(f"{'peak RSS MiB':14s}{f_rss / 2**20:12.1f}{s_rss / 2**20:12.1f}{f_rss / s_rss:9.3f}")
    print(f"(median of {args.repeats}; {args.steps} steps x {results['ftc'][0]['tokens'] // args.steps} tokens; "
          f"{args.threads} threads; same final loss: "
          f"{results['ftc'][0]['final_loss'] == results['script'][0]['final_loss']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
