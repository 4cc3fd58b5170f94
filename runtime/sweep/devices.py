"""Which devices each of `parallel = N` trials gets: on GPUs, its own `CUDA_VISIBLE_DEVICES` (as many GPUs as
its plan has ranks on a node, the visible ones split evenly); on CPU, the cores divided between the trials'
processes (OMP_NUM_THREADS). Each trial's memory is checked against what it gets before it starts."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

from .errors import SweepError


@dataclass(frozen=True)
class Slot:
    """One of the N places a trial runs in: the environment its processes get."""

    index: int
    env: dict
    describe: str
    gpu_bytes: tuple[int, ...] = ()  # total memory of each GPU of the slot, when known


def visible_gpus(env=None) -> list[str]:
    env = os.environ if env is None else env
    text = env.get("CUDA_VISIBLE_DEVICES")
    if text is not None:
        return [d.strip() for d in text.split(",") if d.strip() and d.strip() != "-1"]
    return [str(i) for i in range(len(gpu_memory()))]


def gpu_memory() -> dict[str, int]:
    """Total bytes of each GPU by index, from nvidia-smi (no CUDA context in the sweep's own process)."""
    if shutil.which("nvidia-smi") is None:
        return {}
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return {}
    sizes = {}
    for line in out.splitlines():
        index, _, mib = line.partition(",")
        if mib.strip().isdigit():
            sizes[index.strip()] = int(mib.strip()) * 2**20
    return sizes


def plan_slots(raw_plan: dict, parallel: int, env=None) -> list[Slot]:
    """N slots for the plan's trials, or a SweepError saying why N of them do not fit this machine."""
    env = os.environ if env is None else env
    hardware, launch = raw_plan["hardware"], raw_plan["launch"]
    per_trial = int(launch.get("nproc_per_node") or 1)
    if hardware["accelerator"] == "cpu":
        cores = os.cpu_count() or 1
        threads = max(1, cores // (parallel * per_trial))
        _check_host_memory(raw_plan, parallel)
        return [Slot(i, {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)},
                     f"{per_trial} process(es) x {threads} thread(s)") for i in range(parallel)]
    gpus = visible_gpus(env)
    if not gpus:
        if parallel == 1:
            return [Slot(0, {}, "the visible GPUs")]
        raise SweepError(f"`parallel = {parallel}` splits the GPUs between trials, but none is visible "
                         "(CUDA_VISIBLE_DEVICES, nvidia-smi)")
    if parallel * per_trial > len(gpus):
        raise SweepError(f"`parallel = {parallel}` trials of {per_trial} GPU(s) each need {parallel * per_trial} "
                         f"GPUs; {len(gpus)} visible ({','.join(gpus)}). Lower `parallel` or free GPUs")
    sizes = gpu_memory()
    slots = []
    for i in range(parallel):
        mine = gpus[i * per_trial:(i + 1) * per_trial]
        slots.append(Slot(i, {"CUDA_VISIBLE_DEVICES": ",".join(mine)}, f"GPU {','.join(mine)}",
                          tuple(sizes[g] for g in mine if g in sizes)))
    return slots


def _check_host_memory(raw_plan: dict, parallel: int) -> None:
    need = (raw_plan.get("memory") or {}).get("cpu_bytes_per_node")
    if not need or parallel == 1:
        return
    try:
        import psutil

        total = psutil.virtual_memory().total
    except ImportError:
        return
    if parallel * need > total:
        raise SweepError(f"`parallel = {parallel}` trials need {parallel * need / 2**30:.1f} GiB of host memory "
                         f"({need / 2**30:.1f} GiB each); this machine has {total / 2**30:.1f} GiB")


def trial_fits(raw_plan: dict, slot: Slot) -> str | None:
    """Why this trial's plan does not fit the GPUs of its slot, or None."""
    peak = (raw_plan.get("memory") or {}).get("peak_bytes_per_gpu")
    if not peak or not slot.gpu_bytes:
        return None
    small = min(slot.gpu_bytes)
    if peak > small:
        return (f"the trial needs {peak / 2**30:.1f} GiB per GPU; {slot.describe} has {small / 2**30:.1f} GiB")
    return None
