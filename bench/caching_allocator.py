"""Replay PyTorch's native CUDA caching allocator policy in pure Python.

Feed it an allocation trace (`malloc(size, stream)` / `free(handle)`) and read `peak_reserved`
(the segments the allocator holds: what nvidia-smi shows minus the CUDA context) against
`peak_allocated` (what `max_memory_allocated` reports): the gap is fragmentation and caching.

Mirrors `DeviceCachingAllocator` in c10/cuda/CUDACachingAllocator.cpp (read at pytorch commit
001074d) in its DEFAULT configuration only: expandable_segments off, max_split_size unlimited,
roundup_power2_divisions off, garbage_collection_threshold 0, no empty_cache, one device, no CUDA
graph pools. Simplifications, each inactive or unobservable in that configuration except the last two:
- record_stream / CUDA events are out of scope: a free makes the block reusable at once, as if
  `stream_uses` were always empty (no `insert_events` / `process_events`).
- FreeCudaMemoryCallbacks (`trigger_free_memory_callbacks`) are not replayed.
- cudaMalloc addresses come from a bump pointer that never reuses addresses. Addresses only
  break ties between cached blocks of equal size (the lowest address wins), so a real run can pick
  a different one of two equal-size blocks.
- `capacity` plays the part of `set_per_process_memory_fraction`'s limit: a new segment fails when
  reserved + segment > capacity. A real cudaMalloc can fail earlier (CUDA context, other processes).
"""

from __future__ import annotations

import bisect

K_MIN_BLOCK_SIZE = 512  # all sizes are rounded to at least 512 bytes
K_SMALL_SIZE = 1 << 20  # largest "small" allocation is 1 MiB
K_SMALL_BUFFER = 2 << 20  # "small" allocations are packed in 2 MiB segments
K_LARGE_BUFFER = 20 << 20  # requests between 1 and 10 MiB get a 20 MiB segment
K_MIN_LARGE_ALLOC = 10 << 20  # from 10 MiB on, a segment is the request rounded to 2 MiB
K_ROUND_LARGE = 2 << 20
MAX_SPLIT_SIZE = (1 << 64) - 1  # CUDAAllocatorConfig::max_split_size() default: SIZE_MAX


class SimulatedOOM(MemoryError):
    """Where the C++ raises OutOfMemoryError: no cached block fits and cudaMalloc fails even after
    releasing every fully free cached segment."""


