"""The preference formats: `preference` (prompt, chosen, rejected) and `unpaired_preference` (prompt,
completion, boolean label), from the same sources as SFT data to token ids TRL's trainers take as they are.

Stages: read (the shared readers, rows keep their file:line) -> check each row -> dedup -> the stable split
-> render (plain text, or the chat template for message lists) and encode -> max_prompt_length (the prompt
keeps its end) and max_length (answers keep their start) -> lint -> Arrow files in the cache entry.
Rows are Python values here: a preference set is small next to pre-training text, and answers may be
message lists of any shape.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from . import dedup as _dedup
from .errors import DataError
from .formats import MAX_ROW_BYTES, ROLES, missing_columns, too_big
from .render import TokenizerInfo
from .templates import ChatRenderer, ChatTemplate, of_tokenizer
from .sources import Source, read_source
from .spec import DataSpec
from .split import eval_mask, eval_mask_rows
from .tokenize import Encoder

FIELDS = {"preference": ("prompt", "chosen", "rejected"), "unpaired_preference": ("prompt", "completion", "label")}
ANSWERS = {"preference": ("chosen", "rejected"), "unpaired_preference": ("completion",)}


@dataclass(frozen=True)
class Row:
    source: Source
    number: int
    values: dict  # canonical field -> value (str, or a list of messages; bool for label)


@dataclass
class Counts:
    """What the preparation did, for the report (mutable while building, frozen into a dict at the end)."""

    rows_read: int = 0
    bad: int = 0
    bad_examples: list = field(default_factory=list)
    dup_exact: int = 0
    dup_near: int = 0
    prompt_cut: int = 0
    answer_cut: int = 0
    identical: int = 0
    emptied: int = 0


def _kind(value) -> str:
    return {dict: "an object", list: "a list", int: "a number", float: "a number", bool: "a boolean",
            type(None): "null"}.get(type(value), type(value).__name__)


def _message_problem(value, name: str) -> str | None:
    for k, m in enumerate(value, start=1):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            return f"`{name}` is a list whose items are not messages with string `role` and `content`"
        if m["role"] not in ROLES:  # the chat template would render it as given, or fail on it
            return f"`{name}` message {k} has unknown role {m['role']!r} (use {', '.join(ROLES)})"
    return None if value else f"`{name}` is an empty list of messages"


def _over_limit(value: str | list) -> bool:
    """More than MAX_ROW_BYTES of text (a UTF-8 character is at most 4 bytes: shorter text is not measured)."""
    texts = [value] if isinstance(value, str) else [m["content"] for m in value]
    return sum(map(len, texts)) * 4 > MAX_ROW_BYTES and sum(len(t.encode("utf-8")) for t in texts) > MAX_ROW_BYTES


def row_problem(values: dict, fmt: str) -> str | None:
    """Why a row does not fit the format, or None."""
    for name in FIELDS[fmt]:
        value = values.get(name)
        if name == "label":
            if not isinstance(value, bool):
                return f"`label` must be true or false, found {_kind(value)}" if value is not None else \
                    "missing `label`"
            continue
        if value is None:
            return f"missing `{name}`"
        if isinstance(value, list):
            problem = _message_problem(value, name)
            if problem:
                return problem
        elif not isinstance(value, str):
            return f"`{name}` must be a string or a list of messages, found {_kind(value)}"
        elif name == "prompt" and not value.strip():
            return "empty prompt"
        if _over_limit(value):
            return too_big(name)
    return None


def _as_read(values: dict, source: Source) -> str | None:
    """Decode, in place, the text of a column that is not all UTF-8 (read as bytes), and a CSV label written
    `true` or `false` in a column that holds other words too (read as text); the problem of an undecodable one."""
    for name, value in values.items():
        if isinstance(value, bytes):
            try:
                values[name] = value = value.decode("utf-8")
            except UnicodeDecodeError as exc:
                return f"`{name}` is not UTF-8 text ({exc.reason} at byte {exc.start})"
        if name == "label" and source.kind == "csv" and isinstance(value, str) \
                and value.strip().lower() in ("true", "false"):
            values[name] = value.strip().lower() == "true"
    return None


def read_rows(sources: tuple[Source, ...], spec: DataSpec, what: str) -> tuple[list[Row], list[tuple[Row, str]]]:
    """Good rows and (row, problem) pairs; the column names are mapped to the canonical ones."""
    cols = {name: spec.column_map.get(name, name) for name in FIELDS[spec.format]}
    good, bad = [], []
    for source in sources:
        for read in read_source(source, what):
            rows = read.table.to_pylist() if read.table is not None else read.rows
            problems = read.problems if read.table is None else [None] * len(rows)
            names = set(read.table.column_names) if read.table is not None else \
                {k for r in rows[:1000] if isinstance(r, dict) for k in r}
            missing = {k: c for k, c in cols.items() if c not in names}
            if names and missing:  # a file without a column: no row of it can be told from another
                raise missing_columns(spec.format, missing, sorted(names), source)
            for raw, number, problem in zip(rows, read.numbers, problems):
                values = {k: raw.get(c) for k, c in cols.items()} if isinstance(raw, dict) else {}
                problem = problem or (f"expected an object, found {_kind(raw)}" if not isinstance(raw, dict)
                                      else _as_read(values, source) or row_problem(values, spec.format))
                row = Row(source, int(number), values)
                (bad if problem else good).append((row, problem) if problem else row)
    return good, bad


def handle_bad(bad: list[tuple[Row, str]], spec: DataSpec, counts: Counts) -> None:
    """The first bad row is an error unless on_bad_rows = skip; else they are counted with examples."""
    if not bad:
        return
    row, problem = bad[0]
    if spec.on_bad_rows == "error":
        more = len(bad) - 1
        raise DataError(problem + (f" ({more} more bad row{'s' * (more > 1)})" if more else ""),
                        file=row.source.display, row=row.number, unit=row.source.unit,
                        help="fix the row, or set on_bad_rows = skip to leave bad rows out (they are counted)")
    from .report import BadRow

    counts.bad += len(bad)
    counts.bad_examples += [BadRow(r.source.display, r.number, r.source.unit, p) for r, p in bad[:10]]


def _content(row: Row) -> str:
    return json.dumps(row.values, sort_keys=True, ensure_ascii=False)


def select(train: list[Row], evalr: list[Row] | None, spec: DataSpec, counts: Counts):
    """Dedup (exact, then near) and the stable content-hash split; eval rows repeating train rows go."""
    kept, hashes = {}, {}
    for name, rows in (("train", train), ("eval", evalr)):
        if rows is None:
            continue
        h = _dedup.content_hashes(pa.array([_content(r) for r in rows], pa.string()))
        idx = np.arange(len(rows))
        if spec.dedup != "none":
            first = _dedup.exact_keep(h)
            if name == "eval":
                first = first[~np.isin(h[first], hashes["train"])]
            counts.dup_exact += len(idx) - len(first)
            idx, h = idx[first], h[first]
            if spec.dedup == "near":
                near = _dedup.near_keep([_content(rows[i]) for i in idx], spec.near_dedup_threshold, seed=spec.seed)
                counts.dup_near += len(idx) - len(near)
                idx, h = idx[near], h[near]
        if name == "train" and spec.max_samples is not None:  # the first rows, after dedup, before the split
            idx, h = idx[:spec.max_samples], h[:spec.max_samples]
        kept[name], hashes[name] = [rows[i] for i in idx], h
    if evalr is not None:
        return kept["train"], kept["eval"]
    if spec.eval_split > 0 or spec.eval_rows:
        mask = eval_mask_rows(hashes["train"], spec.eval_rows, spec.seed) if spec.eval_rows else \
            eval_mask(hashes["train"], spec.eval_split, spec.seed)
        rows = kept["train"]
        return [r for r, m in zip(rows, mask) if not m], [r for r, m in zip(rows, mask) if m]
    return kept["train"], None


class Renderer:
    """Prompt and answer texts: plain strings as written, unless the recipe names a chat template; message
    lists always through the chat template (the recipe's, else the tokenizer's own)."""

    def __init__(self, tokenizer, info: TokenizerInfo, template: ChatTemplate | None):
        self.encoder = Encoder(tokenizer, info)
        self.info = info
        self._tokenizer = tokenizer
        self._template = template
        self._chat: ChatRenderer | None = None

    def chat(self) -> ChatRenderer:
        if self._chat is None:
            self._chat = ChatRenderer.for_tokenizer(self._tokenizer, self._template or of_tokenizer(self._tokenizer))
        return self._chat

    def encode(self, prompt, answers: list) -> tuple[list[int], list[list[int]]]:
        plain = self._template is None and not isinstance(prompt, list)
        if plain and not any(isinstance(a, list) for a in answers):
            ids = list(self.info.prefix_ids) + self.encoder.encode([prompt])[0]
            outs = [ids_ + [self.info.eos_id] for ids_ in self.encoder.encode_continuations(answers)]
            return ids, outs
        messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        chat = self.chat()
        head = chat.render(messages, add_generation_prompt=True)
        outs = []
        for answer in answers:
            turn = answer if isinstance(answer, list) else [{"role": "assistant", "content": answer}]
            full = chat.render(messages + turn, add_generation_prompt=False)
            if not full.startswith(head):
                raise ValueError("the template renders the prompt differently once an answer follows it")
            outs.append(self.encoder.encode([full[len(head):]])[0])
        return self.encoder.encode([head])[0], outs
