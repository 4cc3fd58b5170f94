"""Duplicate removal: exact (normalised content hash, vectorised) and near (MinHash LSH).

Exact dedup hashes whole columns at once (pandas' SipHash kernel over the Arrow strings) and keeps
the first occurrence of each hash with numpy; no Python loop over rows. Near dedup uses datasketch's
MinHash LSH, which is per document by nature; it runs only when asked for.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def content_hashes(text: pa.Array) -> np.ndarray:
    """A stable 64-bit hash per row (SipHash-2-4 with pandas' fixed key)."""
    from pandas.util import hash_array

    values = text.to_numpy(zero_copy_only=False)
    if len(values) == 0:
        return np.zeros(0, dtype=np.uint64)
    return hash_array(values.astype(object), categorize=False)


def exact_keep(hashes: np.ndarray) -> np.ndarray:
    """Indices of the first row of each distinct hash, in row order."""
    _, first = np.unique(hashes, return_index=True)
    return np.sort(first)


def _shingles(text: str, size: int = 3) -> list[bytes]:
    words = text.split()
    if len(words) <= size:
        return [text.encode("utf-8")]
    return [" ".join(words[i:i + size]).encode("utf-8") for i in range(len(words) - size + 1)]


def near_keep(texts, threshold: float, *, num_perm: int = 128, seed: int = 1) -> np.ndarray:
    """Positions of rows kept by MinHash LSH: a row is dropped when an earlier kept row is a likely near twin.

    `texts` is an Arrow string array or an iterable of them (read slice by slice)."""
    from datasketch import MinHash, MinHashLSH

    if isinstance(texts, (pa.Array, pa.ChunkedArray)):
        texts = [texts]
    # LSH finds candidates (its banding cannot express thresholds near 1); the estimated Jaccard
    # similarity of each candidate then decides, so the threshold means what it says
    lsh = MinHashLSH(threshold=min(threshold, 0.9), num_perm=num_perm)
    kept: dict[int, object] = {}
    keep = []
    i = 0
    for array in texts:
        docs = array.to_pylist()
        for start in range(0, len(docs), 2048):
            chunk = [_shingles(d or "") for d in docs[start:start + 2048]]
            for mh in MinHash.bulk(chunk, num_perm=num_perm, seed=seed):
                if not any(kept[j].jaccard(mh) >= threshold for j in lsh.query(mh)):
                    lsh.insert(i, mh)
                    kept[i] = mh
                    keep.append(i)
                i += 1
    return np.asarray(keep, dtype=np.int64)
