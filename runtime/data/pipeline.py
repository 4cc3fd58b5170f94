"""prepare(): plan["data"] + tokenizer -> training-ready data sets, a collator and a report.

Stages, each a function over frozen values: read -> check -> dedup -> split -> encode + mask ->
truncate + lint -> pack -> cache. Everything between stages is columnar (Arrow or numpy).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import dedup as _dedup
from .cache import CacheEntry, cache_key, tokenizer_fingerprint
from .collate import PackedCollator, PaddingCollator
from .errors import DataError
from .formats import FormatSpec, check, content, normalize
from .pack import pack
from .render import ChatRenderer, TokenizerInfo, probe_tokenizer
from .report import BadRow, DataReport, Histogram, SplitStats
from .sources import PROBLEM, ROW, SRC, Source, file_fingerprint, read_source, resolve
from .spec import DataSpec
from .split import eval_mask
from .tokenize import Encoded, Encoder, encode_table, end_counts, trained_counts, truncate

MAX_BAD_EXAMPLES = 10


@dataclass(frozen=True)
class PreparedData:
    """What the trainer needs. `train`/`eval` are memory-mapped `datasets.Dataset`s with `input_ids` and
    `labels` (-100 = not trained), plus `position_ids` when packed. `collator` pads per batch and sends
    `use_cache=False` (see collate.py for why packing needs it)."""

    train: object
    eval: object | None
    collator: Callable
    report: DataReport
    cache_path: Path


@dataclass(frozen=True)
class _Rows:
    """A split's canonical rows plus origin columns, and the sources the origins point at."""

    table: pa.Table
    sources: tuple[Source, ...]

    def where(self, i: int) -> tuple[Source, int]:
        src = self.table.column(SRC)[i].as_py()
        return self.sources[src], self.table.column(ROW)[i].as_py()


def _read(sources: tuple[Source, ...], fmt: FormatSpec, what: str) -> _Rows:
    tables = []
    for i, source in enumerate(sources):
        read = read_source(source, what)
        table, problems = normalize(read, fmt, source)
        problems = check(table, problems, fmt)
        n = table.num_rows
        table = (table.append_column(SRC, pa.array(np.full(n, i, dtype=np.int32)))
                 .append_column(ROW, pa.array(np.asarray(read.numbers, dtype=np.int64)))
                 .append_column(PROBLEM, problems))
        tables.append(table)
    return _Rows(pa.concat_tables(tables) if tables else fmt.schema().empty_table(), sources)


def _bad_rows(rows: _Rows, problems: dict[int, str], spec: DataSpec) -> list[BadRow]:
    """Raise for the first bad row unless on_bad_rows = skip; else describe them."""
    if not problems:
        return []
    first = min(problems)
    source, number = rows.where(first)
    if spec.on_bad_rows == "error":
        more = len(problems) - 1
        raise DataError(problems[first] + (f" ({more} more bad row{'s' * (more > 1)})" if more else ""),
                        file=source.display, row=number, unit=source.unit,
                        help="fix the row, or set on_bad_rows = skip to leave bad rows out (they are counted)")
    out = []
    for i in sorted(problems)[:MAX_BAD_EXAMPLES]:
        s, r = rows.where(i)
        out.append(BadRow(s.display, r, s.unit, problems[i]))
    return out


def _problems_of(table: pa.Table) -> dict[int, str]:
    col = table.column(PROBLEM).combine_chunks()
    bad = np.nonzero(col.is_valid().to_numpy(zero_copy_only=False))[0]
    if not len(bad):
        return {}
    texts = col.take(pa.array(bad)).to_pylist()
    return dict(zip(bad.tolist(), texts))


def _take(rows: _Rows, keep: np.ndarray) -> _Rows:
    return _Rows(rows.table.take(pa.array(keep, type=pa.int64())), rows.sources)


@dataclass(frozen=True)
class _Built:
    train: pa.Table
    eval: pa.Table | None
    report: DataReport


def _stats(enc: Encoded, packed, max_length: int) -> SplitStats:
    tokens = int(len(enc.ids))
    trained = int((enc.labels != -100).sum())
    if packed is not None:
        # packing masks the first token of each example (see pack.py), which is never trained anyway
        return SplitStats(len(enc.rows), tokens, int((packed.labels != -100).sum()), packed.rows,
                          packed.rows * max_length)
    return SplitStats(len(enc.rows), tokens, trained, None, tokens)


def _arrow(enc: Encoded, packed) -> pa.Table:
    def lists(values, offsets):
        return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values))

    if packed is not None:
        return pa.table({"input_ids": lists(packed.ids, packed.offsets), "labels": lists(packed.labels, packed.offsets),
                         "position_ids": lists(packed.positions, packed.offsets)})
    return pa.table({"input_ids": lists(enc.ids, enc.offsets), "labels": lists(enc.labels, enc.offsets)})


