"""Values as the recipe language writes them: `true`, `nf4`, `"a b"`, `[q_proj, v_proj]`, `37 steps`, `5%`.

For everything the compiler and the runtime print back in recipe terms: `--set` text for a sweep's
trials, the fixes of an over-budget recipe, the values the auto passes decided.
"""

from __future__ import annotations

import json
import re
from typing import Any

# canonical unit of the plan -> its spelling in a recipe (`ratio` is written as a percentage)
_SPELLING = {"steps": "steps", "epochs": "epochs", "tokens": "tokens", "seconds": "s"}
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")


def spell(value: Any, unit: str | None = None) -> str:
    """A value as the recipe language writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if _WORD.match(value) else json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(spell(v, unit) for v in value) + "]"
    if unit == "ratio":
        return f"{_number(value * 100, 12)}%"
    text = _number(value)
    return f"{text} {_SPELLING.get(unit, unit)}" if unit else text


def _number(value, digits: int | None = None) -> str:
    """Integers as integers; floats in the shortest text that reads back as the same float (`repr`).
    A percentage is computed, so it keeps 12 significant digits: 0.05 prints `5%`, not `5.000000000000001%`."""
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}g}" if digits else repr(float(value))
