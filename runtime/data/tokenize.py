"""Encode segments in bounded chunks into flat token arrays with a loss mask; truncate; lint.

Output stays flat (one int32 array of ids, one of labels, and row offsets) from the encoder to the
Arrow table: no per-row Python lists of token ids are kept, and memory is bounded by the chunk size
plus the result itself. Labels are the ids where a segment is trained and -100 elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain

import numpy as np
import pyarrow as pa

from .render import TokenizerInfo

IGNORE = -100
CHUNK_ROWS = 2048


class Encoder:
    """Batch-encodes strings without special tokens, on a private copy of the Rust tokenizer when there is one."""

    def __init__(self, tokenizer, info: TokenizerInfo):
        self.info = info
        self._hf = tokenizer
        backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
        if backend is not None:
            from tokenizers import Tokenizer

            backend = Tokenizer.from_str(backend.to_str())
            backend.no_padding()
            backend.no_truncation()
        self._backend = backend

    def encode(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        if self._backend is not None:
            fast = getattr(self._backend, "encode_batch_fast", None) or self._backend.encode_batch
            return [e.ids for e in fast(texts, add_special_tokens=False)]
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


def encode_table(table: pa.Table, fmt_name: str, train_on: str, encoder: Encoder, renderer=None,
                 chunk_rows: int = CHUNK_ROWS) -> tuple[Encoded, dict[int, str]]:
    """Encode every row of a canonical table, chunk by chunk. Returns (encoded, {row: problem})."""
    from .render import instruction_prompts

    info = encoder.info
    prefix, eos = list(info.prefix_ids), [info.eos_id]
    prompt_trained = train_on == "all"
    parts, problems = [], {}
    for start in range(0, table.num_rows, chunk_rows):
        chunk = table.slice(start, chunk_rows)
        n = chunk.num_rows
        rows = np.arange(start, start + n, dtype=np.int64)
        if fmt_name == "chat":
            pieces, trained, piece_row, kept = [], [], [], []
            texts, flags, owners = [], [], []
            for i, messages in enumerate(chunk.column("messages").to_pylist()):
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
            # the first segment of a conversation starts the string; later ones continue it
            first = np.ones(len(texts), dtype=bool)
            if len(owners) > 1:
                first[1:] = np.asarray(owners[1:]) != np.asarray(owners[:-1])
            encoded: list = [None] * len(texts)
            head = np.nonzero(first)[0]
            tail = np.nonzero(~first)[0]
            for idx, ids in zip(head, encoder.encode([texts[k] for k in head])):
                encoded[idx] = ids
            for idx, ids in zip(tail, encoder.encode_continuations([texts[k] for k in tail])):
                encoded[idx] = ids
            pieces, trained = encoded, np.asarray(flags, dtype=bool)
            piece_row = np.asarray(owners, dtype=np.int64)
            parts.append(assemble(pieces, trained, piece_row, len(kept), np.asarray(kept, dtype=np.int64)))
            continue
        if fmt_name == "text":
            bodies = encoder.encode(chunk.column("text").to_pylist())
            pieces = [p for body in bodies for p in (prefix, body, eos)]
            pattern = [False, True, True]
        else:
            if fmt_name == "completion":
                prompts = chunk.column("prompt").to_pylist()
                answers = chunk.column("completion").to_pylist()
            else:
                prompts = instruction_prompts(chunk).to_pylist()
                answers = chunk.column("output").to_pylist()
            p_ids = encoder.encode(prompts)
            a_ids = encoder.encode_continuations(answers)
            pieces = [p for pi, ai in zip(p_ids, a_ids) for p in (prefix, pi, ai, eos)]
            pattern = [False, prompt_trained, True, True]
        k = len(pattern)
        trained = np.tile(np.asarray(pattern, dtype=bool), n)
        piece_row = np.repeat(np.arange(n, dtype=np.int64), k)
        parts.append(assemble(pieces, trained, piece_row, n, rows))
    return Encoded.concat(parts), problems