def build(spec: DataSpec, tokenizer, train_sources, eval_sources) -> _Built:
    """The whole pipeline, in memory; `prepare` adds the cache around it."""
    fmt = FormatSpec(spec.format, spec.column_map, spec.train_on)
    info = probe_tokenizer(tokenizer, spec.format)
    renderer = ChatRenderer(tokenizer) if spec.format == "chat" else None
    encoder = Encoder(tokenizer, info)

    train = _read(train_sources, fmt, "train")
    evalr = _read(eval_sources, fmt, "eval") if eval_sources else None
    rows_read = train.table.num_rows + (evalr.table.num_rows if evalr else 0)

    bad_examples: list[BadRow] = []
    bad_count = 0
    splits = {"train": train, "eval": evalr}
    for name, rows in list(splits.items()):
        if rows is None:
            continue
        problems = _problems_of(rows.table)
        bad_examples += _bad_rows(rows, problems, spec)
        bad_count += len(problems)
        if problems:
            splits[name] = _take(rows, np.nonzero(rows.table.column(PROBLEM).is_null().to_numpy(zero_copy_only=False))[0])
    train, evalr = splits["train"], splits["eval"]

    # dedup: exact within each split, eval rows that repeat a train row, then near
    dup_exact = dup_near = 0
    hashes = {}
    for name in ("train", "eval"):
        rows = splits[name]
        if rows is None:
            continue
        text = content(rows.table, fmt)
        h = _dedup.content_hashes(text)
        if spec.dedup != "none":
            keep = _dedup.exact_keep(h)
            if name == "eval":
                keep = keep[~np.isin(h[keep], hashes["train"])]
            dup_exact += rows.table.num_rows - len(keep)
            if len(keep) != rows.table.num_rows:
                rows, h, text = _take(rows, keep), h[keep], text.take(pa.array(keep))
            if spec.dedup == "near":
                keep = _dedup.near_keep(text, spec.near_dedup_threshold, seed=spec.seed)
                dup_near += rows.table.num_rows - len(keep)
                if len(keep) != rows.table.num_rows:
                    rows, h = _take(rows, keep), h[keep]
        splits[name], hashes[name] = rows, h
    train, evalr = splits["train"], splits["eval"]

    eval_source = "files" if evalr is not None else "none"
    if evalr is None and spec.eval_split > 0:
        mask = eval_mask(hashes["train"], spec.eval_split, spec.seed)
        evalr = _take(train, np.nonzero(mask)[0])
        train = _take(train, np.nonzero(~mask)[0])
        eval_source = "split"

    truncated = too_long = untrainable = 0
    encoded = {}
    for name, rows in (("train", train), ("eval", evalr)):
        if rows is None:
            continue
        enc, problems = encode_table(rows.table, spec.format, spec.train_on, encoder, renderer)
        bad = _bad_rows(rows, problems, spec)
        bad_examples += bad
        bad_count += len(problems)
        enc, n_trunc, n_drop = truncate(enc, spec.max_length, spec.truncation)
        truncated += n_trunc
        too_long += n_drop
        trainable = trained_counts(enc) > 0
        untrainable += int((~trainable).sum())
        if not trainable.all():
            enc = enc.select(np.nonzero(trainable)[0])
        _lint_end_tokens(enc, rows, info, spec)
        encoded[name] = enc

    if len(encoded["train"].rows) == 0:
        raise DataError("no training example is left after checks, dedup, split and truncation",
                        file=train_sources[0].display if train_sources else None)
    packed = {k: (pack(v, spec.max_length) if spec.packing else None) for k, v in encoded.items()}
    stats = {k: _stats(v, packed[k], spec.max_length) for k, v in encoded.items()}
    lengths = encoded["train"].lengths
    eff = None
    if spec.packing:
        tokens = sum(s.tokens for s in stats.values())
        slots = sum(s.slots for s in stats.values())
        eff = tokens / slots if slots else None
    pct = {f"p{q}": int(np.percentile(lengths, q)) for q in (50, 90, 99)}
    pct["max"] = int(lengths.max())
    report = DataReport(
        format=spec.format, sources=tuple(s.display for s in tuple(train_sources) + tuple(eval_sources)),
        rows_read=rows_read, bad_rows=bad_count, bad_row_examples=tuple(bad_examples[:MAX_BAD_EXAMPLES]),
        duplicates_exact=dup_exact, duplicates_near=dup_near, train=stats["train"], eval=stats.get("eval"),
        eval_source=eval_source if "eval" in stats else "none", truncated=truncated, dropped_too_long=too_long,
        dropped_untrainable=untrainable, max_length=spec.max_length, packing=spec.packing,
        packing_efficiency=eff, length_percentiles=pct, histogram=Histogram.of(lengths, spec.max_length))
    return _Built(_arrow(encoded["train"], packed["train"]),
                  _arrow(encoded["eval"], packed["eval"]) if "eval" in encoded else None, report)


