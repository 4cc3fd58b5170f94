"""The plan contract: what `ftc compile` writes and `ftc run` reads, imported by both sides and importing
neither. The JSON Schema (schema.json), the constants both sides share (contract.py), and `load_plan`, the
runtime's one way in, which validates a plan.json and returns a frozen, typed `Plan` (sections.py).

The compiler needs only the constants; the loader and the typed sections are imported on first use, so
`ftc check` does not pay for them."""

from __future__ import annotations

from .contract import (ALL_LINEAR, ENTRY_MODULE, EXIT_ABORTED, EXIT_NO_SPACE, EXIT_OK, EXIT_PREEMPTED, EXIT_USAGE,
                       EXIT_USER_ERROR, LAUNCHERS, PLAN_FILE, SCHEMA_VERSION, UserError)

_LAZY = {"PlanError": "load", "load_plan": "load", "plan_errors": "load", "plan_from_json": "load",
         "read_schema": "load", "Plan": "sections"}

__all__ = ["ALL_LINEAR", "ENTRY_MODULE", "EXIT_ABORTED", "EXIT_NO_SPACE", "EXIT_OK", "EXIT_PREEMPTED", "EXIT_USAGE",
           "EXIT_USER_ERROR", "LAUNCHERS", "PLAN_FILE", "SCHEMA_VERSION", "UserError", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
