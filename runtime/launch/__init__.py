"""Multi-process and multi-node runs: from a compiled plan to the launcher that starts its ranks.

`ftc run` hands a plan here when it needs more than one process or names a launcher other than
`python`. The supervisor starts the compiled folder's own `launch.sh` (accelerate / torchrun / deepspeed,
or `srun` inside a SLURM allocation), streams rank 0's log, and when a rank fails stops all ranks and
names it. Each rank runs `python -m ftc.runtime.train --plan DIR`; `rank.py` is its side of the contract.
"""

from __future__ import annotations

import os

__all__ = ["needs_launcher", "run_launched"]


def needs_launcher(raw_plan: dict) -> bool:
    """More than one rank, or a launcher other than `python` (the plan's, or FTC_LAUNCHER)."""
    launch = raw_plan.get("launch") or {}
    world = int((raw_plan.get("distributed") or {}).get("world_size") or 1)
    return world > 1 or (os.environ.get("FTC_LAUNCHER") or launch.get("launcher") or "python") != "python"


def run_launched(folder, args, **kw) -> int:
    from .cli import run_launched as run

    return run(folder, args, **kw)
