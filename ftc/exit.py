"""How an `ftc` process ends. After a run, with torch, transformers and their compiled extensions loaded, the
interpreter's own teardown (freeing every module and object one by one) takes 1-2 s per process, paid again
by every rank of a launch. Everything a run writes is closed and renamed into place before the command
returns, so the teardown does nothing a user needs: `leave` runs the parts that matter — the atexit handlers
(log handlers, trackers, file locks, multiprocessing children), a garbage collection (finalizers of unreachable
objects), a flush of every file still open for writing (standard streams included) — and ends the process with
the code. A process where torch never loaded, or with a non-daemon thread still running (it would be cut
short), exits the ordinary way."""

from __future__ import annotations

import sys


def _quick_exit_is_safe() -> bool:
    import threading

    if "torch" not in sys.modules:  # the compile path: teardown is quick already
        return False
    main = threading.main_thread()
    return all(t is main or t.daemon or not t.is_alive() for t in threading.enumerate())


def leave(code: int) -> None:
    """End the process with `code` (see the module docstring); never returns."""
    if not _quick_exit_is_safe():
        raise SystemExit(code)
    import atexit
    import gc
    import io
    import os

    atexit._run_exitfuncs()  # what the interpreter runs first at exit; the handlers are cheap
    gc.collect()
    for obj in gc.get_objects():  # files still open (stdout and stderr among them): teardown would flush them
        if isinstance(obj, io.IOBase):
            try:
                if not obj.closed and obj.writable():
                    obj.flush()
            except (OSError, ValueError):
                pass
    os._exit(code)
