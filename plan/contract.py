"""The constants compiler and runtime must agree on, defined once: the plan's schema version, the module
every rank runs, the spelling of "every linear layer", the launchers, and the exit codes of a run."""

from __future__ import annotations

SCHEMA_VERSION = 1
PLAN_FILE = "plan.json"
# Every rank of a plan runs this module (`python -m ENTRY_MODULE --plan DIR`); launch.sh and plan.launch name it.
ENTRY_MODULE = "ftc.runtime.train"
# LoRA targets for an architecture the compiler does not know: every linear layer but the output (peft's
# `all-linear`). Where the architecture is known, lowering writes the module names instead.
ALL_LINEAR = "all_linear"
LAUNCHERS = ("python", "accelerate", "torchrun", "deepspeed")

EXIT_OK = 0
EXIT_USER_ERROR = 1  # a bad plan, model or data set: one message, never a traceback
EXIT_USAGE = 2  # a bad command line or recipe (argparse's code, and the compiler's diagnostics)
EXIT_NO_SPACE = 74  # EX_IOERR: the disk filled up during a save; the last complete checkpoint is intact
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: a full checkpoint was saved; `--resume auto` continues
EXIT_ABORTED = 130  # a second signal: stopped at once, the last complete checkpoint is intact


class UserError(Exception):
    """The base of every error a run reports as one message instead of a traceback: a plan that cannot be
    read (PlanError), a model, data set, launcher or sweep problem (the runtime's RunError, DataError,
    LaunchError, SweepError). It carries the exit code the process ends with."""

    exit_code = EXIT_USER_ERROR