def round_size(size: int) -> int:
    """DeviceCachingAllocator::round_size (no roundup_power2_divisions): whole 512-byte blocks."""
    if size < K_MIN_BLOCK_SIZE:
        return K_MIN_BLOCK_SIZE
    return K_MIN_BLOCK_SIZE * ((size + K_MIN_BLOCK_SIZE - 1) // K_MIN_BLOCK_SIZE)


def get_allocation_size(size: int) -> int:
    """DeviceCachingAllocator::get_allocation_size: how big a new segment for `size` is."""
    if size <= K_SMALL_SIZE:
        return K_SMALL_BUFFER
    if size < K_MIN_LARGE_ALLOC:
        return K_LARGE_BUFFER
    return K_ROUND_LARGE * ((size + K_ROUND_LARGE - 1) // K_ROUND_LARGE)


class _Block:
    """struct Block: a slice of one segment; prev/next link the slices of that segment."""

    __slots__ = ("addr", "size", "stream", "pool", "allocated", "prev", "next")

    def __init__(self, addr: int, size: int, stream: int, pool: _Pool) -> None:
        self.addr, self.size, self.stream, self.pool = addr, size, stream, pool
        self.allocated = False
        self.prev: _Block | None = None
        self.next: _Block | None = None

    def is_split(self) -> bool:
        return self.prev is not None or self.next is not None


class _Pool:
    """struct BlockPool: cached free blocks ordered like BlockComparatorSize (stream, size, address)."""

    def __init__(self, small: bool) -> None:
        self.is_small = small
        self._keys: list[tuple[int, int, int]] = []  # sorted; a block's key must not change while in here
        self._blocks: dict[tuple[int, int, int], _Block] = {}

    def insert(self, b: _Block) -> None:
        key = (b.stream, b.size, b.addr)
        bisect.insort(self._keys, key)
        self._blocks[key] = b

    def erase(self, b: _Block) -> None:
        key = (b.stream, b.size, b.addr)
        del self._keys[bisect.bisect_left(self._keys, key)]
        del self._blocks[key]

    def lower_bound(self, stream: int, size: int) -> _Block | None:
        """std::set::lower_bound with the search key (stream, size, nullptr)."""
        i = bisect.bisect_left(self._keys, (stream, size, -1))
        return self._blocks[self._keys[i]] if i < len(self._keys) else None

    def blocks(self) -> list[_Block]:
        return [self._blocks[k] for k in self._keys]


class CachingAllocator:
    """DeviceCachingAllocator for one device. Handles are block addresses, like the C++ pointers."""

    def __init__(self, capacity: int | None = None) -> None:
        self.capacity = capacity
        self._small, self._large = _Pool(True), _Pool(False)
        self._active: dict[int, _Block] = {}  # active_blocks, by address
        self._next_addr = 0
        self.allocated = 0  # stats.allocated_bytes: sizes of live blocks (>= the rounded request)
        self.reserved = 0  # stats.reserved_bytes: sizes of all segments
        self.peak_allocated = 0
        self.peak_reserved = 0

    def malloc(self, size: int, stream: int = 0) -> int:
        """DeviceCachingAllocator::malloc: best-fit cached block, else a new segment; split the rest."""
        if size <= 0:  # the C++ front end hands out nullptr for 0 bytes without entering malloc
            raise ValueError(f"malloc size must be positive, got {size}")
        size = round_size(size)
        pool = self._small if size <= K_SMALL_SIZE else self._large  # get_pool
        alloc_size = get_allocation_size(size)
        block = self._get_free_block(pool, size, stream)
        if block is None:
            block = self._alloc_block(pool, alloc_size, stream)
        if block is None and self._release_available_cached_blocks():
            block = self._alloc_block(pool, alloc_size, stream)
        if block is None and self._release_cached_blocks():
            block = self._alloc_block(pool, alloc_size, stream)
        if block is None:
            raise SimulatedOOM(
                f"tried to allocate {alloc_size} bytes with {self.reserved} reserved, "
                f"{self.allocated} allocated, capacity {self.capacity}")
        return self._alloc_found_block(block, size, stream, self._should_split(block, size))

    def free(self, handle: int) -> None:
        """DeviceCachingAllocator::free (no stream uses, so straight to free_block)."""
        block = self._active.pop(handle, None)
        if block is None:
            raise ValueError(f"free of unknown or already freed handle {handle}")
        block.allocated = False
        self.allocated -= block.size
        self._free_block(block)

    def segments(self) -> list[tuple[int, list[tuple[int, bool]]]]:
        """Like snapshot(): per segment in address order, (segment size, [(block size, allocated)])."""
        blocks = [*self._active.values(), *self._small.blocks(), *self._large.blocks()]
        out = []
        for head in sorted((b for b in blocks if b.prev is None), key=lambda b: b.addr):
            parts, b = [], head
            while b is not None:
                parts.append((b.size, b.allocated))
                b = b.next
            out.append((sum(s for s, _ in parts), parts))
        return out

    def _get_free_block(self, pool: _Pool, size: int, stream: int) -> _Block | None:
        """get_free_block: smallest cached block >= size on the same stream (lowest address on ties)."""
        b = pool.lower_bound(stream, size)
        if b is None or b.stream != stream:
            return None
        # max_split_size rules, never true at the default SIZE_MAX: no oversize block for a smaller
        # request, and an oversize request may take a block at most 20 MiB bigger.
        if size < MAX_SPLIT_SIZE <= b.size or (size >= MAX_SPLIT_SIZE and b.size >= size + K_LARGE_BUFFER):
            return None
        pool.erase(b)
        return b

    def _alloc_block(self, pool: _Pool, alloc_size: int, stream: int) -> _Block | None:
        """alloc_block: cudaMalloc a new segment, failing like the set_fraction limit check."""
        if self.capacity is not None and self.reserved + alloc_size > self.capacity:
            return None
        block = _Block(self._next_addr, alloc_size, stream, pool)
        self._next_addr += alloc_size
        self.reserved += alloc_size
        self.peak_reserved = max(self.peak_reserved, self.reserved)
        return block

    def _release_available_cached_blocks(self) -> bool:
        """release_available_cached_blocks frees oversize blocks only; with max_split_size at
        SIZE_MAX it returns false at once, so the oversize path is not replayed."""
        return False

    def _release_cached_blocks(self) -> bool:
        """release_cached_blocks -> release_blocks(large), release_blocks(small): cudaFree every cached
        segment that is one whole free block, on every stream. Split segments stay."""
        for pool in (self._large, self._small):
            for b in pool.blocks():
                if not b.is_split():
                    pool.erase(b)  # release_block
                    self.reserved -= b.size
        return True

    @staticmethod
    def _should_split(block: _Block, size: int) -> bool:
        """should_split: small pool splits any 512-byte remainder, large only one over 1 MiB."""
        remaining = block.size - size
        if block.pool.is_small:
            return remaining >= K_MIN_BLOCK_SIZE
        return size < MAX_SPLIT_SIZE and remaining > K_SMALL_SIZE

    def _alloc_found_block(self, block: _Block, size: int, stream: int, split: bool) -> int:
        """alloc_found_block: the request takes the front; the remainder goes back to the pool."""
        if split:
            remaining = block
            block = _Block(remaining.addr, size, stream, remaining.pool)
            block.prev, block.next = remaining.prev, remaining
            if block.prev is not None:
                block.prev.next = block
            remaining.prev = block
            remaining.addr += size
            remaining.size -= size
            remaining.pool.insert(remaining)
        block.allocated = True
        self._active[block.addr] = block
        self.allocated += block.size  # the whole block, even when the remainder was not split off
        self.peak_allocated = max(self.peak_allocated, self.allocated)
        return block.addr

    def _free_block(self, block: _Block) -> None:
        """free_block: merge with free neighbours in the segment, then cache the result."""
        for candidate in (block.prev, block.next):
            self._try_merge_blocks(block, candidate)
        block.pool.insert(block)

    @staticmethod
    def _try_merge_blocks(dst: _Block, src: _Block | None) -> int:
        """try_merge_blocks: absorb a free neighbour `src` into `dst`; returns the bytes absorbed."""
        if src is None or src.allocated:
            return 0
        src.pool.erase(src)
        if dst.prev is src:  # [src dst]
            dst.addr, dst.prev = src.addr, src.prev
            if dst.prev is not None:
                dst.prev.next = dst
        else:  # [dst src]
            dst.next = src.next
            if dst.next is not None:
                dst.next.prev = dst
        dst.size += src.size
        return src.size
