"""Cold wall time of `ftc check` on the largest example, interpreter start included.

Prints the median of N runs next to `python -c pass` (the floor) and next to importing the stack the
anchors (Axolotl, torchtune, a Trainer script) load before they can look at a config: torch,
transformers, peft, accelerate. Target: ≤ 0.25 s.
Run: python bench/check_speed.py [--runs 15] [--anchor-runs 5] [--markdown]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 0.25


def largest_example() -> Path:
    return max((REPO / "examples").glob("*.ftspec"), key=lambda p: p.stat().st_size)


def timed(argv: list[str], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        result = subprocess.run(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        samples.append(time.perf_counter() - start)
        if result.returncode not in (0, 1):
            raise SystemExit(f"{' '.join(argv)} failed: {result.stderr.decode()}")
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--anchor-runs", type=int, default=5)
    parser.add_argument("--markdown", action="store_true", help="print the side-by-side table in Markdown")
    args = parser.parse_args()
    if args.markdown:
        return markdown(args)
    recipe = largest_example()
    ftc = shutil.which("ftc", path=str(Path(sys.executable).parent)) or "ftc"
    timed([ftc, "check", str(recipe)], 2)  # warm the OS file cache and Lark's grammar cache
    floor = timed([sys.executable, "-c", "pass"], args.runs)
    check = timed([ftc, "check", str(recipe)], args.runs)
    floor_median, check_median = statistics.median(floor), statistics.median(check)
    print(f"recipe: {recipe.relative_to(REPO)} ({recipe.stat().st_size} bytes), {args.runs} runs each")
    print(f"{'command':<28}{'median s':>10}{'min s':>10}{'max s':>10}")
    print(f"{'python -c pass':<28}{floor_median:>10.3f}{min(floor):>10.3f}{max(floor):>10.3f}")
    print(f"{'ftc check':<28}{check_median:>10.3f}{min(check):>10.3f}{max(check):>10.3f}")
    print(f"ftc check / python -c pass: {check_median / floor_median:.1f}x; "
          f"ftc's own cost: {check_median - floor_median:.3f} s")
    verdict = "meets" if check_median <= TARGET_SECONDS else "misses"
    print(f"target ≤ {TARGET_SECONDS:.2f} s: {verdict} ({check_median:.3f} s)")
    return 0


ANCHORS = "import torch, transformers, peft, accelerate"


def markdown(args) -> int:
    import os
    import platform

    recipe = largest_example()
    ftc = shutil.which("ftc", path=str(Path(sys.executable).parent)) or "ftc"
    timed([ftc, "check", str(recipe)], 2)
    timed([sys.executable, "-c", ANCHORS], 1)  # warm the file cache for the anchors' modules
    rows = [("`python -c pass`", timed([sys.executable, "-c", "pass"], args.runs)),
            (f"`ftc check {recipe.relative_to(REPO)}`", timed([ftc, "check", str(recipe)], args.runs)),
            (f"`python -c \"{ANCHORS}\"`", timed([sys.executable, "-c", ANCHORS], args.anchor_runs))]
    check = statistics.median(rows[1][1])
    print(f"Workload: a fresh process per run, interpreter start included; the recipe is the largest example. "
          f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f} at the end. Baseline: `ftc check`. Median of the runs; raw runs beside.\n")
    print("| command | median | × ftc check | raw runs (s) |")
    print("|---|---:|---:|---|")
    for name, samples in rows:
        med = statistics.median(samples)
        print(f"| {name} | {med:.3f} s | {med / check:.2f} | {' / '.join(f'{x:.3f}' for x in samples)} |")
    print(f"\nTarget ≤ {TARGET_SECONDS:.2f} s: {'met' if check <= TARGET_SECONDS else 'missed'} ({check:.3f} s).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
