"""Cold wall time of `ftc check` on the largest example, interpreter start included.

Prints the median of N runs next to `python -c pass` (the floor) and the ratio. Target: ≤ 0.25 s.
Run: python bench/check_speed.py [--runs 15]
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
    args = parser.parse_args()
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


if __name__ == "__main__":
    raise SystemExit(main())
