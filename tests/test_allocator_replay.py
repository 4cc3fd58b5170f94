"""bench/allocator_replay.py: the allocation trace of a meta-device training step, and its replay."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import allocator_replay  # noqa: E402
from caching_allocator import round_size  # noqa: E402


def live_peak(events) -> tuple[int, int]:
    """(peak, bytes still live at the end) of a trace, counted in the allocator's 512-byte blocks."""
    sizes, live, peak = {}, 0, 0
    for kind, handle, size in events:
        if kind == "malloc":
            sizes[handle] = round_size(size)
            live += sizes[handle]
            peak = max(peak, live)
        else:
            live -= sizes.pop(handle)
    return peak, live


@pytest.mark.parametrize("quantized,reentrant", [(False, False), (True, True)])
def test_every_storage_a_step_creates_is_freed_and_weights_are_not_recorded(quantized, reentrant):
    model = allocator_replay.build(2, quantized, reentrant)
    events = allocator_replay.trace_steps(model, 1, 256, 2)
    mallocs = [size for kind, _, size in events if kind == "malloc"]
    _, left = live_peak(events)
    assert left == 0
    h = allocator_replay.LLAMA2_70B["hidden_size"]
    mlp_weight = 2 * h * allocator_replay.LLAMA2_70B["intermediate_size"]
    # 16-bit gate/up/down weights appear only where bitsandbytes dequantizes them: forward, recompute and
    # backward, in each of 2 layers and 2 steps
    assert mallocs.count(mlp_weight) == (3 * 3 * 2 * 2 if quantized else 0)


def test_replay_counts_what_the_trace_holds_and_reserves_at_least_that():
    model = allocator_replay.build(2, True, True)
    events = allocator_replay.trace_steps(model, 1, 512, 2)
    allocator = allocator_replay.replay(events)
    peak, _ = live_peak(events)
    assert peak <= allocator.peak_allocated <= peak + (1 << 20) * 8  # unsplit remainders of at most 1 MiB
    assert allocator.peak_reserved >= allocator.peak_allocated
    assert allocator.allocated == 0


def test_loading_keeps_the_quant_state_and_the_shards_asked_for():
    config = dict(allocator_replay.LLAMA2_70B, num_hidden_layers=2)
    offloaded = allocator_replay.replay(allocator_replay.loading_events(config, 2, keep_shards=False))
    sharded = allocator_replay.replay(allocator_replay.loading_events(config, 2, keep_shards=True))
    h, i, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    kv = config["num_key_value_heads"] * h // config["num_attention_heads"]
    weights = 2 * (2 * h * h + 2 * kv * h + 3 * h * i)
    absmax = sum(round_size(n // 64) + round_size(n // 64 // 256 * 4)
                 for n in (h * h, kv * h, kv * h, h * h, i * h, i * h, h * i)) * 2
    assert offloaded.allocated == absmax
    layer_shard = round_size((weights // 4 + 4 * h) // 2)
    assert sharded.allocated == absmax + 2 * layer_shard + round_size((4 * v * h + 2 * h) // 2)
