"""Errors a user can cause at run time (missing model folder, bad plan): reported as one clear
message with exit code 1, never as a traceback. Exit codes of `ftc run` live here too
(docs/reliability.md lists every stop path with its code)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_USER_ERROR = 1
EXIT_NO_SPACE = 74  # EX_IOERR: the disk filled up during a save; the last complete checkpoint is intact
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: a full checkpoint was saved; `--resume auto` continues
EXIT_ABORTED = 130  # a second signal: stopped at once, the last complete checkpoint is intact


class RunError(Exception):
    """A problem with the plan, the model or the files that the user can fix."""

    exit_code = EXIT_USER_ERROR


class NoSpaceError(RunError):
    """The disk filled up while a checkpoint or output was written."""

    exit_code = EXIT_NO_SPACE
