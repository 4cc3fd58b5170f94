"""Streaming output of one split: truncate, drop untrainable examples, lint, pack by window, write Arrow.

Chunks arrive from the encoder and leave as record batches of an Arrow stream file on disk, which
`datasets` then memory-maps; memory stays bounded by one packing window. Packing runs best-fit
decreasing within windows of about 256 x max_length tokens: enough small examples to fill the gaps
(efficiency within a fraction of a percent of packing everything at once) without holding the data set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from .errors import DataError
from .pack import pack
from .render import TokenizerInfo
from .report import SplitStats
from .tokenize import Encoded, end_counts, trained_counts, truncate

WINDOW_SLOTS = 256  # packing window, in rows of max_length (~99.8% efficiency on long-tailed lengths)


class SplitWriter:
    def __init__(self, path: Path, *, max_length: int, truncation: str, packing: bool, info: TokenizerInfo,
                 locate):
        self.path = path
        self.max_length = max_length
        self.truncation = truncation
        self.packing = packing
        self.info = info
        self.locate = locate  # table row -> (Source, number), for messages
        fields = [("input_ids", pa.list_(pa.int32())), ("labels", pa.list_(pa.int32()))]
        if packing:
            fields.append(("position_ids", pa.list_(pa.int32())))
        self.schema = pa.schema(fields)
        self._sink = pa.OSFile(str(path), "wb")
        self._writer = pa.ipc.new_stream(self._sink, self.schema)
        self._window: list[Encoded] = []
        self._window_tokens = 0
        self._lengths: list[np.ndarray] = []
        self.truncated = self.dropped_too_long = self.untrainable = 0
        self.examples = self.tokens = self.trained = self.rows = 0

    def add(self, enc: Encoded) -> None:
        enc, n_trunc, n_drop = truncate(enc, self.max_length, self.truncation)
        self.truncated += n_trunc
        self.dropped_too_long += n_drop
        trainable = trained_counts(enc) > 0
        if not trainable.all():
            self.untrainable += int((~trainable).sum())
            enc = enc.select(np.nonzero(trainable)[0])
        if len(enc.rows) == 0:
            return
        self._lint(enc)
        lengths = enc.lengths
        self._lengths.append(lengths)
        self.examples += len(lengths)
        self.tokens += int(lengths.sum())
        if not self.packing:
            self.trained += int((enc.labels != -100).sum())
            self._write([enc.ids, enc.labels], enc.offsets)
            return
        self._window.append(enc)
        self._window_tokens += int(lengths.sum())
        if self._window_tokens >= WINDOW_SLOTS * self.max_length:
            self._flush()

    def _flush(self) -> None:
        if not self._window:
            return
        packed = pack(Encoded.concat(self._window), self.max_length)
        self._window, self._window_tokens = [], 0
        # packing masks the first token of each example (see pack.py), which is never trained anyway
        self.trained += int((packed.labels != -100).sum())
        self.rows += packed.rows
        self._write([packed.ids, packed.labels, packed.positions], packed.offsets)

    def _write(self, columns: list[np.ndarray], offsets: np.ndarray) -> None:
        off = pa.array(offsets.astype(np.int32))
        arrays = [pa.ListArray.from_arrays(off, pa.array(c.astype(np.int32, copy=False))) for c in columns]
        self._writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=self.schema))

    def _lint(self, enc: Encoded) -> None:
        """Every example that was not cut at its end must train on an end-of-turn or EOS token."""
        cut_end = enc.truncated if self.truncation == "right" else np.zeros(len(enc.rows), dtype=bool)
        missing = (end_counts(enc, self.info.end_ids) == 0) & ~cut_end
        if not missing.any():
            return
        i = int(np.nonzero(missing)[0][0])
        source, number = self.locate(int(enc.rows[i]))
        names = ", ".join(str(t) for t in sorted(self.info.end_ids))
        raise DataError(f"no end-of-turn or EOS token (ids {names}) inside the loss mask: a model trained on "
                        "this would never learn to stop", file=source.display, row=number, unit=source.unit,
                        help="the chat template must close assistant turns with an end-of-turn token that "
                             "belongs to the assistant's part of the text; check the template, or use "
                             "train_on = all")

    def close(self) -> SplitStats:
        self._flush()
        self._writer.close()
        self._sink.close()
        if self.packing:
            return SplitStats(self.examples, self.tokens, self.trained, self.rows, self.rows * self.max_length)
        return SplitStats(self.examples, self.tokens, self.trained, None, self.tokens)

    def abort(self) -> None:
        try:
            self._writer.close()
            self._sink.close()
        except Exception:
            pass

    @property
    def lengths(self) -> np.ndarray:
        return np.concatenate(self._lengths) if self._lengths else np.zeros(0, dtype=np.int64)
