"""Content-addressed cache of prepared data, and the hand-off between processes.

The key hashes everything the result depends on: the bytes of every data file, the complete
serialised tokenizer (vocabulary, merges, normaliser, added tokens), its chat template and special
tokens, the data settings and the pipeline version. A changed tokenizer or template gives a new key,
so a stale entry can never be reused. An entry is built in a temporary folder and renamed into place,
so a reader sees a complete entry or none. In multi-process runs the main process prepares under a
file lock while the others poll for the entry (or for a failure note), with no collective timeout.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import DataError

PIPELINE_VERSION = "2"  # bump when the prepared bytes change for the same inputs


def tokenizer_fingerprint(tokenizer) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
    if backend is not None:
        h.update(backend.to_str().encode())
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    template = tokenizer.chat_template
    h.update(json.dumps(template, sort_keys=True).encode())
    h.update(json.dumps(tokenizer.special_tokens_map, sort_keys=True, default=str).encode())
    added = {int(i): str(t) for i, t in tokenizer.added_tokens_decoder.items()}
    h.update(json.dumps(added, sort_keys=True).encode())
    return h.hexdigest()


def cache_key(settings: dict, train_files: list[str], eval_files: list[str], tokenizer_fp: str) -> str:
    from ftc import __version__

    payload = {"pipeline": PIPELINE_VERSION, "ftc": __version__, "settings": settings,
               "train": train_files, "eval": eval_files, "tokenizer": tokenizer_fp}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    root: Path
    key: str

    @property
    def path(self) -> Path:
        return self.root / self.key

    @property
    def ready_marker(self) -> Path:
        return self.path / "READY"

    @property
    def failure_note(self) -> Path:
        return self.root / f"{self.key}.failed"

    @property
    def lock_path(self) -> Path:
        return self.root / f"{self.key}.lock"

    def is_ready(self) -> bool:
        return self.ready_marker.exists()

    def write(self, build) -> None:
        """`build(tmp_dir)` writes the entry's files; then it is published atomically."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".tmp-{self.key[:16]}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            build(tmp)
            (tmp / "READY").write_text("ok\n")
            try:
                os.replace(tmp, self.path)
            except OSError:
                if not self.is_ready():  # another writer won the race with a complete entry: keep theirs
                    shutil.rmtree(self.path, ignore_errors=True)
                    os.replace(tmp, self.path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def note_failure(self, error: DataError) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        note = {"message": error.message, "file": error.file, "row": error.row, "unit": error.unit,
                "help": error.help}
        tmp = self.failure_note.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(note))
        os.replace(tmp, self.failure_note)

    def clear_failure(self) -> None:
        try:
            self.failure_note.unlink()
        except FileNotFoundError:
            pass

    def raise_if_failed(self, since: float | None = None) -> None:
        """Raise the main process's error. A note older than `since` (epoch seconds) may be left from an
        earlier run with the same inputs; the main process removes it when it starts, so the caller only
        passes `since` during a short grace period."""
        try:
            mtime = self.failure_note.stat().st_mtime
        except FileNotFoundError:
            return
        if since is None or mtime >= since:
            note = json.loads(self.failure_note.read_text())
            raise DataError(note["message"], file=note["file"], row=note["row"], unit=note["unit"], help=note["help"])

    def wait(self, poll_s: float = 0.5, say_every_s: float = 60.0, grace_s: float = 30.0) -> None:
        """Block until the main process has published the entry, or raise its failure."""
        started = last = time.monotonic()
        wall = time.time()
        while not self.is_ready():
            self.raise_if_failed(since=wall if time.monotonic() - started < grace_s else None)
            time.sleep(poll_s)
            now = time.monotonic()
            if now - last >= say_every_s:
                last = now
                print(f"ftc data: waiting for the main process to prepare the data ({now - started:.0f} s, "
                      f"cache {self.key[:16]})", file=sys.stderr, flush=True)

    def lock(self):
        from filelock import FileLock

        self.root.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.lock_path))
