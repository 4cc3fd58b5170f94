"""Errors a user can cause at run time (missing model folder, bad plan): reported as one clear
message with exit code 1, never as a traceback. Exit codes of `ftc run` live here too."""

from __future__ import annotations

EXIT_OK = 0
EXIT_USER_ERROR = 1
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: a full checkpoint was saved; `--resume auto` continues
EXIT_ABORTED = 130  # a second signal: stopped at once, the last complete checkpoint is intact


class RunError(Exception):
    """A problem with the plan, the model or the files that the user can fix."""
