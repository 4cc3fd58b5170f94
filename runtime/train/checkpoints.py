"""Checkpoints that survive crashes: each is written into a staging folder, gets a manifest of
sha256 checksums, and only then is renamed into place (a rename is atomic on one file system).
A folder without a manifest that verifies is not a checkpoint. Retention keeps the newest K, the
best by metric, and never the last complete one."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from . import faults

MANIFEST = "ftc-manifest.json"
PREFIX = "checkpoint-"
STAGING = ".staging"
_NAME = re.compile(r"^checkpoint-(\d+)$")


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    step: int
    metric: float | None  # the value of the keep-best metric at save time, if known
    metric_name: str | None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_manifest(folder: Path, step: int, metric_name: str | None, metric: float | None) -> None:
    """Checksum every file of `folder` (fsynced first) and write the manifest last."""
    files = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            with p.open("rb") as f:
                os.fsync(f.fileno())
            files[p.relative_to(folder).as_posix()] = {"sha256": _sha256(p), "size": p.stat().st_size}
    manifest = {"format": 1, "step": step, "metric": metric_name, "value": metric, "files": files}
    tmp = folder / (MANIFEST + ".tmp")
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    faults.manifest_point(step, tmp, text)  # tests only: may die with the manifest half written
    tmp.write_text(text, encoding="utf-8")
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, folder / MANIFEST)
    _fsync_dir(folder)


def read_manifest(folder: Path) -> dict | None:
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("files"), dict) else None


def verify(folder: Path) -> str | None:
    """None when every file in the manifest is present with its size and checksum; else why not."""
    manifest = read_manifest(folder)
    if manifest is None:
        return "no readable manifest (incomplete write?)"
    for name, meta in sorted(manifest["files"].items()):
        p = folder / name
        if not p.is_file():
            return f"{name} is missing"
        if p.stat().st_size != meta.get("size"):
            return f"{name} is truncated ({p.stat().st_size} of {meta.get('size')} bytes)"
        if _sha256(p) != meta.get("sha256"):
            return f"{name} does not match its checksum"
    return None


def list_complete(root: Path) -> list[Checkpoint]:
    """Checkpoints under `root` that have a manifest, oldest first (not verified: see `verify`)."""
    out = []
    if not root.is_dir():
        return out
    for p in root.iterdir():
        m = _NAME.match(p.name)
        if not m or not p.is_dir():
            continue
        manifest = read_manifest(p)
        if manifest is None:
            continue
        value = manifest.get("value")
        out.append(Checkpoint(p, int(m.group(1)), float(value) if value is not None else None, manifest.get("metric")))
    return sorted(out, key=lambda c: c.step)


def newest_verified(root: Path, warn=None) -> Checkpoint | None:
    """The newest checkpoint whose manifest verifies; each one skipped is reported through `warn`."""
    warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
    candidates = {c.path.name: c for c in list_complete(root)}
    names = sorted((p.name for p in root.iterdir() if _NAME.match(p.name) and p.is_dir()) if root.is_dir() else [],
                   key=lambda n: int(_NAME.match(n).group(1)), reverse=True)
    for name in names:
        path = root / name
        problem = verify(path)
        if problem is None:
            return candidates[name]
        warn(f"skipping {path}: {problem}")
    return None


class CheckpointManager:
    """Owns `root` (the run's checkpoints folder): staging, atomic commit, retention."""

    def __init__(self, root: Path, *, keep_last: int | None, keep_best: str | None, best_mode: str = "min"):
        self.root = Path(root)
        self.keep_last = keep_last
        self.keep_best = keep_best
        self.best_mode = best_mode or "min"
        self.staging = self.root / STAGING
        self.root.mkdir(parents=True, exist_ok=True)
        self._recover_replaced()
        shutil.rmtree(self.staging, ignore_errors=True)  # leftovers of an interrupted save
        self.staging.mkdir(exist_ok=True)  # every rank of a multi-process run writes its shards here

    def _recover_replaced(self) -> None:
        """A save of a step that already had a checkpoint moves the old one aside first; when the process died
        before the new one took its place, the old one goes back (it is complete: it had a manifest)."""
        if not self.staging.is_dir():
            return
        for old in self.staging.glob(f"{PREFIX}*.old"):
            final = self.root / old.name[: -len(".old")]
            if not final.exists() and _NAME.match(final.name) and verify(old) is None:
                os.replace(old, final)

    def commit(self, staged: Path, step: int, metric: float | None) -> Path:
        """Write the manifest into the staged folder, rename it into place, then apply retention."""
        write_manifest(staged, step, self.keep_best, metric)
        final = self.root / staged.name
        if final.exists():  # the same step saved again (e.g. preempted right after a periodic save)
            trash = self.staging / f"{final.name}.old"
            os.replace(final, trash)
            os.replace(staged, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(staged, final)
        _fsync_dir(self.root)
        self.retain(keep=final)
        return final

    def best(self, checkpoints: list[Checkpoint] | None = None) -> Checkpoint | None:
        scored = [c for c in (checkpoints if checkpoints is not None else list_complete(self.root))
                  if c.metric is not None]
        if not scored:
            return None
        if self.best_mode == "max":
            return max(scored, key=lambda c: (c.metric, c.step))
        return min(scored, key=lambda c: (c.metric, -c.step))

    def retain(self, keep: Path | None = None) -> list[Path]:
        """Delete what retention does not keep; returns the deleted paths. `keep` (the checkpoint just
        committed) always stays, even when a newer-numbered one is damaged and so counts for nothing."""
        complete = list_complete(self.root)
        if not complete or self.keep_last is None:
            return []
        keep = {c.path for c in complete[-max(1, self.keep_last):]} | ({Path(keep)} if keep else set())
        best = self.best(complete)
        if best is not None:
            keep.add(best.path)
        deleted = []
        for c in complete:
            if c.path not in keep:
                trash = self.staging / f"{c.path.name}.deleting"
                os.replace(c.path, trash)  # out of sight first: never a half-deleted "checkpoint"
                shutil.rmtree(trash, ignore_errors=True)
                deleted.append(c.path)
        return deleted
