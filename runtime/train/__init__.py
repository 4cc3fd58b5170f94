"""Single-process training from a compiled plan: `execute(load_plan(folder), RunOptions(...))`."""

from .errors import EXIT_ABORTED, EXIT_OK, EXIT_PREEMPTED, EXIT_USER_ERROR, RunError
from ftc.plan import Plan, load_plan

__all__ = ["EXIT_ABORTED", "EXIT_OK", "EXIT_PREEMPTED", "EXIT_USER_ERROR", "Plan", "RunError", "load_plan",
           "execute", "RunOptions", "RunResult"]


def __getattr__(name):  # the training stack is imported only when a run actually starts
    if name in ("execute", "RunOptions", "RunResult"):
        from . import run

        return getattr(run, name)
    raise AttributeError(name)
