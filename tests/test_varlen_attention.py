"""ftc's attention for packed batches equals sdpa under the block-diagonal causal mask (outputs and
gradients, fp32), with and without grouped-query heads; batches with a padding mask take sdpa's path."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from ftc.runtime.train import varlen  # noqa: E402


class _Module:
    is_causal = True

    def __init__(self, groups: int):
        self.num_key_value_groups = groups


def _positions(rows: list[list[int]], width: int):
    """Position ids of packed rows: each example counts from 0; a row's tail is padding (its own block)."""
    pos = torch.zeros(len(rows), width, dtype=torch.long)
    for r, lengths in enumerate(rows):
        at = 0
        for n in lengths + [width - sum(lengths)]:
            pos[r, at:at + n] = torch.arange(n)
            at += n
    return pos


def _block_mask(pos):
    seg = torch.cumsum((pos == 0).long(), dim=1)
    causal = torch.ones(pos.shape[1], pos.shape[1], dtype=torch.bool).tril()
    return ((seg[:, :, None] == seg[:, None, :]) & causal)[:, None]


@pytest.mark.parametrize("kv_heads", [4, 2])
def test_matches_sdpa_with_a_block_diagonal_mask(kv_heads):
    g = torch.Generator().manual_seed(0)
    width, heads = 70, 4
    pos = _positions([[5, 17, 33, 9], [70], [1, 2, 40]], width)
    q = torch.randn(3, heads, width, 8, generator=g, requires_grad=True)
    k = torch.randn(3, kv_heads, width, 8, generator=g, requires_grad=True)
    v = torch.randn(3, kv_heads, width, 8, generator=g, requires_grad=True)
    out, _ = varlen.varlen_attention(_Module(heads // kv_heads), q, k, v, None, scaling=0.3, position_ids=pos)
    rep = heads // kv_heads
    want = torch.nn.functional.scaled_dot_product_attention(
        q, k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1), attn_mask=_block_mask(pos), scale=0.3)
    want = want.transpose(1, 2)
    assert out.shape == want.shape == (3, width, heads, 8)
    assert torch.allclose(out, want, atol=1e-5)
    grad = torch.randn(out.shape, generator=g)
    got = torch.autograd.grad((out * grad).sum(), (q, k, v))
    expected = torch.autograd.grad((want * grad).sum(), (q, k, v))
    for a, b in zip(got, expected):
        assert torch.allclose(a, b, atol=1e-5)


def test_layout_buckets_cover_every_token_once():
    pos = _positions([[3, 100, 20], [200, 56]], 256)
    lay = varlen.layout(pos, 2, 256)
    assert sorted(lay.restore.tolist()) == sorted(set(lay.restore.tolist()))  # a token reads one slot
    assert len(lay.restore) == 512
    slots = sum(count * size for count, size in lay.buckets)
    assert len(lay.gather) == slots
    assert all(size in varlen._LADDER for _, size in lay.buckets)


def test_padding_mask_goes_to_sdpa():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 2, 6, 4, generator=g) for _ in range(3))
    mask = torch.ones(2, 1, 6, 6, dtype=torch.bool).tril()
    mask[1, :, :, 4:] = False  # padding at the end of row 1
    out, _ = varlen.varlen_attention(_Module(1), q, k, v, mask, position_ids=torch.arange(6)[None])
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2)
    assert torch.allclose(out, want, atol=1e-6)
