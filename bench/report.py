"""`make bench`: run every benchmark under bench/ and regenerate the tables of docs/performance.md.

Each table lives between `<!-- BEGIN bench:NAME -->` and `<!-- END bench:NAME -->` in the page; the prose
around them is kept. A benchmark that cannot run here (the GPU one without a GPU) leaves a line saying so.

    python bench/report.py                    # all of them (tens of minutes on a small CPU machine)
    python bench/report.py --only throughput  # one table

The files under bench/ that are not listed here are measurement tools that docs/memory.md and the tests
call (memory_measure.py, live_tensors.py, allocator_replay.py, caching_allocator.py, deepspeed_ and
fsdp_memory_measure.py, two_ranks.py, gpu_memory.sh), not benchmarks with a baseline.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAGE = REPO / "docs" / "performance.md"
PY = sys.executable
DATA_PREP_ROWS, DATA_PREP_REPEATS = 50_000, 3


def _run(argv: list[str], timeout: int = 7200) -> str:
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout.strip()


def _fenced(text: str) -> str:
    return "```\n" + text + "\n```"


def data_prep() -> str:
    """bench/data_prep.py, repeated; medians of its time rows with the raw runs beside."""
    outputs = [_run([PY, "bench/data_prep.py", "--rows", str(DATA_PREP_ROWS)]) for _ in range(DATA_PREP_REPEATS)]
    rows = {}
    for out in outputs:
        for line in out.splitlines():
            for name in ("time to ready data", "CPU time, all threads", "token slots", "peak memory (RSS delta)"):
                if line.startswith(name):
                    cells = re.split(r"\s{2,}", line[len(name):].strip())
                    rows.setdefault(name, []).append(cells[:3])
    lines = [f"Workload: `python bench/data_prep.py --rows {DATA_PREP_ROWS:,}` (the synthetic chat rows described "
             f"below), {DATA_PREP_REPEATS} runs. Baselines: the tutorial pipeline and the tokenizer floor. Median "
             "of the runs, raw runs beside.", "",
             "| | ftc | tutorial | floor | tutorial / ftc | ftc / floor | raw runs (ftc; tutorial; floor) |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for name, runs in rows.items():
        cols = list(zip(*runs))
        nums = [[float(re.sub(r"[^0-9.]", "", c)) if re.search(r"\d", c) else None for c in col] for col in cols]
        unit = re.sub(r"[0-9.,\s]", "", runs[0][0])
        med = [statistics.median(v) if None not in v else None for v in nums]
        fmt = lambda x: "–" if x is None else f"{x:,.1f} {unit}"  # noqa: E731
        ratio = lambda a, b: f"{a / b:.2f}×" if a and b else "–"  # noqa: E731
        raw = "; ".join(" / ".join(c for c in col) for col in cols)
        lines.append(f"| {name} | {fmt(med[0])} | {fmt(med[1])} | {fmt(med[2])} | {ratio(med[1], med[0])} "
                     f"| {ratio(med[0], med[2])} | {raw} |")
    lines += ["", "The last run's full output:", "", _fenced(outputs[-1])]
    return "\n".join(lines)


def gpu() -> str:
    if shutil.which("nvidia-smi") is None:
        return "Not run: this machine has no NVIDIA GPU (`bash bench/gpu.sh` on one; see below)."
    return _run(["bash", "bench/gpu.sh"], timeout=900)


SECTIONS = {
    "check_speed": lambda: _run([PY, "bench/check_speed.py", "--markdown"]),
    "estimator_speed": lambda: _run([PY, "bench/estimator_speed.py"]),
    "lsp_latency": lambda: ("Workload: the largest example in a stdio session with `ftc lsp`; median and max of the "
                            "rounds (its own output below).\n\n" + _fenced(_run([PY, "bench/lsp_latency.py",
                                                                                  "--runs", "30"]))),
    "estimator_accuracy": lambda: ("Workload: the published runs of `shared/data/memory_calibration.csv`, each mapped to "
                                   "an estimator input (docs/memory.md). Baseline: the published measurement; the "
                                   "estimate is arithmetic, so one run is the median (no machine dependence).\n\n"
                                   + _run([PY, "bench/estimator_accuracy.py", "--markdown"])),
    "data_prep": data_prep,
    "runtime_overhead": lambda: _fenced(_run([PY, "bench/runtime_overhead.py", "--steps", "40", "--repeats", "5",
                                              "--threads", "1"])),
    "throughput": lambda: _run([PY, "bench/throughput.py"]),
    "loss_memory": lambda: _run([PY, "bench/loss_memory.py"]),
    "gpu": gpu,
}


def splice(page: str, name: str, body: str) -> str:
    begin, end = f"<!-- BEGIN bench:{name} -->", f"<!-- END bench:{name} -->"
    if begin not in page:
        raise SystemExit(f"docs/performance.md has no {begin} marker")
    head, rest = page.split(begin, 1)
    _, tail = rest.split(end, 1)
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    return f"{head}{begin}\n_Generated by `make bench` on {stamp}._\n\n{body}\n{end}{tail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=sorted(SECTIONS))
    args = parser.parse_args()
    for name in args.only or SECTIONS:
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        body = SECTIONS[name]()
        PAGE.write_text(splice(PAGE.read_text(encoding="utf-8"), name, body), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
