"""Batch collators for the Trainer: dynamic padding to the longest row of the batch, never to max_length.

Packed rows carry `position_ids` and no `attention_mask`: transformers then derives a block-diagonal
causal mask from the position resets. It does so only when the model builds no KV cache in the
forward pass; with `config.use_cache = True` (the default of most configs) transformers 5 creates a
cache even in training and skips the packed-sequence detection, so examples would attend to each
other. The packed collator therefore sends `use_cache=False` with every batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE = -100


def _stack(rows: list, pad: int, width: int, dtype) -> np.ndarray:
    out = np.full((len(rows), width), pad, dtype=dtype)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


def _width(lengths: list[int], multiple: int | None) -> int:
    width = max(lengths) if lengths else 0
    if multiple:
        width = -(-width // multiple) * multiple
    return width


@dataclass(frozen=True)
class PaddingCollator:
    """input_ids / labels / attention_mask, right-padded to the longest row (optionally a multiple of N)."""

    pad_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict]) -> dict:
        import torch

        ids = [f["input_ids"] for f in features]
        labels = [f["labels"] for f in features]
        lengths = [len(x) for x in ids]
        width = _width(lengths, self.pad_to_multiple_of)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for i, n in enumerate(lengths):
            mask[i, :n] = 1
        return {"input_ids": torch.from_numpy(_stack(ids, self.pad_id, width, np.int64)),
                "labels": torch.from_numpy(_stack(labels, IGNORE, width, np.int64)),
                "attention_mask": torch.from_numpy(mask),
                "use_cache": False}


@dataclass(frozen=True)
class PackedCollator:
    """input_ids / labels / position_ids for packed rows; padding forms its own block (positions from 0)."""

    pad_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict]) -> dict:
        import torch

        ids = [f["input_ids"] for f in features]
        lengths = [len(x) for x in ids]
        width = _width(lengths, self.pad_to_multiple_of)
        positions = np.tile(np.arange(width, dtype=np.int64), (len(ids), 1))
        for i, f in enumerate(features):
            n = lengths[i]
            positions[i, :n] = f["position_ids"]
            positions[i, n:] = np.arange(width - n)
        return {"input_ids": torch.from_numpy(_stack(ids, self.pad_id, width, np.int64)),
                "labels": torch.from_numpy(_stack([f["labels"] for f in features], IGNORE, width, np.int64)),
                "position_ids": torch.from_numpy(positions),
                "use_cache": False}
