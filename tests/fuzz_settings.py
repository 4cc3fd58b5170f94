"""Settings of the fuzz tests. By default CI's short run: a fixed number of derandomized examples, no
database. Under `make fuzz` (FTC_FUZZ=1, see tests/fuzz_driver.py) each round draws FTC_FUZZ_SCALE times as
many random examples (the driver gives each round its own seed) and keeps what it finds in a saved example
database, so a failure found once is replayed first in every later round until it is fixed."""

from __future__ import annotations

import os

LONG = os.environ.get("FTC_FUZZ") == "1"
SCALE = int(os.environ.get("FTC_FUZZ_SCALE", "1"))
DATABASE = os.environ.get("FTC_FUZZ_DB", ".hypothesis/fuzz")


def fuzz_settings(**ci) -> dict:
    """Keyword arguments for `hypothesis.settings` (without max_examples: see `examples`)."""
    if not LONG:
        return ci
    from hypothesis.database import DirectoryBasedExampleDatabase

    return {**ci, "database": DirectoryBasedExampleDatabase(DATABASE), "derandomize": False}


def examples(ci: int) -> int:
    return ci * SCALE if LONG else ci
