"""Variable-length attention for packed batches: each example attends only to itself, at the cost of its
own length, with no T×T mask.

transformers runs a packed row (position ids restarting at 0 per example) through sdpa with a
block-diagonal mask it builds from the position ids: every row pays attention over its whole width,
and a flattened micro-batch (one row of all tokens) pays it over all of them. Here the examples are
cut apart at their position resets, grouped by length into a few buckets (lengths rounded up a ladder
that wastes at most a quarter), and each bucket runs one causal sdpa call; the results are put back
in token order. The work is that of the examples themselves, as in flash-attention's varlen kernel,
on any device sdpa runs on.

Bucket padding sits after each example's last token, so causal attention never lets a real query see
it; padded queries are dropped. Batches that carry a padding mask, and decoding (one query against a
cache), go to transformers' own sdpa function unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

NAME = "ftc_varlen"

# Padded lengths of the buckets: each step at most 25% above the previous one.
_LADDER = (16, 32, 48, 64, 80, 96, 128, 160, 192, 256, 320, 384, 512)


def _round_up(n: int) -> int:
    for step in _LADDER:
        if n <= step:
            return step
    size = _LADDER[-1]
    while size < n:
        size = size * 5 // 4 // 64 * 64 + 64
    return size


@dataclass(frozen=True)
class Layout:
    """The examples regrouped into buckets of equal padded length, and the way back to token order."""

    gather: object  # long tensor: for each padded slot of every bucket, the token it reads
    buckets: tuple  # (examples, padded length) per bucket, in `gather` order
    restore: object  # long tensor: for each token, its padded slot


def layout(position_ids, rows: int, width: int) -> Layout:
    """Examples start where position ids restart (and at every row start)."""
    import torch

    pos = position_ids.reshape(rows, width) if position_ids.shape[0] == rows else position_ids.expand(rows, width)
    start = pos == 0
    start[:, 0] = True
    starts = torch.nonzero(start.reshape(-1)).squeeze(1).cpu()
    lengths = torch.diff(starts, append=torch.tensor([rows * width]))
    padded = torch.tensor([_round_up(int(n)) for n in lengths.tolist()])
    gathers, buckets = [], []
    restore = torch.empty(rows * width, dtype=torch.long)
    slot = 0
    for size in sorted(set(padded.tolist())):
        members = torch.nonzero(padded == size).squeeze(1)
        offsets = torch.arange(size)
        idx = starts[members, None] + offsets[None, :]
        mask = offsets[None, :] < lengths[members, None]
        slots = slot + torch.arange(idx.numel()).reshape(idx.shape)
        restore[idx[mask]] = slots[mask]
        gathers.append(torch.where(mask, idx, starts[members, None]).reshape(-1))  # padding reads a real token
        buckets.append((len(members), size))
        slot += idx.numel()
    device = position_ids.device
    return Layout(torch.cat(gathers).to(device), tuple(buckets), restore.to(device))


_cache: list = [None, None]  # (position_ids tensor, its Layout): every layer of one forward shares it


def _layout_for(position_ids, rows: int, width: int) -> Layout:
    if _cache[0] is not position_ids:
        _cache[0], _cache[1] = position_ids, layout(position_ids, rows, width)
    return _cache[1]


def varlen_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    """An attention function in transformers' interface: (B, H, T, D) inputs -> ((B, T, H, D), None)."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    position_ids = kwargs.get("position_ids")
    rows, heads, width, dim = query.shape
    if attention_mask is not None or position_ids is None or key.shape[2] != width or width == 1:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    lay = _layout_for(position_ids, rows, width)
    kv_heads = key.shape[1]
    qkv = torch.cat([t.transpose(1, 2).reshape(rows * width, t.shape[1], dim) for t in (query, key, value)], 1)
    qkv = qkv.index_select(0, lay.gather)  # one gather (an index_add in backward) for q, k and v
    parts = []
    sizes = [count * size for count, size in lay.buckets]
    for chunk, (count, size) in zip(qkv.split(sizes), lay.buckets):  # split: its backward is one cat
        chunk = chunk.view(count, size, heads + 2 * kv_heads, dim).transpose(1, 2)
        q, k, v = (t.contiguous() for t in chunk.split((heads, kv_heads, kv_heads), dim=1))
        o = torch.nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True,
                                                             scale=scaling, enable_gqa=kv_heads != heads)
        parts.append(o.transpose(1, 2).reshape(count * size, heads, dim))
    out = torch.cat(parts).index_select(0, lay.restore)
    return out.reshape(rows, width, heads, dim), None


def _no_mask(*args, attention_mask=None, **kwargs):
    """Packed batches need no mask here; a padding mask goes the sdpa way."""
    from transformers.masking_utils import sdpa_mask

    if attention_mask is None:
        return None
    return sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


def register() -> str:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, varlen_attention)
    AttentionMaskInterface.register(NAME, _no_mask)
    return NAME


def supported(config) -> bool:
    """Plain causal full attention only: no sliding windows, soft-capping, sinks or alibi."""
    text = getattr(config, "get_text_config", lambda: config)()
    if getattr(text, "sliding_window", None) and getattr(text, "use_sliding_window", True):
        return False
    if any(t != "full_attention" for t in (getattr(text, "layer_types", None) or ())):
        return False
    for attr in ("attn_logit_softcapping", "alibi", "position_embedding_type"):
        if getattr(text, attr, None) not in (None, False, "rope"):
            return False
    return getattr(text, "model_type", "") in VARLEN_FAMILIES


# Families whose attention calls the interface with (module, q, k, v, mask, dropout=, scaling=, **kwargs)
# and nothing else that depends on the mask.
VARLEN_FAMILIES = frozenset({"llama", "mistral", "qwen2", "qwen3", "phi3", "olmo2", "granite", "smollm3"})
