"""`make fuzz`: the fuzz tests (every tests/test_*fuzz*.py: front end, compile, CLI; and the valid-recipe
generator of tests/test_valid_recipes.py) in rounds of random examples for a chosen time,
against a saved example database. Prints the cases run and the failures per round and in total, writes
them to FTC_FUZZ_REPORT (default .hypothesis/fuzz-report.json), exits 1 when any round failed.

    python tests/fuzz_driver.py [--minutes 10] [--scale 1]

CI runs the same tests once, short and derandomized (tests/fuzz_settings.py)."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROUND_LIMIT_S = 3600  # a round always finishes (the last one may run past the chosen time); this only stops a hang
# hypothesis's statistics, one line per phase: "150 passing, 0 failing, and 30 invalid test cases"
COUNTS = re.compile(r"(\d+) passing(?: examples?)?, (\d+) failing(?: examples?)?,(?: and)? (\d+) invalid")


GENERATOR = "tests/test_valid_recipes.py::test_valid_recipes_check_and_compile"  # the valid-recipe generator
GENERATED = re.compile(r"(\d+) generated recipes in")


def targets() -> list[str]:
    files = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_*fuzz*.py"))
    return files + ([GENERATOR] if (REPO / GENERATOR.split("::")[0]).is_file() else [])


def one_round(seed: int, scale: int, files: list[str]) -> dict:
    env = {**os.environ, "FTC_FUZZ": "1", "FTC_FUZZ_SCALE": str(scale), "HF_HUB_OFFLINE": "1",
           "FTC_GEN_CASES": str(2000 * scale),
           "TOKENIZERS_PARALLELISM": "false", "DS_ACCELERATOR": "cpu"}
    started = time.monotonic()
    try:
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
                                 "--hypothesis-show-statistics", f"--hypothesis-seed={seed}", *files],
                                cwd=REPO, env=env, capture_output=True, text=True, timeout=ROUND_LIMIT_S)
        output, code = result.stdout + result.stderr, result.returncode
    except subprocess.TimeoutExpired as exc:
        output, code = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else \
            (exc.stdout or ""), None
    passing = failing = invalid = 0
    for match in COUNTS.finditer(output):
        passing += int(match.group(1))
        failing += int(match.group(2))
        invalid += int(match.group(3))
    passing += sum(int(n) for n in GENERATED.findall(output))  # its cases run inside one test
    failed_tests = re.findall(r"^FAILED (\S+)", output, re.M)
    return {"seed": seed, "seconds": round(time.monotonic() - started, 1), "cases": passing + failing,
            "failing_cases": failing, "invalid": invalid, "failed_tests": failed_tests,
            "exit": code, "tail": output[-3000:] if code not in (0, None) else ""}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("FUZZ_MINUTES", 10)))
    parser.add_argument("--scale", type=int, default=1, help="examples per round: this times CI's")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args(argv)
    files = targets()
    deadline = time.monotonic() + args.minutes * 60
    rounds = []
    print(f"fuzz: {', '.join(files)} for {args.minutes:g} min (database {os.environ.get('FTC_FUZZ_DB', '.hypothesis/fuzz')})",
          flush=True)
    while not rounds or time.monotonic() < deadline:
        r = one_round(args.seed + len(rounds), args.scale, files)
        rounds.append(r)
        print(f"fuzz: round {len(rounds)} seed {r['seed']}: {r['cases']} cases, {r['failing_cases']} failing, "
              f"{len(r['failed_tests'])} failed test(s) in {r['seconds']} s", flush=True)
        if r["tail"]:
            print(r["tail"], flush=True)
        if r["exit"] is None:
            break  # a round that hung
    total = {"minutes": args.minutes, "rounds": len(rounds), "cases": sum(r["cases"] for r in rounds),
             "failing_cases": sum(r["failing_cases"] for r in rounds),
             "failed_tests": sorted({t for r in rounds for t in r["failed_tests"]}), "files": files,
             "per_round": [{k: v for k, v in r.items() if k != "tail"} for r in rounds]}
    report = Path(os.environ.get("FTC_FUZZ_REPORT", REPO / ".hypothesis" / "fuzz-report.json"))
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(total, indent=2) + "\n")
    print(f"fuzz: {total['rounds']} round(s), {total['cases']} cases, {total['failing_cases']} failing; "
          f"failed tests: {total['failed_tests'] or 'none'}; report {report}", flush=True)
    bad = any(r["exit"] != 0 for r in rounds)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
