"""Multi-process and multi-node runs: from a compiled plan to the launcher that starts its ranks.

`ftc run` hands a plan here when it needs more than one process or names a launcher other than
`python`. The supervisor starts the compiled folder's own `launch.sh` (accelerate / torchrun / deepspeed,
or `srun` inside a SLURM allocation), streams rank 0's log, and when a rank fails stops all ranks and
names it. Each rank runs `python -m ftc.runtime.train --plan DIR`; `rank.py` is its side of the contract.
"""

from __future__ import annotations

import os

__all__ = ["needs_launcher", "run_launched"]


def needs_launcher(plan) -> bool:
    """More than one rank, or a launcher other than `python` (the plan's, or FTC_LAUNCHER)."""
    return plan.world_size > 1 or (os.environ.get("FTC_LAUNCHER") or plan.launch.launcher) != "python"


def run_launched(folder, args, **kw) -> int:
    from .cli import run_launched as run

    return run(folder, args, **kw)
