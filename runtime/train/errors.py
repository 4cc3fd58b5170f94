"""Errors a user can cause at run time (missing model folder, bad plan): reported as one clear
message with exit code 1, never as a traceback. Exit codes of `ftc run` live here too."""

from __future__ import annotations

from ftc.plan import EXIT_ABORTED, EXIT_OK, EXIT_PREEMPTED, EXIT_USER_ERROR  # noqa: F401  (defined once there)


class RunError(Exception):
    """A problem with the plan, the model or the files that the user can fix."""
