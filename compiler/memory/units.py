"""Byte amounts as people read them."""

from __future__ import annotations

GiB = 2**30


def gib(value: int | float) -> str:
    """`21.3 GiB`; small amounts in MiB."""
    if abs(value) < 0.1 * GiB:
        return f"{value / 2**20:.0f} MiB"
    return f"{value / GiB:.1f} GiB"
