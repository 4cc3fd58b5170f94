"""The per-rank side of a launched run. Every rank runs `python -m ftc.runtime.train --plan DIR`; this
module tells it who it is (from the launcher's environment), sends its output to its own log file,
records how it ended (the supervisor names the failing rank from these records), makes a stop request on
any rank a stop on all ranks, and tells the fault-injection hooks (train/faults.py) which rank this is.

Environment it reads (set by the launcher or by `ftc run`):
  RANK, LOCAL_RANK, WORLD_SIZE          torchrun / accelerate / deepspeed
  FTC_RUN_ID                           the run folder name all ranks share (launch.sh and ftc run set it)
  FTC_RANK_LOG_DIR                     where rank-<N>.log, rank-<N>.pid and rank-<N>.exit.json go
  FTC_FAULT, FTC_FAULT_RANK,           fault injection for the tests: see ftc.runtime.train.faults
  FTC_FAULT_STEP
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

LOG_DIR_ENV = "FTC_RANK_LOG_DIR"
RUN_ID_ENV = "FTC_RUN_ID"


@dataclass(frozen=True)
class RankInfo:
    rank: int
    local_rank: int
    world_size: int

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Global rank 0: logs, reports, checkpoint manifests and retention."""
        return self.rank == 0

    @property
    def is_local_main(self) -> bool:
        """Local rank 0 of each node: prepares the data cache (under a file lock) for its node."""
        return self.local_rank == 0


def current(env=None) -> RankInfo:
    env = os.environ if env is None else env
    return RankInfo(rank=int(env.get("RANK", 0)), local_rank=int(env.get("LOCAL_RANK", 0)),
                    world_size=int(env.get("WORLD_SIZE", 1)))


def check_world(plan_world: int, info: RankInfo | None = None) -> str | None:
    """Why this process cannot run its share of the plan, or None. A plan's batch arithmetic counts
    `plan_world` ranks; started with a different number, every batch size would silently be wrong."""
    info = info or current()
    if info.world_size == plan_world:
        return None
    if info.world_size == 1:
        return (f"this plan trains on {plan_world} processes; start it with `ftc run --plan DIR` or the "
                "compiled launch.sh, not `python -m ftc.runtime.train`")
    return (f"this plan trains on {plan_world} processes but the launcher started {info.world_size}; "
            "recompile the recipe for this hardware")


def shared_run_dir(runs_parent: Path, run_id: str | None) -> Path | None:
    """The run folder every rank of a multi-process run uses: `<runs>/<recipe>/<FTC_RUN_ID or --run-id>`,
    created by whichever rank gets there first. None for a single process (it picks its own)."""
    info = current()
    if not info.distributed:
        return None
    name = os.environ.get(RUN_ID_ENV) or run_id
    if not name:
        from ftc.runtime.train.errors import RunError

        raise RunError("a multi-process run needs one run folder for all ranks: start it with `ftc run` or "
                       "launch.sh (they set FTC_RUN_ID), or pass --run-id")
    folder = Path(runs_parent) / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# ------------------------------------------------------------------ logs and exit records


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


@contextmanager
def rank_process(env=None):
    """Around a rank's whole life: with FTC_RANK_LOG_DIR set, fds 1 and 2 go to rank-<N>.log (library
    and C-level output too), rank-<N>.pid says which process to stop, and rank-<N>.exit.json records the
    exit code and time (the first non-zero record names the failing rank). Yields a one-item list the
    caller sets to the exit code."""
    env = os.environ if env is None else env
    info = current(env)
    log_dir = env.get(LOG_DIR_ENV)
    code = [1]
    if not log_dir:
        yield code
        return
    folder = Path(log_dir)
    folder.mkdir(parents=True, exist_ok=True)
    log = open(folder / f"rank-{info.rank}.log", "ab", buffering=0)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)
        except (AttributeError, ValueError):
            pass
    _write_json(folder / f"rank-{info.rank}.pid", {"rank": info.rank, "pid": os.getpid(), "host": os.uname()[1]})
    try:
        yield code
    except SystemExit as exc:
        code[0] = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        raise
    except BaseException:
        import traceback

        traceback.print_exc()
        code[0] = 1
        raise
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        _write_json(folder / f"rank-{info.rank}.exit.json",
                    {"rank": info.rank, "exit_code": int(code[0]), "time": time.time(), "pid": os.getpid()})


def finish(code: int) -> None:
    """Before a rank exits cleanly (done or preempted): wait for every rank, so that no launcher sees one
    rank leave while rank 0 still writes the report, and tear the process group down."""
    try:
        import torch.distributed as dist
    except ImportError:
        return
    if not (dist.is_available() and dist.is_initialized()):
        return
    try:
        if code in (0, 75):
            dist.barrier()
            # from here on this rank is only leaving: a launcher that sees a peer exit first (75 counts as a
            # failure to torchrun) must not kill it before it has written its exit record
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        dist.destroy_process_group()
    except Exception as exc:  # a peer already gone: the supervisor reports the rank that failed first
        print(f"ftc: rank {current().rank}: process group shutdown failed: {exc}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ agreeing on a stop


def any_rank(flag: bool) -> bool:
    """True on every rank when it is True on any rank (an all-reduce of one integer, MAX). Called at each
    optimizer step boundary, so a preemption signal delivered to one rank makes all ranks save at the same
    step; a single process returns `flag` unchanged."""
    try:
        import torch
        import torch.distributed as dist
    except ImportError:
        return flag
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    value = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


# ------------------------------------------------------------------ FSDP on CPU


def enable_cpu_fsdp(trainer) -> bool:
    """accelerate runs FSDP only for GPU-like distributed types; with `use_cpu` it silently falls back to
    DDP (MULTI_CPU). torch's FSDP2 (`fully_shard`) does shard on CPU over gloo, so a CPU plan with
    `distributed fsdp` installs the FSDP plugin that `accelerate launch` described in the environment
    (FSDP_* variables from accelerate.yaml) before the model is prepared. GPU plans never get here."""
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() != "true":
        return False
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    state = trainer.accelerator.state
    if state.distributed_type != DistributedType.MULTI_CPU:
        return False
    plugin = FullyShardedDataParallelPlugin()
    if plugin.fsdp_version != 2:
        from ftc.runtime.train.errors import RunError

        raise RunError("FSDP on CPU needs fsdp_version 2 in accelerate.yaml (FSDP1 has no CPU support); "
                       "recompile the recipe with this ftc")
    state.fsdp_plugin = plugin
    state.distributed_type = DistributedType.FSDP
    trainer.is_fsdp_enabled = True
    return True


def save_fsdp_full(trainer, folder: Path, main: bool) -> None:
    """The final model of an FSDP run as whole tensors. FSDP2 keeps DTensor shards: every rank joins the
    gather (`full_tensor`), rank 0 writes. FSDP1 gathers through accelerate's FULL_STATE_DICT."""
    state = trainer.model.state_dict()
    if not any(hasattr(value, "full_tensor") for value in state.values()):  # FSDP1
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
        trainer.save_model(str(folder))
        return
    state = {key: (value.full_tensor() if hasattr(value, "full_tensor") else value) for key, value in state.items()}
    if main:
        trainer._save(str(folder), state_dict=state)
