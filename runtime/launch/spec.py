"""From a compiled plan to one launcher invocation: which program, which arguments, which environment.

`ftc run` starts the compiled folder's own `launch.sh` (the file `ftc compile` wrote and a reviewer
read), telling it this node's rank and the rendezvous address through the environment, exactly as a
user or `slurm.sbatch` would. Inside a SLURM allocation (SLURM_JOB_ID set, not already inside a job
step) it runs what `slurm.sbatch` runs: one `srun` task per node, each starting `launch.sh` with
NODE_RANK=$SLURM_NODEID and MASTER_ADDR = the allocation's first host.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from .errors import LaunchError

LAUNCHERS = ("python", "accelerate", "torchrun", "deepspeed")
# The program each launcher needs on PATH (launch.sh runs it by name).
BINARIES = {"python": None, "accelerate": "accelerate", "torchrun": "torchrun", "deepspeed": "deepspeed"}
INSTALL_HINT = {"accelerate": "pip install accelerate", "torchrun": "pip install torch",
                "deepspeed": "pip install deepspeed", "srun": "run inside a SLURM allocation with srun on PATH"}


@dataclass(frozen=True)
class LaunchSpec:
    """Everything needed to start (and later judge) one node's share of a run."""

    folder: Path  # the compiled folder (launch.sh, plan.json, configs)
    launcher: str  # python | accelerate | torchrun | deepspeed
    argv: tuple[str, ...]
    env: Mapping[str, str]  # the complete environment of the launcher process
    binaries: tuple[str, ...]  # programs that must be found on env PATH
    nnodes: int
    nproc_per_node: int
    node_rank: int
    master_addr: str
    master_port: int
    run_dir: Path
    log_dir: Path
    slurm: bool = False
    entry_args: tuple[str, ...] = field(default=())

    @property
    def world_size(self) -> int:
        return self.nnodes * self.nproc_per_node

    @property
    def local_ranks(self) -> tuple[int, ...]:
        """Global ranks started on this node (every node when srun starts them all from here)."""
        if self.slurm:
            return tuple(range(self.world_size))
        first = self.node_rank * self.nproc_per_node
        return tuple(range(first, first + self.nproc_per_node))

    def describe(self) -> str:
        return " ".join(shlex.quote(a) for a in self.argv)


def _int(env: Mapping[str, str], key: str, default: int) -> int:
    value = env.get(key)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise LaunchError(f"{key}={value!r} is not a number") from None


def in_slurm_allocation(env: Mapping[str, str]) -> bool:
    """Inside an allocation but not already inside a job step (where srun would nest)."""
    return bool(env.get("SLURM_JOB_ID")) and not env.get("SLURM_STEP_ID", "").isdigit()


def _slurm_hosts(env: Mapping[str, str]) -> list[str]:
    nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if not nodelist:
        raise LaunchError("SLURM_JOB_ID is set but SLURM_JOB_NODELIST is not; run inside the allocation")
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], env=dict(env), capture_output=True,
                             text=True, timeout=30, check=True).stdout
    except FileNotFoundError:
        raise LaunchError("SLURM_JOB_ID is set but `scontrol` is not on PATH (needed for the node names)") from None
    except (subprocess.SubprocessError, OSError) as exc:
        raise LaunchError(f"scontrol show hostnames {nodelist} failed: {exc}") from None
    hosts = [h for h in out.split() if h]
    if not hosts:
        raise LaunchError(f"scontrol lists no hosts for {nodelist}")
    return hosts


def build_spec(plan, run_dir: Path, entry_args: tuple[str, ...] = (), *, env: Mapping[str, str] | None = None,
               interpreter_dir: Path | None = Path(sys.executable).parent) -> LaunchSpec:
    """The invocation for this node. `plan` is a loaded Plan; `run_dir` the run folder all ranks share.

    Environment honoured (as launch.sh does): FTC_LAUNCHER, NODE_RANK (or SLURM_NODEID), MASTER_ADDR,
    MASTER_PORT. `interpreter_dir` (this Python's bin folder) is put first on PATH so the launchers and
    `python` of the installation running ftc are the ones used; None leaves PATH as it is.
    """
    env = dict(os.environ if env is None else env)
    launch = plan.launch
    folder = plan.folder
    launcher = env.get("FTC_LAUNCHER") or launch.launcher
    if launcher not in LAUNCHERS:
        raise LaunchError(f"FTC_LAUNCHER={launcher!r}: choose one of {', '.join(LAUNCHERS)}")
    nnodes, nproc = launch.nnodes, launch.nproc_per_node
    world = plan.world_size
    if nnodes * nproc != world:
        raise LaunchError(f"plan.launch gives {nnodes} node(s) x {nproc} process(es) but the plan counts "
                          f"{world} ranks; recompile the recipe")
    if launcher == "python" and world > 1:
        raise LaunchError(f"the python launcher starts one process; this plan needs {world} "
                          "(use FTC_LAUNCHER=accelerate, torchrun or deepspeed)")
    script = folder / "launch.sh"
    if not script.is_file():
        raise LaunchError(f"{script} is missing; recompile with `ftc compile` (ftc runs the generated launch.sh)")
    slurm = in_slurm_allocation(env) and launcher != "python"
    master_addr = env.get("MASTER_ADDR") or launch.master_addr
    master_port = _int(env, "MASTER_PORT", launch.master_port)
    node_rank = 0 if slurm else _int(env, "NODE_RANK", _int(env, "SLURM_NODEID", 0))
    if not 0 <= node_rank < nnodes:
        raise LaunchError(f"NODE_RANK={node_rank}, but the plan has {nnodes} node(s) (0..{nnodes - 1})")
    if interpreter_dir is not None:
        env["PATH"] = os.pathsep.join([str(interpreter_dir), env.get("PATH", "")])
        env.setdefault("PYTHON", sys.executable)
    for key, value in launch.env.items():
        env.setdefault(key, str(value))
    log_dir = run_dir / "logs"
    env.update({"FTC_LAUNCHER": launcher, "MASTER_ADDR": master_addr, "MASTER_PORT": str(master_port),
                "FTC_RUN_ID": run_dir.name, "FTC_RANK_LOG_DIR": str(log_dir)})
    binaries = tuple(b for b in (BINARIES[launcher],) if b)
    if slurm:
        hosts = _slurm_hosts(env)
        env["MASTER_ADDR"] = master_addr = hosts[0]  # as slurm.sbatch: the allocation's first host
        if launcher == "deepspeed":  # as slurm.sbatch: a hostfile from the allocation
            hostfile = folder / f"hostfile.slurm-{env['SLURM_JOB_ID']}"
            hostfile.write_text("".join(f"{h} slots={nproc}\n" for h in hosts[:nnodes]), encoding="utf-8")
            env["FTC_HOSTFILE"] = str(hostfile)
        argv = ("srun", "--kill-on-bad-exit=1", f"--nodes={nnodes}", f"--ntasks={nnodes}", "--ntasks-per-node=1",
                "bash", "-c", 'NODE_RANK="$SLURM_NODEID" exec bash "$0/launch.sh" "$@"', str(folder), *entry_args)
        binaries = ("srun",) + binaries
    else:
        env["NODE_RANK"] = str(node_rank)
        argv = ("bash", str(script), *entry_args)
    return LaunchSpec(folder=folder, launcher=launcher, argv=argv, env=env, binaries=binaries, nnodes=nnodes,
                      nproc_per_node=nproc, node_rank=node_rank, master_addr=master_addr, master_port=master_port,
                      run_dir=run_dir, log_dir=log_dir, slurm=slurm, entry_args=tuple(entry_args))
