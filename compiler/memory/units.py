"""Byte amounts and parameter counts as people read them."""

from __future__ import annotations

GiB = 2**30


def gib(value: int | float) -> str:
    """`21.3 GiB`; small amounts in MiB."""
    if abs(value) < 0.1 * GiB:
        return f"{value / 2**20:.0f} MiB"
    return f"{value / GiB:.1f} GiB"


def param_count(n: int) -> str:
    """`6.74B`, `494M`, `979K`: three significant figures, as model cards round them."""
    rounded = float(f"{n:.3g}")
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if rounded >= scale:
            value = rounded / scale
            return f"{value:.{2 - len(str(int(value))) + 1}f}{suffix}"
    return str(n)
