"""Encode segments in bounded chunks into flat token arrays with a loss mask; truncate.

A chunk stays flat (one int32 array of ids, one of labels, and row offsets) from the encoder to the
Arrow writer: no per-row Python lists of token ids are kept, and memory is bounded by the chunk size.
Labels are the ids where a segment is trained and -100 elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain

import numpy as np
import pyarrow as pa

from .render import TokenizerInfo

IGNORE = -100
CHUNK_ROWS = 1024


class Encoder:
    """Batch-encodes strings without special tokens, straight on the Rust tokenizer when there is one."""

    def __init__(self, tokenizer, info: TokenizerInfo):
        self.info = info
        self._hf = tokenizer
        backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
        self._backend = backend
        self._fast = None if backend is None else (getattr(backend, "encode_batch_fast", None) or backend.encode_batch)

    def encode(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        if self._backend is not None:
            # a previous tokenizer(..., padding=...) call leaves padding/truncation set on the backend
            if self._backend.padding is not None:
                self._backend.no_padding()
            if self._backend.truncation is not None:
                self._backend.no_truncation()
            return [e.ids for e in self._fast(texts, add_special_tokens=False)]
        return self._hf(texts, add_special_tokens=False)["input_ids"]

    def encode_continuations(self, texts: list[str]) -> list[list[int]]:
        """Encode text that follows other text: no start-of-string space for SentencePiece-style tokenizers."""
        if not self.info.strips_leading_space:
            return self.encode(texts)
        nl = list(self.info.newline_ids)
        k = len(nl)
        out = []
        for text, ids in zip(texts, self.encode(["\n" + t for t in texts])):
            out.append(ids[k:] if ids[:k] == nl else self.encode([text])[0])
        return out


@dataclass(frozen=True)
class Encoded:
    """Examples as flat arrays: example i is ids[offsets[i]:offsets[i+1]]."""

    ids: np.ndarray  # int32
    labels: np.ndarray  # int32, IGNORE where masked
    offsets: np.ndarray  # int64, len = rows + 1
    rows: np.ndarray  # int64, index of each example in the split's table
    truncated: np.ndarray  # bool per example

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @staticmethod
    def empty() -> "Encoded":
        z = np.zeros(0, dtype=np.int32)
        return Encoded(z, z.copy(), np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool))

    @staticmethod
    def concat(parts: list["Encoded"]) -> "Encoded":
        parts = [p for p in parts if len(p.rows)]
        if not parts:
            return Encoded.empty()
        offsets, base = [np.zeros(1, dtype=np.int64)], 0
        for p in parts:
            offsets.append(p.offsets[1:] + base)
            base += int(p.offsets[-1])
        return Encoded(np.concatenate([p.ids for p in parts]), np.concatenate([p.labels for p in parts]),
                       np.concatenate(offsets), np.concatenate([p.rows for p in parts]),
                       np.concatenate([p.truncated for p in parts]))

    def select(self, keep: np.ndarray) -> "Encoded":
        """The examples at positions `keep` (sorted), gathered without a Python loop."""
        lengths = self.lengths[keep]
        starts = self.offsets[:-1][keep]
        idx = _ranges(starts, lengths)
        offsets = np.zeros(len(keep) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return Encoded(self.ids[idx], self.labels[idx], offsets, self.rows[keep], self.truncated[keep])


def take_rows(table: pa.Table, indices: np.ndarray) -> pa.Table:
    """table.take for ascending indices, on the slice they span: taking from a table of many chunks
    would otherwise resolve every chunk on each call (quadratic over a whole data set)."""
    if len(indices) == 0:
        return table.slice(0, 0)
    lo, hi = int(indices.min()), int(indices.max()) + 1
    return table.slice(lo, hi - lo).take(pa.array(indices - lo, type=pa.int64()))


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + n) for each (s, n), vectorised."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    out_starts = np.cumsum(lengths) - lengths
    return np.arange(total, dtype=np.int64) + np.repeat(starts - out_starts, lengths)


def assemble(pieces: list, trained: np.ndarray, piece_row: np.ndarray, n_rows: int,
             row_index: np.ndarray) -> Encoded:
    """Pieces (lists of ids) in row order -> flat arrays; `trained[i]` says whether piece i is in the loss."""
    lengths = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
    total = int(lengths.sum())
    ids = np.fromiter(chain.from_iterable(pieces), dtype=np.int32, count=total)
    mask = np.repeat(trained, lengths)
    labels = np.where(mask, ids, np.int32(IGNORE)).astype(np.int32, copy=False)
    row_len = np.bincount(piece_row, weights=lengths, minlength=n_rows).astype(np.int64)
    offsets = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(row_len, out=offsets[1:])
    return Encoded(ids, labels, offsets, row_index.astype(np.int64), np.zeros(n_rows, dtype=bool))


def truncate(enc: Encoded, max_length: int, policy: str) -> tuple[Encoded, int, int]:
    """Apply the truncation policy. Returns (encoded, truncated count, dropped-as-too-long count)."""
    lengths = enc.lengths
    long = lengths > max_length
    n_long = int(long.sum())
    if n_long == 0:
        return enc, 0, 0
    if policy == "drop":
        return enc.select(np.nonzero(~long)[0]), 0, n_long
    new_len = np.minimum(lengths, max_length)
    starts = enc.offsets[:-1] + (lengths - new_len if policy == "left" else 0)
    idx = _ranges(starts, new_len)
    offsets = np.zeros(len(new_len) + 1, dtype=np.int64)
    np.cumsum(new_len, out=offsets[1:])
    return Encoded(enc.ids[idx], enc.labels[idx], offsets, enc.rows, long), n_long, 0


def trained_counts(enc: Encoded) -> np.ndarray:
    """Trained tokens per example."""
    flags = (enc.labels != IGNORE).astype(np.int64)
    return _segment_sums(flags, enc.offsets)


def end_counts(enc: Encoded, end_ids: frozenset[int]) -> np.ndarray:
    """End-of-turn / EOS tokens inside the loss mask, per example."""
    flags = np.isin(enc.labels, np.fromiter(end_ids, dtype=np.int32)).astype(np.int64)
    return _segment_sums(flags, enc.offsets)


def _segment_sums(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    csum = np.concatenate([[0], np.cumsum(values)])
    return csum[offsets[1:]] - csum[offsets[:-1]]


@dataclass(frozen=True)
class _Rendered:
    """One chunk as text pieces, before encoding. Fixed pieces (BOS, EOS) are id lists, text pieces strings."""

    texts: list  # str, or list[int] for fixed pieces
    continues: np.ndarray  # bool per piece: text that follows other text in the same example
    trained: np.ndarray  # bool per piece
    owner: np.ndarray  # example index (within the chunk) per piece
    rows: np.ndarray  # table row of each example
    problems: dict


def _render_chunk(chunk: pa.Table, start: int, fmt_name: str, train_on: str, info: TokenizerInfo,
                  renderer) -> _Rendered:
    from .render import instruction_prompts, rows_as_messages

    n = chunk.num_rows
    if renderer is not None:  # chat rows, or any rows under a chat template
        texts, flags, owners, kept, problems = [], [], [], [], {}
        for i, messages in enumerate(rows_as_messages(chunk, fmt_name)):
            try:
                segs = renderer.segments(messages, train_on)
            except Exception as exc:  # template errors (raise_exception) are row problems
                problems[start + i] = f"the chat template rejects this conversation: {exc}"
                continue
            j = len(kept)
            kept.append(start + i)
            for text, flag in segs:
                texts.append(text)
                flags.append(flag)
                owners.append(j)
        owner = np.asarray(owners, dtype=np.int64)
        continues = np.zeros(len(texts), dtype=bool)
        if len(owner) > 1:
            continues[1:] = owner[1:] == owner[:-1]
        return _Rendered(texts, continues, np.asarray(flags, dtype=bool), owner, np.asarray(kept, dtype=np.int64),
                         problems)
    prefix, eos = list(info.prefix_ids), [info.eos_id]
    if fmt_name == "text":
        bodies = chunk.column("text").to_pylist()
        texts = [p for body in bodies for p in (prefix, body, eos)]
        pattern, cont = [False, True, True], [False, False, False]
    else:
        if fmt_name == "completion":
            prompts, answers = chunk.column("prompt").to_pylist(), chunk.column("completion").to_pylist()
        else:
            prompts, answers = instruction_prompts(chunk).to_pylist(), chunk.column("output").to_pylist()
        texts = [p for pa_ in zip(prompts, answers) for p in (prefix, pa_[0], pa_[1], eos)]
        pattern, cont = [False, train_on == "all", True, True], [False, False, True, False]
    k = len(pattern)
    return _Rendered(texts, np.tile(np.asarray(cont, dtype=bool), n), np.tile(np.asarray(pattern, dtype=bool), n),
                     np.repeat(np.arange(n, dtype=np.int64), k), np.arange(start, start + n, dtype=np.int64), {})


def _encode_chunk(r: _Rendered, encoder: Encoder) -> Encoded:
    pieces: list = list(r.texts)
    is_text = np.fromiter((isinstance(t, str) for t in pieces), dtype=bool, count=len(pieces))
    head = np.nonzero(is_text & ~r.continues)[0]
    tail = np.nonzero(is_text & r.continues)[0]
    for idx, ids in zip(head.tolist(), encoder.encode([pieces[k] for k in head.tolist()])):
        pieces[idx] = ids
    for idx, ids in zip(tail.tolist(), encoder.encode_continuations([pieces[k] for k in tail.tolist()])):
        pieces[idx] = ids
    return assemble(pieces, r.trained, r.owner, len(r.rows), r.rows)


def encode_rows(table: pa.Table, indices: np.ndarray, fmt_name: str, train_on: str, encoder: Encoder,
                renderer=None, chunk_rows: int = CHUNK_ROWS):
    """Encode the rows `indices` of a canonical table, chunk by chunk; yields (Encoded, {row: problem}).

    Only one chunk of text is taken from the table at a time. Rendering (Python, holds the GIL) of the
    next chunk runs in a thread while the current one is encoded (Rust, releases the GIL), so template
    rendering mostly hides behind tokenization.
    """
    from concurrent.futures import ThreadPoolExecutor

    starts = list(range(0, len(indices), chunk_rows))

    def render(start):
        idx = indices[start:start + chunk_rows]
        r = _render_chunk(take_rows(table, idx), 0, fmt_name, train_on, encoder.info, renderer)
        # chunk-local row numbers -> table rows
        return _Rendered(r.texts, r.continues, r.trained, r.owner, idx[r.rows],
                         {int(idx[k]): v for k, v in r.problems.items()})

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(render, starts[0]) if starts else None
        for k in range(len(starts)):
            rendered = pending.result()
            pending = pool.submit(render, starts[k + 1]) if k + 1 < len(starts) else None
            yield _encode_chunk(rendered, encoder), rendered.problems
