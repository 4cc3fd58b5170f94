"""`ftc run` for a multi-process plan: choose the run folder, check the launcher and the port, start,
supervise, report. User problems are one message and exit 1."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from .errors import LaunchError
from .ports import port_in_use
from .spec import INSTALL_HINT, LaunchSpec, build_spec
from .supervise import supervise


def preflight(spec: LaunchSpec) -> None:
    """What would otherwise fail late and obscurely: a launcher that is not installed, a busy port."""
    for binary in spec.binaries:
        if shutil.which(binary, path=spec.env.get("PATH", "")) is None:
            raise LaunchError(f"the {spec.launcher if binary != 'srun' else 'SLURM'} launcher `{binary}` is not "
                              f"on PATH ({INSTALL_HINT.get(binary, 'install it')}); or pick another with "
                              "FTC_LAUNCHER=accelerate|torchrun|deepspeed")
    if spec.node_rank == 0 and not spec.slurm and spec.world_size > 1 and port_in_use(spec.master_port):
        raise LaunchError(f"rendezvous port {spec.master_port} (MASTER_PORT, plan.launch.master_port) is already in "
                          f"use on this machine; set MASTER_PORT to a free port, or stop what holds it")


def choose_run_dir(plan, resume: str | None, run_id: str | None, nnodes: int) -> tuple[Path, tuple[str, ...]]:
    """The run folder all ranks share and the arguments that make every rank use it. A resume is resolved
    here, once, and passed to every rank as the checkpoint path (so all ranks load the same one)."""
    from ftc.runtime.train.outputs import new_run_dir
    from ftc.runtime.train.resume import find_resume

    point = find_resume(plan, resume)
    if point is not None:
        print(f"ftc: resuming {point.run_dir} from {point.checkpoint.name} (step {point.step}, manifest verified)",
              flush=True)
        return point.run_dir, ("--resume", str(point.checkpoint))
    if nnodes > 1:  # every node's `ftc run` is given the same --run-id (or FTC_RUN_ID); whichever is first creates it
        name = run_id or os.environ.get("FTC_RUN_ID")
        if not name:
            raise LaunchError("a multi-node run needs the same run folder name on every node: pass --run-id NAME "
                              "(or set FTC_RUN_ID) on each node")
        folder = plan.runs_dir / plan.recipe_name / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder, ()
    return new_run_dir(plan, run_id), ()


def run_launched(folder, args, *, env=None, interpreter_dir=Path(sys.executable).parent, kill_after_s: float = 10.0,
                 out=None) -> int:
    from ftc.plan import UserError, load_plan

    out = out or sys.stdout
    run_dir = None
    try:
        plan = load_plan(folder)
        run_dir, entry = choose_run_dir(plan, args.resume, args.run_id, plan.launch.nnodes)
        if args.merge is not None:
            entry += ("--merge",) if args.merge else ("--no-merge",)
        spec = build_spec(plan, run_dir, entry, env=env, interpreter_dir=interpreter_dir)
        preflight(spec)
    except UserError as exc:
        print(f"ftc: error: {exc}", file=sys.stderr)
        if run_dir is not None and not args.resume and plan.launch.nnodes == 1:
            try:
                run_dir.rmdir()  # the run folder this attempt created and never used (shared ones stay)
            except OSError:
                pass
        return exc.exit_code
    where = "on every node of the SLURM allocation (srun)" if spec.slurm else \
        f"node {spec.node_rank} of {spec.nnodes}, rendezvous {spec.master_addr}:{spec.master_port}"
    print(f"ftc: launching {spec.world_size} rank(s) with {spec.launcher} ({where}); run folder {run_dir}; "
          f"per-rank logs in {spec.log_dir}", file=out, flush=True)
    result = supervise(spec, out=out, kill_after_s=kill_after_s)
    if result.status == "failed":
        print(f"ftc: error: {result.message}", file=sys.stderr, flush=True)
    elif result.status == "preempted":
        print(f"ftc: preempted: {result.message}. Continue with: ftc run ... --resume {run_dir}", file=out,
              flush=True)
    elif result.status == "interrupted":
        print(f"ftc: {result.message}; the last complete checkpoint is kept", file=sys.stderr, flush=True)
    return result.exit_code
