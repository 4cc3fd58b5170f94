"""Units and their dimensions. Resolved by the compiler, not the lexer: `24 Gb` is a diagnostic."""

from __future__ import annotations

from dataclasses import dataclass

BYTE_UNITS: dict[str, int] = {
    "B": 1,
    "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
    "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40,
}

# unit spelling -> (dimension, factor to the canonical unit)
UNITS: dict[str, tuple[str, float]] = {
    **{u: ("bytes", f) for u, f in BYTE_UNITS.items()},
    "step": ("steps", 1), "steps": ("steps", 1),
    "epoch": ("epochs", 1), "epochs": ("epochs", 1),
    "%": ("ratio", 0.01),
    "token": ("tokens", 1), "tokens": ("tokens", 1),
    "row": ("rows", 1), "rows": ("rows", 1),
    "s": ("duration", 1), "sec": ("duration", 1), "secs": ("duration", 1),
    "second": ("duration", 1), "seconds": ("duration", 1),
    "min": ("duration", 60), "mins": ("duration", 60), "minute": ("duration", 60), "minutes": ("duration", 60),
    "h": ("duration", 3600), "hr": ("duration", 3600), "hrs": ("duration", 3600),
    "hour": ("duration", 3600), "hours": ("duration", 3600),
    "d": ("duration", 86400), "day": ("duration", 86400), "days": ("duration", 86400),
}

DIMENSION_NAMES = {
    "bytes": "a size (`24 GiB`, `80GB`)",
    "steps": "a number of steps (`500 steps`)",
    "epochs": "a number of epochs (`2 epochs`)",
    "ratio": "a percentage (`10%`)",
    "tokens": "a number of tokens (`2048 tokens`)",
    "rows": "a number of rows (`500 rows`)",
    "duration": "a duration (`30 min`, `4h`)",
}

EXAMPLE_UNIT = {"bytes": "GiB", "steps": "steps", "epochs": "epochs", "ratio": "%", "tokens": "tokens",
                "rows": "rows", "duration": "min"}


@dataclass(frozen=True)
class Amount:
    """A resolved quantity in its canonical unit: steps, epochs, ratio (0.03 for 3%), tokens, rows, seconds."""

    value: int | float
    unit: str  # steps | epochs | ratio | tokens | rows | seconds

    def to_json(self) -> dict:
        return {"value": self.value, "unit": self.unit}

    def __str__(self) -> str:
        if self.unit == "ratio":
            return f"{self.value * 100:g}%"
        return f"{self.value:g} {self.unit}"


def unit_suggestion(unit: str) -> str | None:
    """A did-you-mean help for a unit with the wrong case or a near miss (`Gb` -> `GB` or `GiB`)."""
    lower = unit.lower()
    for prefix, power in (("k", 1), ("m", 2), ("g", 3), ("t", 4)):
        if lower in (prefix, prefix + "b", prefix + "ib", prefix + "bit", prefix + "byte", prefix + "bytes"):
            dec, binary = prefix.upper() + "B", prefix.upper() + "iB"
            return f"did you mean `{dec}` (10^{3 * power} bytes) or `{binary}` (2^{10 * power} bytes)?"
    same_case = [u for u in UNITS if u.lower() == lower and u != unit]
    if same_case:
        return f"did you mean `{same_case[0]}`?"
    from ftc.compiler.diagnostics import did_you_mean

    guess = did_you_mean(unit, UNITS.keys(), max_distance=1 if len(unit) <= 3 else 2)
    return f"did you mean `{guess}`?" if guess else None
