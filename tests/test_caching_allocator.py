"""bench/caching_allocator.py replays the CUDA caching allocator's default policy.

Every expected value is worked out by hand from the C++ rules (round_size, get_allocation_size,
get_free_block, should_split, try_merge_blocks, release_cached_blocks), never from the replay.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from caching_allocator import CachingAllocator, SimulatedOOM  # noqa: E402

MiB = 1 << 20


def test_tiny_sizes_round_to_512_byte_blocks():
    a = CachingAllocator()
    a.malloc(1)
    a.malloc(513)  # two blocks
    assert a.allocated == 512 + 1024
    assert a.segments() == [(2 * MiB, [(512, True), (1024, True), (2 * MiB - 1536, False)])]


def test_small_requests_share_one_2mib_segment():
    a = CachingAllocator()
    for _ in range(3):
        a.malloc(1000)  # 1024 each, carved from the same small segment
    assert a.reserved == 2 * MiB
    assert a.segments() == [(2 * MiB, [(1024, True)] * 3 + [(2 * MiB - 3072, False)])]


def test_two_1mib_requests_fill_a_small_segment_and_a_third_needs_another():
    a = CachingAllocator()
    a.malloc(MiB)  # still "small" (<= kSmallSize): 1 MiB remainder >= 512, split
    a.malloc(MiB)  # takes the 1 MiB remainder exactly, nothing left to split
    assert a.segments() == [(2 * MiB, [(MiB, True), (MiB, True)])]
    a.malloc(MiB)
    assert a.reserved == 4 * MiB


def test_5mib_request_reserves_a_20mib_segment():
    a = CachingAllocator()
    a.malloc(5 * MiB)
    assert (a.allocated, a.reserved) == (5 * MiB, 20 * MiB)
    assert a.segments() == [(20 * MiB, [(5 * MiB, True), (15 * MiB, False)])]


def test_100mib_plus_one_reserves_102mib():
    a = CachingAllocator()
    a.malloc(100 * MiB + 1)  # rounds to 100 MiB + 512; segment rounds up to 2 MiB
    assert a.reserved == 102 * MiB
    # remainder 2 MiB - 512 > 1 MiB, so it is split off and stays cached
    assert a.allocated == 100 * MiB + 512
    assert a.segments() == [(102 * MiB, [(100 * MiB + 512, True), (2 * MiB - 512, False)])]


def test_large_remainder_of_1mib_is_not_split_and_counts_as_allocated():
    a = CachingAllocator()
    a.malloc(11 * MiB)  # 12 MiB segment; remainder 1 MiB is not > kSmallSize
    assert (a.allocated, a.reserved) == (12 * MiB, 12 * MiB)
    assert a.segments() == [(12 * MiB, [(12 * MiB, True)])]


def test_free_and_realloc_same_size_reuses_the_segment():
    a = CachingAllocator()
    h = a.malloc(50 * MiB)
    a.free(h)
    assert (a.allocated, a.reserved) == (0, 50 * MiB)
    a.malloc(50 * MiB)
    assert (a.reserved, a.peak_reserved) == (50 * MiB, 50 * MiB)
    assert a.segments() == [(50 * MiB, [(50 * MiB, True)])]


def test_best_fit_picks_the_smallest_sufficient_cached_block():
    a = CachingAllocator()
    handles = [a.malloc(n * MiB) for n in (30, 12, 40)]  # three exact-size segments
    for h in handles:
        a.free(h)
    a.malloc(11 * MiB)  # fits 12, 30 and 40: takes 12, remainder 1 MiB not split
    a.malloc(25 * MiB)  # fits 30 and 40: takes 30, splits off 5 MiB
    assert a.reserved == 82 * MiB
    assert a.segments() == [
        (30 * MiB, [(25 * MiB, True), (5 * MiB, False)]),
        (12 * MiB, [(12 * MiB, True)]),
        (40 * MiB, [(40 * MiB, False)]),
    ]


def test_fragmentation_half_used_segment_forces_a_new_one():
    a = CachingAllocator()
    a.free(a.malloc(448 * MiB))  # A
    a.malloc(224 * MiB)  # B takes the front of A's segment
    assert a.segments() == [(448 * MiB, [(224 * MiB, True), (224 * MiB, False)])]
    a.malloc(448 * MiB)  # C: no cached block of 448 MiB left
    assert (a.reserved, a.peak_reserved) == (896 * MiB, 896 * MiB)
    assert (a.allocated, a.peak_allocated) == (672 * MiB, 672 * MiB)
    assert a.segments()[1] == (448 * MiB, [(448 * MiB, True)])


@pytest.mark.parametrize("first", [0, 1], ids=["merge-into-next", "merge-into-prev"])
def test_adjacent_freed_halves_merge(first):
    a = CachingAllocator()
    a.free(a.malloc(40 * MiB))
    halves = [a.malloc(20 * MiB), a.malloc(20 * MiB)]
    assert a.segments() == [(40 * MiB, [(20 * MiB, True), (20 * MiB, True)])]
    a.free(halves[first])
    a.free(halves[1 - first])
    assert a.segments() == [(40 * MiB, [(40 * MiB, False)])]
    a.malloc(40 * MiB)  # without the merge this would need an 80 MiB total
    assert a.reserved == 40 * MiB


def test_middle_block_freed_last_merges_both_neighbours():
    a = CachingAllocator()
    x, y, z = a.malloc(1000), a.malloc(1000), a.malloc(1000)
    a.free(x)
    a.free(z)  # merges with the free tail of the segment
    assert a.segments() == [(2 * MiB, [(1024, False), (1024, True), (2 * MiB - 2048, False)])]
    a.free(y)
    assert a.segments() == [(2 * MiB, [(2 * MiB, False)])]


def test_block_freed_on_one_stream_is_not_reused_on_another():
    a = CachingAllocator()
    a.free(a.malloc(50 * MiB, stream=0))
    a.malloc(50 * MiB, stream=1)
    assert a.reserved == 100 * MiB
    a.malloc(50 * MiB, stream=0)  # the stream-0 block is still there for stream 0
    assert a.reserved == 100 * MiB


def test_lower_bound_does_not_spill_into_the_next_stream():
    a = CachingAllocator()
    a.free(a.malloc(50 * MiB, stream=1))
    a.malloc(10 * MiB, stream=0)  # (0, 10 MiB) sorts just before the stream-1 block; must not take it
    assert a.reserved == 60 * MiB


def test_over_capacity_releases_fully_free_cached_segments_then_succeeds():
    a = CachingAllocator(capacity=100 * MiB)
    a.free(a.malloc(1000, stream=1))  # a cached 2 MiB small segment on another stream
    a.free(a.malloc(60 * MiB))
    assert a.reserved == 62 * MiB
    a.malloc(70 * MiB)  # 62 + 70 > 100: release both cached segments, then 70 fits
    assert (a.reserved, a.peak_reserved) == (70 * MiB, 70 * MiB)
    assert a.segments() == [(70 * MiB, [(70 * MiB, True)])]


def test_real_overflow_raises_simulated_oom():
    a = CachingAllocator(capacity=100 * MiB)
    a.malloc(60 * MiB)
    with pytest.raises(SimulatedOOM):
        a.malloc(50 * MiB)
    assert (a.reserved, a.allocated) == (60 * MiB, 60 * MiB)


def test_split_cached_segment_cannot_be_released_so_fragmentation_ooms():
    a = CachingAllocator(capacity=100 * MiB)
    a.free(a.malloc(60 * MiB))
    a.malloc(30 * MiB)  # splits the 60 MiB segment: 30 MiB free but not releasable
    with pytest.raises(SimulatedOOM):
        a.malloc(50 * MiB)  # 60 + 50 > 100 and nothing whole to release
    assert a.segments() == [(60 * MiB, [(30 * MiB, True), (30 * MiB, False)])]


def test_free_of_unknown_handle_is_an_error():
    a = CachingAllocator()
    h = a.malloc(1000)
    a.free(h)
    with pytest.raises(ValueError):
        a.free(h)


def test_small_block_is_split_when_exactly_one_512_byte_block_remains():
    a = CachingAllocator()
    a.malloc(MiB)
    a.malloc(MiB - 512)  # the 1 MiB remainder leaves exactly kMinBlockSize: should_split says yes
    assert a.allocated == 2 * MiB - 512
    assert a.segments() == [(2 * MiB, [(MiB, True), (MiB - 512, True), (512, False)])]
