"""Time of the memory estimate from 1B to 405B parameters: in process (the estimator alone, the autos'
probing included) and as `ftc estimate` in a fresh process (interpreter start included).

    python bench/estimator_speed.py [--runs 5] [--calls 50]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODELS = ("meta-llama/Llama-3.2-1B", "meta-llama/Llama-3.2-3B", "meta-llama/Llama-3.1-8B",
          "meta-llama/Llama-3.1-70B", "meta-llama/Llama-3.1-405B")

RECIPE = """recipe "estimate-speed"
model "{model}" {{ dtype = bf16 }}
method lora {{ rank = 16; targets = all_linear }}
data {{ train = "train.jsonl"; format = chat; max_length = 4096; packing = true }}
train {{ epochs = 1; lr = 2e-4; global_batch = 64 }}
hardware {{ gpu = h100-80gb; gpus_per_node = 8 }}
distributed auto {{}}
"""


def in_process(recipe: Path, calls: int) -> list[float]:
    """Seconds per `compute` (setup from the recipe, autos settled, estimate), after one warm-up call."""
    from ftc.commands.estimate import compute
    from ftc.compiler.pipeline import compile_recipe

    compiled = compile_recipe(str(recipe), ())
    compute(compiled.recipe)
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        compute(compiled.recipe)
        samples.append(time.perf_counter() - start)
    return samples


def cold(recipe: Path, runs: int) -> list[float]:
    ftc = shutil.which("ftc", path=str(Path(sys.executable).parent)) or "ftc"
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([ftc, "estimate", str(recipe)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        samples.append(time.perf_counter() - start)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "train.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"}, '
                                               '{"role": "assistant", "content": "hello"}]}\n')
        for model in MODELS:
            recipe = Path(tmp) / f"{model.rsplit('/', 1)[1]}.ftspec"
            recipe.write_text(RECIPE.format(model=model))
            rows.append((model, in_process(recipe, args.calls), cold(recipe, args.runs)))
    print(f"Workload: LoRA r=16 on all linear layers, bf16, 4,096-token rows, global batch 64, 8 × H100 80GB, "
          f"`distributed auto` (strategy, micro-batch and checkpointing chosen by the estimator). Machine: "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f} at the end. In process: median of {args.calls} calls of the estimate with "
          f"its autos (after one warm-up); cold: median of {args.runs} `ftc estimate` processes. Baseline: the "
          f"1B model.\n")
    print("| model | in process | × 1B | cold `ftc estimate` | × 1B | raw cold runs (s) |")
    print("|---|---:|---:|---:|---:|---|")
    base_in, base_cold = statistics.median(rows[0][1]), statistics.median(rows[0][2])
    for model, warm, cold_runs in rows:
        w, c = statistics.median(warm), statistics.median(cold_runs)
        print(f"| {model} | {w * 1000:.2f} ms | {w / base_in:.2f} | {c:.3f} s | {c / base_cold:.2f} "
              f"| {' / '.join(f'{x:.3f}' for x in cold_runs)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
