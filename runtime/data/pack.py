"""Packing: several examples per row, each with its own position ids, and no attention across them.

Examples are placed by best-fit decreasing (capacity = max_length), which wastes far fewer slots
than greedy concatenation on long-tailed lengths. In a packed row, positions restart at 0 for each
example and the first label of each example is -100: the token before it belongs to another
example and must not be trained to predict it. Run alone, an example never trains its first token
either, so per-example losses are identical packed or not.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from .tokenize import IGNORE, Encoded, _ranges


@dataclass(frozen=True)
class Packed:
    ids: np.ndarray
    labels: np.ndarray
    positions: np.ndarray
    offsets: np.ndarray  # packed rows
    examples: int

    @property
    def rows(self) -> int:
        return len(self.offsets) - 1


def assign_bins(lengths: np.ndarray, capacity: int) -> np.ndarray:
    """Bin index for each example (best fit decreasing). Bins with equal room are kept in stacks,
    so the search runs over distinct room sizes (at most `capacity`), not over bins."""
    order = np.argsort(-lengths, kind="stable")
    bins = np.empty(len(lengths), dtype=np.int64)
    rooms: list[int] = []  # sorted distinct free sizes
    stacks: dict[int, list[int]] = {}
    count = 0
    for i in order.tolist():
        need = int(lengths[i])
        j = bisect.bisect_left(rooms, need)
        if j < len(rooms):
            room = rooms[j]
            stack = stacks[room]
            b = stack.pop()
            if not stack:
                del stacks[room]
                rooms.pop(j)
            left = room - need
        else:
            b = count
            count += 1
            left = capacity - need
        bins[i] = b
        if left > 0:
            stack = stacks.get(left)
            if stack is None:
                stacks[left] = [b]
                bisect.insort(rooms, left)
            else:
                stack.append(b)
    return bins


def pack(enc: Encoded, capacity: int) -> Packed:
    lengths = enc.lengths
    n = len(lengths)
    if n == 0:
        z = np.zeros(0, dtype=np.int32)
        return Packed(z, z.copy(), z.copy(), np.zeros(1, dtype=np.int64), 0)
    bins = assign_bins(lengths, capacity)
    order = np.lexsort((np.arange(n), bins))  # by bin, then by original position
    lens = lengths[order]
    idx = _ranges(enc.offsets[:-1][order], lens)
    ids = enc.ids[idx]
    labels = enc.labels[idx].copy()
    ex_starts = np.cumsum(lens) - lens
    positions = (np.arange(len(ids), dtype=np.int64) - np.repeat(ex_starts, lens)).astype(np.int32)
    labels[ex_starts[lens > 0]] = IGNORE
    row_len = np.bincount(bins, weights=lengths).astype(np.int64)
    offsets = np.zeros(len(row_len) + 1, dtype=np.int64)
    np.cumsum(row_len, out=offsets[1:])
    return Packed(ids, labels, positions, offsets, n)
