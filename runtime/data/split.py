"""Train/eval split by a stable, seeded content hash.

A row's side depends only on its content and the seed, never on its position or on the other rows:
adding rows to a data set never moves an existing row between train and eval, and exact duplicates
always land on the same side (no leakage of a training row into eval).
"""

from __future__ import annotations

import numpy as np

_M1, _M2, _GOLD = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser, vectorised (uint64 arithmetic wraps)."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * _M1
        x = x ^ (x >> np.uint64(27))
        x = x * _M2
        return x ^ (x >> np.uint64(31))


def split_keys(hashes: np.ndarray, seed: int) -> np.ndarray:
    with np.errstate(over="ignore"):
        salt = _mix(np.array([np.uint64(seed % (1 << 64)) * _GOLD + _GOLD], dtype=np.uint64))[0]
    return _mix(hashes.astype(np.uint64) ^ salt)


def eval_mask(hashes: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """True for the rows that go to eval; at least one row when fraction > 0 and there are two rows or more."""
    n = len(hashes)
    if fraction <= 0 or n == 0:
        return np.zeros(n, dtype=bool)
    keys = split_keys(hashes, seed)
    cut = np.uint64(min(int(fraction * 2.0**64), 2**64 - 1))
    mask = keys < cut
    if not mask.any() and n >= 2:
        mask[int(np.argmin(keys))] = True
    return mask


def eval_mask_rows(hashes: np.ndarray, rows: int, seed: int) -> np.ndarray:
    """True for the `rows` rows with the smallest split keys: a count instead of a share, by the same hash
    (a row's side still depends on its content, its seed and the size of the data set only)."""
    n = len(hashes)
    if rows >= n:
        from .errors import DataError

        raise DataError(f"eval_split = {rows} rows leaves no training rows: {n} rows are left after checks "
                        "and dedup", help="lower `eval_split`, or give it as a share (`eval_split = 5%`)")
    mask = np.zeros(n, dtype=bool)
    if rows > 0:
        mask[np.argsort(split_keys(hashes, seed), kind="stable")[:rows]] = True
    return mask
