"""Preemption: the first SIGTERM/SIGINT only sets a flag; the trainer finishes the current
optimizer step, saves a full checkpoint and stops. A second signal aborts at once (the last
complete checkpoint is intact because saves are atomic)."""

from __future__ import annotations

import os
import signal
import sys

from .errors import EXIT_ABORTED


class Preemption:
    """Installed around `trainer.train()`; `requested` is read at each step boundary."""

    def __init__(self, signals=(signal.SIGTERM, signal.SIGINT)):
        self.signals = signals
        self.requested: str | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.requested is not None:
            print(f"\nftc: second signal ({name}): aborting now; the last complete checkpoint is kept",
                  file=sys.stderr, flush=True)
            os._exit(EXIT_ABORTED)
        self.requested = name
        print(f"\nftc: {name} received: finishing this step and saving a checkpoint "
              "(send it again to abort at once)", file=sys.stderr, flush=True)

    def __enter__(self) -> "Preemption":
        for s in self.signals:
            self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