def _lint_end_tokens(enc: Encoded, rows: _Rows, info: TokenizerInfo, spec: DataSpec) -> None:
    """Every example that was not cut at its end must train on an end-of-turn or EOS token."""
    if len(enc.rows) == 0:
        return
    cut_end = enc.truncated if spec.truncation == "right" else np.zeros(len(enc.rows), dtype=bool)
    missing = (end_counts(enc, info.end_ids) == 0) & ~cut_end
    if not missing.any():
        return
    i = int(np.nonzero(missing)[0][0])
    source, number = rows.where(int(enc.rows[i]))
    names = ", ".join(str(t) for t in sorted(info.end_ids))
    raise DataError(f"no end-of-turn or EOS token (ids {names}) inside the loss mask: a model trained on this "
                    f"would never learn to stop ({int(missing.sum())} example(s))",
                    file=source.display, row=number, unit=source.unit,
                    help="the chat template must close assistant turns with an end-of-turn token that belongs "
                         "to the assistant's part of the text; check the template, or use train_on = all")


def _dataset(table: pa.Table):
    import datasets
    from datasets.table import InMemoryTable

    return datasets.Dataset(InMemoryTable(table))


def _save(tmp: Path, built: _Built) -> None:
    import json

    from datasets.utils import logging as ds_logging

    shown = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()
    try:
        _dataset(built.train).save_to_disk(str(tmp / "train"))
        if built.eval is not None:
            _dataset(built.eval).save_to_disk(str(tmp / "eval"))
    finally:
        if shown:
            ds_logging.enable_progress_bar()
    (tmp / "report.json").write_text(json.dumps(built.report.to_dict(), indent=2, sort_keys=True))


def _load(entry: CacheEntry, spec: DataSpec, info_pad: int, hit: bool) -> PreparedData:
    import json

    import datasets

    report = DataReport.from_dict(json.loads((entry.path / "report.json").read_text()))
    report = replace(report, cache_key=entry.key, cache_hit=hit)
    train = datasets.load_from_disk(str(entry.path / "train"))
    ev = datasets.load_from_disk(str(entry.path / "eval")) if (entry.path / "eval").exists() else None
    collator = PackedCollator(info_pad) if spec.packing else PaddingCollator(info_pad)
    return PreparedData(train, ev, collator, report, entry.path)


def _pad_id(tokenizer) -> int:
    if tokenizer.pad_token_id is not None:
        return int(tokenizer.pad_token_id)
    if tokenizer.eos_token_id is None:
        raise DataError("the tokenizer has neither a pad nor an EOS token")
    return int(tokenizer.eos_token_id)


def prepare(spec: dict, tokenizer, *, base_dir: Path, cache_dir: Path, is_main_process: bool = True,
            wait_for_cache: Callable[[], None] | None = None) -> PreparedData:
    """Prepare plan["data"] with `tokenizer`, or reuse the cached result for identical inputs.

    Relative paths in `spec` are relative to `base_dir` (the plan's folder). In a multi-process run,
    call it on every process: the main one prepares, the others wait for the cache entry (by polling
    it, or by calling `wait_for_cache`, e.g. a barrier the main process reaches after prepare returns).
    Raises DataError for any problem with the data or the settings.
    """
    dspec = DataSpec.from_plan(spec)
    base_dir = Path(base_dir).resolve()
    train_sources = resolve(dspec.train, base_dir, what="train")
    eval_sources = resolve(dspec.eval, base_dir, what="eval") if dspec.eval else ()
    key = cache_key(dspec.key_fields(), [file_fingerprint(s) for s in train_sources],
                    [file_fingerprint(s) for s in eval_sources], tokenizer_fingerprint(tokenizer))
    entry = CacheEntry(Path(cache_dir), key)
    pad = _pad_id(tokenizer)
    if not is_main_process:
        if wait_for_cache is not None:
            wait_for_cache()
        else:
            entry.wait()
        if not entry.is_ready():
            entry.raise_if_failed()
            raise DataError("the main process did not prepare the data set", file=str(entry.path))
        return _load(entry, dspec, pad, hit=True)
    with entry.lock():
        if entry.is_ready():
            return _load(entry, dspec, pad, hit=True)
        entry.clear_failure()
        try:
            built = build(dspec, tokenizer, train_sources, eval_sources)
        except DataError as exc:
            entry.note_failure(exc)
            raise
        entry.write(lambda tmp: _save(tmp, built))
    return _load(entry, dspec, pad, hit=False)


def default_cache_dir(plan: dict, plan_dir: Path) -> Path:
    """plan.data.cache_dir, else `.cache/ftc/data` next to the runs folder (shared by all runs)."""
    data = plan.get("data") or {}
    if data.get("cache_dir"):
        return (Path(plan_dir) / data["cache_dir"]).resolve()
    runs = (plan.get("output") or {}).get("runs_dir") or "runs"
    return (Path(plan_dir) / runs).resolve().parent / ".cache" / "ftc" / "data"
