"""Errors a user can cause at run time (missing model folder, a data set that cannot be read): reported as one
clear message with exit code 1, never as a traceback. The exit codes of a run are the plan contract's
(ftc.plan), re-exported here for the runtime's modules (docs/reliability.md lists every stop path with its code)."""

from __future__ import annotations

from ftc.plan import EXIT_ABORTED, EXIT_NO_SPACE, EXIT_OK, EXIT_PREEMPTED, EXIT_USER_ERROR, UserError  # noqa: F401


class RunError(UserError):
    """A problem with the model or the files that the user can fix."""


class NoSpaceError(RunError):
    """The disk filled up while a checkpoint or output was written."""

    exit_code = EXIT_NO_SPACE
