"""prepare(): plan["data"] + tokenizer -> training-ready data sets, a collator and a report.

Stages, each a function over frozen values: read -> check -> dedup -> split -> encode + mask ->
truncate + lint -> pack -> cache. Everything between stages is columnar (Arrow or numpy). Rows are
read into one Arrow table; later stages pass row indices, take bounded chunks of it, and stream their
output to Arrow files in the cache entry, so no stage holds a second copy of the data set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa

from . import dedup as _dedup
from .cache import CacheEntry, cache_key, tokenizer_fingerprint
from .collate import PackedCollator, PaddingCollator
from .errors import DataError
from .formats import FormatSpec, check, content, normalize
from .preference_build import build_preference
from .render import probe_tokenizer
from .report import BadRow, DataReport, Histogram
from .sources import PROBLEM, ROW, SRC, Source, file_fingerprint, read_source, resolve
from .spec import DataSpec
from .split import eval_mask, eval_mask_rows
from .templates import ChatRenderer, ChatTemplate, from_plan, of_tokenizer
from .tokenize import Encoder, encode_rows, take_rows
from .write import SplitWriter

MAX_BAD_EXAMPLES = 10
PREFERENCE_FORMATS = ("preference", "unpaired_preference")


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
        for read in read_source(source, what):
            table, problems = normalize(read, fmt, source)
            problems = check(table, problems, fmt)
            n = table.num_rows
            table = (table.append_column(SRC, pa.array(np.full(n, i, dtype=np.int32)))
                     .append_column(ROW, pa.array(np.asarray(read.numbers, dtype=np.int64)))
                     .append_column(PROBLEM, problems))
            tables.append(table)
            del read
    if not tables:
        return _Rows(fmt.schema().empty_table().append_column(SRC, pa.array([], pa.int32()))
                     .append_column(ROW, pa.array([], pa.int64())).append_column(PROBLEM, pa.array([], pa.string())),
                     sources)
    return _Rows(pa.concat_tables(tables), sources)


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


HASH_CHUNK = 4096


def _contents(table: pa.Table, indices: np.ndarray, fmt: FormatSpec):
    """Normalised content of the rows `indices`, in bounded slices."""
    for start in range(0, len(indices), HASH_CHUNK):
        yield content(take_rows(table, indices[start:start + HASH_CHUNK]), fmt)


def _hashes(table: pa.Table, indices: np.ndarray, fmt: FormatSpec) -> np.ndarray:
    parts = [_dedup.content_hashes(text) for text in _contents(table, indices, fmt)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)


@dataclass(frozen=True)
class _Plan:
    """Which table rows each split takes, after checks, dedup and split."""

    train: np.ndarray
    eval: np.ndarray | None
    eval_rows: _Rows | None
    bad_examples: tuple[BadRow, ...]
    bad_count: int
    dup_exact: int
    dup_near: int
    eval_source: str


def _select(spec: DataSpec, fmt: FormatSpec, train: _Rows, evalr: _Rows | None) -> _Plan:
    bad_examples: list[BadRow] = []
    bad_count = 0
    keep = {}
    for name, rows in (("train", train), ("eval", evalr)):
        if rows is None:
            continue
        problems = _problems_of(rows.table)
        bad_examples += _bad_rows(rows, problems, spec)
        bad_count += len(problems)
        keep[name] = np.nonzero(rows.table.column(PROBLEM).is_null().to_numpy(zero_copy_only=False))[0]

    dup_exact = dup_near = 0
    hashes = {}
    for name, rows in (("train", train), ("eval", evalr)):
        if rows is None:
            continue
        idx = keep[name]
        h = _hashes(rows.table, idx, fmt)
        if spec.dedup != "none":
            first = _dedup.exact_keep(h)
            if name == "eval":  # an eval row that repeats a train row would measure memorisation
                first = first[~np.isin(h[first], hashes["train"])]
            dup_exact += len(idx) - len(first)
            idx, h = idx[first], h[first]
            if spec.dedup == "near":
                near = _dedup.near_keep(_contents(rows.table, idx, fmt), spec.near_dedup_threshold, seed=spec.seed)
                dup_near += len(idx) - len(near)
                idx, h = idx[near], h[near]
        if name == "train" and spec.max_samples is not None:  # the first rows, after dedup, before the split
            idx, h = idx[:spec.max_samples], h[:spec.max_samples]
        keep[name], hashes[name] = idx, h

    if evalr is not None:
        return _Plan(keep["train"], keep["eval"], evalr, tuple(bad_examples), bad_count, dup_exact, dup_near,
                     "files")
    if spec.eval_split > 0 or spec.eval_rows:
        mask = eval_mask_rows(hashes["train"], spec.eval_rows, spec.seed) if spec.eval_rows else \
            eval_mask(hashes["train"], spec.eval_split, spec.seed)
        return _Plan(keep["train"][~mask], keep["train"][mask], train, tuple(bad_examples), bad_count,
                     dup_exact, dup_near, "split")
    return _Plan(keep["train"], None, None, tuple(bad_examples), bad_count, dup_exact, dup_near, "none")


def build(spec: DataSpec, tokenizer, train_sources, eval_sources, out: Path,
          template: ChatTemplate | None = None) -> DataReport:
    """The whole pipeline, streaming into `out` (train.arrow, eval.arrow); returns the report. `template`:
    the recipe's chat template (chat rows without one use the tokenizer's own)."""
    fmt = FormatSpec(spec.format, spec.column_map, spec.train_on, spec.role_names)
    if template is None and spec.format == "chat":
        template = of_tokenizer(tokenizer)
    info = probe_tokenizer(tokenizer, spec.format, template)
    renderer = ChatRenderer.for_tokenizer(tokenizer, template) if template is not None else None
    encoder = Encoder(tokenizer, info)

    train = _read(train_sources, fmt, "train")
    evalr = _read(eval_sources, fmt, "eval") if eval_sources else None
    rows_read = train.table.num_rows + (evalr.table.num_rows if evalr else 0)
    plan = _select(spec, fmt, train, evalr)

    bad_examples, bad_count = list(plan.bad_examples), plan.bad_count
    stats, lengths = {}, None
    truncated = too_long = untrainable = 0
    for name, rows, indices in (("train", train, plan.train), ("eval", plan.eval_rows, plan.eval)):
        if indices is None:
            continue
        writer = SplitWriter(out / f"{name}.arrow", max_length=spec.max_length, truncation=spec.truncation,
                             packing=spec.packing, info=info, locate=rows.where)
        try:
            for enc, problems in encode_rows(rows.table, indices, spec.format, spec.train_on, encoder, renderer):
                if problems:
                    bad_examples += _bad_rows(rows, problems, spec)
                    bad_count += len(problems)
                writer.add(enc)
        except BaseException:
            writer.abort()
            raise
        stats[name] = writer.close()
        truncated += writer.truncated
        too_long += writer.dropped_too_long
        untrainable += writer.untrainable
        if name == "train":
            lengths = writer.lengths

    if stats["train"].rows == 0:
        raise DataError("no training example is left after checks, dedup, split and truncation",
                        file=train_sources[0].display if train_sources else None)
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
        duplicates_exact=plan.dup_exact, duplicates_near=plan.dup_near, train=stats["train"],
        eval=stats.get("eval"), eval_source=plan.eval_source if "eval" in stats else "none", truncated=truncated,
        dropped_too_long=too_long, dropped_untrainable=untrainable, max_length=spec.max_length,
        packing=spec.packing, packing_efficiency=eff, length_percentiles=pct,
        histogram=Histogram.of(lengths, spec.max_length))
    (out / "report.json").write_text(json.dumps(report.to_dict(), indent=2, sort_keys=True))
    return report


def _load(entry: CacheEntry, spec: DataSpec, info_pad: int, hit: bool) -> PreparedData:
    import datasets

    report = DataReport.from_dict(json.loads((entry.path / "report.json").read_text()))
    report = replace(report, cache_key=entry.key, cache_hit=hit)
    train = datasets.Dataset.from_file(str(entry.path / "train.arrow"))
    ev = datasets.Dataset.from_file(str(entry.path / "eval.arrow")) if (entry.path / "eval.arrow").exists() else None
    if spec.format in PREFERENCE_FORMATS:  # TRL's trainers pad prompt and answers with their own collators
        return PreparedData(train, ev, None, report, entry.path)
    fixed = spec.max_length if spec.extra.get("pad_to_max_length") else None  # rows never exceed max_length
    collator = PackedCollator(info_pad) if spec.packing else PaddingCollator(info_pad, fixed)
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
    template = from_plan(dspec.template_spec, base_dir)
    settings = dict(dspec.key_fields(), chat_template_source=template.fingerprint if template else None)
    key = cache_key(settings, [file_fingerprint(s) for s in train_sources],
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
            builder = build_preference if dspec.format in PREFERENCE_FORMATS else build
            entry.write(lambda tmp: builder(dspec, tokenizer, train_sources, eval_sources, tmp, template))
        except DataError as exc:
            entry.note_failure(exc)
            raise
    return _load(entry, dspec, pad, hit=False)


def default_cache_dir(cache_dir: str | None, runs_dir: str, plan_dir: Path) -> Path:
    """plan.data.cache_dir, else `.cache/ftc/data` next to plan.output.runs_dir (shared by all runs); both
    relative to the plan's folder."""
    if cache_dir:
        return (Path(plan_dir) / cache_dir).resolve()
    return (Path(plan_dir) / runs_dir).resolve().parent / ".cache" / "ftc" / "data"
