"""What a run was trained on, recorded when it starts (`inputs.json` in the run folder) and compared when it
resumes: the prepared data's cache key (it hashes the bytes of every data file, the data settings and the
tokenizer) and the tokenizer's own fingerprint. Resuming on other data or another tokenizer would not reach
the weights the run set out to train, so it stops with a message instead."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import RunError

INPUTS = "inputs.json"


def fingerprints(data, tokenizer) -> dict:
    from ftc.runtime.data.cache import tokenizer_fingerprint

    return {"format": 1, "data": data.report.cache_key, "tokenizer": tokenizer_fingerprint(tokenizer)}


def record(run_dir: Path, current: dict) -> None:
    from .outputs import write_json_atomic

    write_json_atomic(Path(run_dir) / INPUTS, current)


def check(run_dir: Path, current: dict) -> None:
    """Raise RunError when the run started on other inputs (a run folder from before inputs.json passes)."""
    try:
        started = json.loads((Path(run_dir) / INPUTS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    advice = (f"Restore the original, or start a new run without --resume (its checkpoints stay in {run_dir}).")
    if started.get("tokenizer") not in (None, current["tokenizer"]):
        raise RunError(f"cannot resume {run_dir}: the tokenizer changed since this run started (its files, chat "
                       f"template or special tokens), so resuming would not continue the same training. {advice}")
    if started.get("data") not in (None, current["data"]):
        raise RunError(f"cannot resume {run_dir}: the training data changed since this run started (a data file's "
                       f"bytes or the data settings), so resuming would not continue the same training. {advice}")
