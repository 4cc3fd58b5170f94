"""Helpers of the fault-matrix tests: what a run folder holds that must never be lost (verified
checkpoints, metric records, outputs), damage to checkpoint files, and the figures docs/reliability.md
quotes (FTC_MATRIX_FIGURES=FILE appends them as JSON lines)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path


def complete_checkpoints(run: Path) -> dict[str, int]:
    """Verified checkpoints of a run: name -> bytes."""
    from ftc.runtime.train.checkpoints import list_complete, verify

    return {c.path.name: sum(f.stat().st_size for f in c.path.rglob("*") if f.is_file())
            for c in list_complete(run / "checkpoints") if verify(c.path) is None}


def _timing(key: str) -> bool:
    return key == "time" or key.endswith("_runtime") or key.endswith("_per_second")


def records(run: Path) -> list[dict]:
    """metrics.jsonl without its timings (a record written again after a resume took another time)."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    return [{k: v for k, v in json.loads(line).items() if not _timing(k)}
            for line in path.read_text().splitlines() if line.strip()]


def newest_step(run: Path) -> int:
    return max((int(n.split("-")[1]) for n in complete_checkpoints(run)), default=0)


def final_tensors(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run / "final" / "adapter_model.safetensors"))


def bitwise_equal(a: dict, b: dict) -> bool:
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)


def losses(run: Path) -> list[tuple[str, int, float]]:
    """Every loss and eval loss with its step, in file order (a record written twice would show)."""
    return [(key, r["step"], r[key]) for r in records(run) for key in ("loss", "eval_loss") if key in r]


def damage(path: Path, how: str) -> None:
    """truncate (to half), bitflip (one bit in the middle) or delete one file of a checkpoint."""
    if how == "delete":
        path.unlink()
        return
    data = bytearray(path.read_bytes())
    if how == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    elif how == "bitflip":
        data[len(data) // 2] ^= 0x10
        path.write_bytes(bytes(data))
    else:
        raise ValueError(how)


@dataclass
class Ledger:
    """Counts what the matrix did, and the bytes of complete checkpoints and metric records lost (must be 0)."""

    config: str
    faults: dict = field(default_factory=dict)
    bytes_lost: int = 0
    records_lost: int = 0
    bitwise_resumes: int = 0
    damaged: set = field(default_factory=set)

    def damage(self, checkpoint: Path, name: str, how: str) -> None:
        damage(checkpoint / name, how)
        self.damaged.add(checkpoint.name)
        kind = {"truncate": "truncated", "bitflip": "bit-flipped", "delete": "deleted"}[how] + " checkpoint file"
        self.faults[kind] = self.faults.get(kind, 0) + 1

    def before(self, run: Path) -> tuple[dict, list]:
        return complete_checkpoints(run), records(run)

    def after(self, kind: str, run: Path, before: tuple[dict, list]) -> None:
        """A fault of `kind` happened: every checkpoint complete before it is still complete (or was
        written again, complete), and every metric record up to the newest complete step is still there."""
        self.faults[kind] = self.faults.get(kind, 0) + 1
        ckpts, recs = before
        now = complete_checkpoints(run)
        self.bytes_lost += sum(size for name, size in ckpts.items() if name not in now and name not in self.damaged)
        kept_to = newest_step(run)
        self.records_lost += sum(1 for r in recs if r.get("step", 0) <= kept_to and r not in records(run))

    def write(self) -> None:
        path = os.environ.get("FTC_MATRIX_FIGURES")
        if path:
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"config": self.config, "faults": self.faults, "bytes_lost": self.bytes_lost,
                                    "records_lost": self.records_lost, "bitwise_resumes": self.bitwise_resumes},
                                   sort_keys=True) + "\n")
