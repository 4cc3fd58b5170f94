"""Building a preference data set: encode the selected rows, cut them to the prompt and sequence limits,
lint the answers' ends, write Arrow files for TRL, and describe it all in the data report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from .errors import DataError
from .preference import ANSWERS, Counts, Renderer, Row, handle_bad, read_rows, select
from .render import probe_tokenizer
from .templates import of_tokenizer
from .report import DataReport, Histogram, SplitStats
from .spec import DataSpec

IDS = pa.list_(pa.int32())


def _schema(fmt: str) -> pa.Schema:
    if fmt == "preference":
        return pa.schema([("prompt_ids", IDS), ("chosen_ids", IDS), ("rejected_ids", IDS)])
    return pa.schema([("prompt_ids", IDS), ("completion_ids", IDS), ("label", pa.bool_())])


def _cut(prompt: list[int], answers: list[list[int]], spec: DataSpec, counts: Counts):
    """The prompt keeps its end (max_prompt_length), then each answer keeps its start (max_length)."""
    limit = spec.max_prompt_length
    if limit is not None and len(prompt) > limit:
        prompt = prompt[len(prompt) - limit:]
        counts.prompt_cut += 1
    room = max(spec.max_length - len(prompt), 0)
    cut = [len(a) > room for a in answers]
    counts.answer_cut += sum(cut)
    return prompt, [a[:room] for a in answers], cut


def _lint(row: Row, names: tuple[str, ...], answers: list[list[int]], cut: list[bool],
          end_ids: frozenset[int]) -> None:
    """An answer that was not cut must end with an end-of-turn or EOS token (a template may add a newline)."""
    for name, ids, was_cut in zip(names, answers, cut):
        if not was_cut and not any(t in end_ids for t in ids[-3:]):
            names = ", ".join(str(t) for t in sorted(end_ids))
            raise DataError(f"`{name}` has no end-of-turn or EOS token (ids {names}) at its end: a model trained "
                            "on this would never learn to stop", file=row.source.display, row=row.number,
                            unit=row.source.unit,
                            help="the chat template must close assistant turns with an end-of-turn token")


def _encode_split(rows: list[Row], spec: DataSpec, renderer: Renderer, counts: Counts, path: Path) -> dict:
    """Write one split; returns its statistics (rows, tokens, per-answer lengths)."""
    columns: dict[str, list] = {name: [] for name in _schema(spec.format).names}
    bad = []
    for row in rows:
        names = ANSWERS[spec.format]
        try:
            prompt, answers = renderer.encode(row.values["prompt"], [row.values[n] for n in names])
        except Exception as exc:  # template errors are row problems
            bad.append((row, f"the chat template rejects this row: {exc}"))
            continue
        prompt, answers, cut = _cut(prompt, answers, spec, counts)
        if any(len(a) == 0 for a in answers):
            counts.emptied += 1
            continue
        if len(answers) == 2 and answers[0] == answers[1]:
            counts.identical += 1
            continue
        _lint(row, names, answers, cut, renderer.info.end_ids)
        columns["prompt_ids"].append(prompt)
        for name, ids in zip(names, answers):
            columns[f"{name}_ids"].append(ids)
        if "label" in columns:
            columns["label"].append(bool(row.values["label"]))
    handle_bad(bad, spec, counts)
    table = pa.table(columns, schema=_schema(spec.format))
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    prompt_len = np.array([len(p) for p in columns["prompt_ids"]], dtype=np.int64)
    lengths = {name: np.array([len(a) for a in columns[f"{name}_ids"]], dtype=np.int64)
               for name in ANSWERS[spec.format]}
    tokens = int(prompt_len.sum()) + sum(int(v.sum()) for v in lengths.values())
    trained = sum(int(v.sum()) for v in lengths.values())
    return {"rows": table.num_rows, "tokens": tokens, "trained": trained, "prompt": prompt_len, "answers": lengths}


def build_preference(spec: DataSpec, tokenizer, train_sources, eval_sources, out: Path,
                     template=None) -> DataReport:
    """The whole preference pipeline into `out` (train.arrow, eval.arrow, report.json). `template`: the
    recipe's chat template (message lists without one use the tokenizer's own)."""
    if spec.packing:
        raise DataError("packing cannot be used with preference data: each answer is scored as its own sequence")
    counts = Counts()
    train, bad = read_rows(train_sources, spec, "train")
    evalr, eval_bad = read_rows(eval_sources, spec, "eval") if eval_sources else (None, [])
    counts.rows_read = len(train) + len(bad) + (len(evalr) + len(eval_bad) if evalr is not None else 0)
    handle_bad(bad + eval_bad, spec, counts)
    train, evalr = select(train, evalr, spec, counts)
    chat = template is not None or _any_chat(train)
    if chat and template is None:
        template = of_tokenizer(tokenizer)
    renderer = Renderer(tokenizer, probe_tokenizer(tokenizer, "chat" if chat else spec.format, template),
                        template if chat else None)
    stats = {"train": _encode_split(train, spec, renderer, counts, out / "train.arrow")}
    if evalr:
        stats["eval"] = _encode_split(evalr, spec, renderer, counts, out / "eval.arrow")
    if stats["train"]["rows"] == 0:
        raise DataError("no training pair is left after checks, dedup, split and truncation",
                        file=train_sources[0].display if train_sources else None)
    report = _report(spec, train_sources, eval_sources, counts, stats, bool(evalr) and not eval_sources)
    (out / "report.json").write_text(json.dumps(report.to_dict(), indent=2, sort_keys=True))
    return report


def _any_chat(rows: list[Row]) -> bool:
    return any(isinstance(v, list) for r in rows[:100] for v in r.values.values())


def _report(spec, train_sources, eval_sources, counts: Counts, stats: dict, split: bool) -> DataReport:
    t = stats["train"]
    whole = t["prompt"] + max(t["answers"].values(), key=lambda v: v.sum()) if len(t["prompt"]) else t["prompt"]
    preference = {
        "prompt_cut": counts.prompt_cut, "answer_cut": counts.answer_cut, "identical": counts.identical,
        "emptied": counts.emptied, "max_prompt_length": spec.max_prompt_length,
        "histograms": {name: _hist(v, spec.max_length) for name, v in
                       (("prompt", t["prompt"]), *t["answers"].items())},
        "mean_lengths": {name: round(float(v.mean()), 1) if len(v) else 0.0 for name, v in
                         (("prompt", t["prompt"]), *t["answers"].items())},
    }
    pct = {f"p{q}": int(np.percentile(whole, q)) for q in (50, 90, 99)} if len(whole) else {}
    if len(whole):
        pct["max"] = int(whole.max())
    ev = stats.get("eval")
    return DataReport(
        format=spec.format, sources=tuple(s.display for s in tuple(train_sources) + tuple(eval_sources)),
        rows_read=counts.rows_read, bad_rows=counts.bad, bad_row_examples=tuple(counts.bad_examples[:10]),
        duplicates_exact=counts.dup_exact, duplicates_near=counts.dup_near,
        train=SplitStats(t["rows"], t["tokens"], t["trained"], None, t["tokens"]),
        eval=SplitStats(ev["rows"], ev["tokens"], ev["trained"], None, ev["tokens"]) if ev else None,
        eval_source=("split" if split else "files") if ev else "none", truncated=counts.answer_cut,
        dropped_too_long=0, dropped_untrainable=counts.emptied + counts.identical, max_length=spec.max_length,
        packing=False, packing_efficiency=None, length_percentiles=pct,
        histogram=Histogram.of(whole, spec.max_length) if len(whole) else None, preference=preference)


def _hist(lengths: np.ndarray, max_length: int) -> dict:
    h = Histogram.of(lengths, max_length) if len(lengths) else Histogram((0, max_length + 1), (0,))
    return {"edges": list(h.edges), "counts": list(h.counts)}
