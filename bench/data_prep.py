"""Data preparation benchmark: ftc's pipeline against the plain tutorial recipe and the tokenizer floor.

    python bench/data_prep.py              # 200k rows (several minutes)
    python bench/data_prep.py --rows 20000 # quick look

Synthetic chat rows (10% exact duplicates, long-tailed lengths: median ~160 tokens, p99 ~1500) are
written to a JSONL file; a 32k byte-level BPE is trained on the same text. Three contenders run in
this one process, from the same file and tokenizer:

  ftc       prepare(): read, check, exact dedup, stable split, render + encode + mask, pack, cache
  tutorial  load_dataset("json"); Python loop with md5 into a set, then select; apply_chat_template;
            map(tokenizer(padding="max_length", max_length=2048)); train_test_split
  floor     the tokenizer's own batch encode of the same rendered text (after dedup), nothing else

Peak memory is the peak resident set size above the level at the start of each stage (sampled
every 10 ms; freed memory is handed back to the OS between stages, and Arrow uses the system
allocator so that it can be). Each contender gets a fresh tokenizer instance (the BPE word cache
warms up during a run). Not a CI test.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import hashlib
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
# Arrow's default pool (mimalloc) keeps freed memory; the system pool plus malloc_trim between stages
# hands it back, so a later contender does not run on memory an earlier one left behind
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np  # noqa: E402

SYLLABLES = ["ka", "to", "ri", "ne", "sa", "mo", "lu", "pe", "di", "ga", "shi", "ro", "vi", "na", "te", "bu", "lo",
             "me", "ja", "ku", "zo", "fa", "ti", "wen", "dor", "ith", "ar", "el", "on", "us"]


def make_words(rng, n: int = 40000) -> np.ndarray:
    lengths = rng.integers(1, 5, size=n)
    words = {"".join(rng.choice(SYLLABLES, size=k)) for k in lengths}
    return np.array(sorted(words), dtype=object)


def zipf_text(rng, words: np.ndarray, n_words: np.ndarray) -> list[str]:
    ranks = np.minimum(rng.zipf(1.15, size=int(n_words.sum())) - 1, len(words) - 1)
    tokens = words[ranks]
    out, pos = [], 0
    punct = np.array([" ", " ", " ", " ", " ", " ", " ", ", ", ". ", "? "], dtype=object)
    seps = punct[rng.integers(0, len(punct), size=len(tokens))]
    for n in n_words.tolist():
        out.append("".join(np.stack([tokens[pos:pos + n], seps[pos:pos + n]], axis=1).ravel().tolist()).strip())
        pos += n
    return out


def make_rows(rows: int, seed: int, words_per_token: float, words: np.ndarray) -> list[dict]:
    rng = np.random.default_rng(seed)
    unique = rows - rows // 10
    # long tail: median 160 tokens, p99 ~1500 -> lognormal sigma = ln(1500/160) / 2.326
    tokens = np.exp(rng.normal(np.log(160), np.log(1500 / 160) / 2.326, size=unique))
    tokens = np.clip(tokens, 16, 6000)
    n_words = np.maximum((tokens * words_per_token).astype(np.int64) - 8, 4)
    user_words = np.maximum((n_words * rng.uniform(0.15, 0.45, size=unique)).astype(np.int64), 2)
    asst_words = np.maximum(n_words - user_words, 2)
    user = zipf_text(rng, words, user_words)
    asst = zipf_text(rng, words, asst_words)
    system = rng.random(unique) < 0.3
    out = []
    for i in range(unique):
        msgs = [{"role": "user", "content": user[i]}, {"role": "assistant", "content": asst[i]}]
        if system[i]:
            msgs.insert(0, {"role": "system", "content": "You are a helpful assistant."})
        out.append({"messages": msgs})
    dup = rng.integers(0, unique, size=rows - unique)
    out += [out[j] for j in dup]
    order = rng.permutation(len(out))
    return [out[i] for i in order]


class PeakRSS:
    """Peak resident memory above the start level, sampled in a thread."""

    def __init__(self, every_s: float = 0.01):
        import psutil

        self._proc = psutil.Process()
        self._every = every_s

    def __enter__(self):
        gc.collect()
        _trim()
        self.start = self._proc.memory_info().rss
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(self._every)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def delta(self) -> int:
        return self.peak - self.start


def _trim():
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


CPU: dict[str, float] = {}


def stage(name, fn):
    """(wall seconds, peak RSS delta, result); the process CPU time (all threads) goes to CPU[name]."""
    with PeakRSS() as mem:
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    CPU[name] = cpu
    load = os.getloadavg()[0]
    print(f"  {name:<10} {seconds:8.1f} s   cpu {cpu:8.1f} s   peak +{mem.delta / 2**20:8.0f} MiB   "
          f"load {load:.1f}", file=sys.stderr, flush=True)
    return seconds, mem.delta, result


def run_ftc(data_path: Path, tokenizer, work: Path, max_length: int):
    from ftc.runtime.data import prepare

    spec = {"train": [str(data_path)], "eval": None, "eval_split": 0.1, "format": "chat", "columns": {},
            "max_length": max_length, "packing": True, "dedup": "exact", "near_dedup_threshold": 0.85,
            "train_on": "completions", "on_bad_rows": "error", "truncation": "right", "seed": 42,
            "cache_dir": None}
    return prepare(spec, tokenizer, base_dir=work, cache_dir=work / "ftc-cache")


def run_tutorial(data_path: Path, tokenizer, work: Path, max_length: int):
    import datasets

    ds = datasets.load_dataset("json", data_files=str(data_path), split="train",
                               cache_dir=str(work / "hf-cache"))
    seen, keep = set(), []
    for i, example in enumerate(ds):
        h = hashlib.md5(json.dumps(example["messages"], sort_keys=True).encode()).hexdigest()
        if h not in seen:
            seen.add(h)
            keep.append(i)
    ds = ds.select(keep)
    ds = ds.map(lambda ex: {"text": tokenizer.apply_chat_template(ex["messages"], tokenize=False)},
                remove_columns=["messages"])
    ds = ds.map(lambda batch: tokenizer(batch["text"], padding="max_length", truncation=True,
                                        max_length=max_length, add_special_tokens=False),
                batched=True, remove_columns=["text"])
    return ds.train_test_split(test_size=0.1, seed=42)


def run_floor(texts: list[str], tokenizer, chunk: int = 2048):
    n = 0
    for i in range(0, len(texts), chunk):
        n += sum(map(len, tokenizer(texts[i:i + chunk], add_special_tokens=False)["input_ids"]))
    return n


def run_rust_floor(texts: list[str], tokenizer, chunk: int = 2048):
    backend = tokenizer.backend_tokenizer
    fast = getattr(backend, "encode_batch_fast", backend.encode_batch)
    return sum(len(e.ids) for i in range(0, len(texts), chunk) for e in fast(texts[i:i + chunk],
                                                                             add_special_tokens=False))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--max-length", type=int, default=2048)
    ap.add_argument("--vocab", type=int, default=32_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--skip-tutorial", action="store_true")
    ap.add_argument("--rust-floor", action="store_true", help="also time the raw Rust batch encode")
    args = ap.parse_args(argv)

    from transformers import AutoTokenizer

    from ftc.runtime.data.toy import build_tokenizer

    work = args.workdir or Path(tempfile.mkdtemp(prefix="ftc-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    words = make_words(rng)
    print(f"workdir {work}", file=sys.stderr)
    print("training the tokenizer ...", file=sys.stderr, flush=True)
    sample = zipf_text(rng, words, np.full(20_000, 150))
    build_tokenizer(sample, work / "tok", vocab_size=args.vocab)
    tokenizer = AutoTokenizer.from_pretrained(str(work / "tok"))
    ratio = np.mean([len(x) for x in tokenizer(sample[:2000], add_special_tokens=False)["input_ids"]]) / 150
    print(f"generating {args.rows:,} rows ...", file=sys.stderr, flush=True)
    rows = make_rows(args.rows, args.seed + 1, 1.0 / ratio, words)
    data_path = work / "chat.jsonl"
    with open(data_path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    seen, texts = set(), []
    for r in rows:
        key = json.dumps(r["messages"])
        if key not in seen:
            seen.add(key)
            texts.append(tokenizer.apply_chat_template(r["messages"], tokenize=False))
    del rows, seen
    data_path.read_bytes()  # warm the page cache for everyone

    import shutil

    for cache in ("ftc-cache", "hf-cache"):  # every contender starts cold
        shutil.rmtree(work / cache, ignore_errors=True)
    # imports and thread pools are set up before measuring, so no contender pays for them
    import datasets
    import datasketch  # noqa: F401
    import pandas  # noqa: F401
    import pyarrow.json  # noqa: F401

    import ftc.runtime.data.pipeline  # noqa: F401

    datasets.disable_progress_bars()
    tokenizer(texts[:256], add_special_tokens=False)
    print("running ...", file=sys.stderr, flush=True)
    # a fresh tokenizer per contender: the BPE word cache warms up during a run, and must not carry over
    fresh = lambda: AutoTokenizer.from_pretrained(str(work / "tok"))  # noqa: E731
    tok = fresh()
    ftc_s, ftc_mem, prepared = stage("ftc", lambda: run_ftc(data_path, tok, work, args.max_length))
    r = prepared.report
    ftc_tokens = r.train.tokens + (r.eval.tokens if r.eval else 0)
    ftc_slots = r.train.slots + (r.eval.slots if r.eval else 0)
    del prepared
    tok = fresh()
    floor_s, floor_mem, floor_tokens = stage("floor", lambda: run_floor(texts, tok))
    tok = fresh()
    rust_s = stage("rust", lambda: run_rust_floor(texts, tok))[0] if args.rust_floor else None
    if not args.skip_tutorial:
        tok = fresh()
        tut_s, tut_mem, tut = stage("tutorial", lambda: run_tutorial(data_path, tok, work, args.max_length))
        tut_rows = len(tut["train"]) + len(tut["test"])
        tut_slots = tut_rows * args.max_length
        del tut

    lengths = np.array([len(t) for t in tokenizer(texts[:20000], add_special_tokens=False)["input_ids"]])
    print()
    print(f"rows {args.rows:,} ({len(texts):,} unique), tokens per row: median {np.median(lengths):.0f}, "
          f"p99 {np.percentile(lengths, 99):.0f}, max_length {args.max_length}, "
          f"{os.cpu_count()} CPUs, ftc encodes in chunks of 1,024 rows")
    print(f"ftc: {r.duplicates_exact:,} duplicates removed, {r.train.rows:,} train / "
          f"{r.eval.rows if r.eval else 0:,} eval examples, {r.truncated:,} truncated, "
          f"packing efficiency {r.packing_efficiency:.1%}")
    print()
    header = f"{'':<26}{'ftc':>14}{'tutorial':>14}{'floor':>14}{'tutorial/ftc':>14}{'ftc/floor':>12}"
    print(header)
    print("-" * len(header))

    def row(name, a, b, c, fmt, ratio_ab=None, ratio_ac=None):
        cells = [fmt(x) if x is not None else "-" for x in (a, b, c)]
        rab = f"{ratio_ab:.2f}x" if ratio_ab is not None else "-"
        rac = f"{ratio_ac:.2f}x" if ratio_ac is not None else "-"
        print(f"{name:<26}{cells[0]:>14}{cells[1]:>14}{cells[2]:>14}{rab:>14}{rac:>12}")

    secs = lambda x: f"{x:.1f} s"  # noqa: E731
    mib = lambda x: f"{x / 2**20:,.0f} MiB"  # noqa: E731
    num = lambda x: f"{x / 1e6:,.1f} M"  # noqa: E731
    pct = lambda x: f"{x:.1%}"  # noqa: E731
    tut = not args.skip_tutorial
    row("time to ready data", ftc_s, tut_s if tut else None, floor_s, secs, tut_s / ftc_s if tut else None,
        ftc_s / floor_s)
    if rust_s is not None:
        row("  (raw Rust encode)", None, None, rust_s, secs)
    row("CPU time, all threads", CPU["ftc"], CPU.get("tutorial"), CPU["floor"], secs,
        CPU["tutorial"] / CPU["ftc"] if tut else None, CPU["ftc"] / CPU["floor"])
    row("token slots", ftc_slots, tut_slots if tut else None, floor_tokens, num,
        tut_slots / ftc_slots if tut else None, ftc_slots / floor_tokens)
    row("padding share", 1 - ftc_tokens / ftc_slots, 1 - floor_tokens / tut_slots if tut else None, None, pct)
    row("peak memory (RSS delta)", ftc_mem, tut_mem if tut else None, floor_mem, mib,
        tut_mem / ftc_mem if tut and ftc_mem > 0 else None)
    print()
    print("(a shared machine's load shifts wall times between stages; CPU time is the steadier measure)")
    ok = [("ftc within 1.3x of the floor", ftc_s <= 1.3 * floor_s)]
    if tut:
        ok += [(">= 6x fewer token slots than the tutorial", tut_slots >= 6 * ftc_slots),
               ("peak memory no higher than the tutorial's", ftc_mem <= tut_mem)]
    for what, good in ok:
        print(f"  [{'ok' if good else 'MISSED'}] {what}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
