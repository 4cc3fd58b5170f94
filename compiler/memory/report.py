"""The estimate as JSON (LANGUAGE.md keys) and as table rows; shared by `ftc estimate`, the plan and diagnostics."""

from __future__ import annotations

from ftc.compiler.memory.estimate import LOADING, TRAINING, MemoryEstimate, host_in_phase
from ftc.compiler.memory.setup import MemorySetup
from ftc.compiler.memory.units import gib


def fits(est: MemoryEstimate, budget_bytes: int | None) -> bool:
    """No budget means nothing to exceed."""
    return budget_bytes is None or est.peak_bytes <= budget_bytes


def host_fits(est: MemoryEstimate, cpu_memory: int | None) -> bool:
    return cpu_memory is None or est.cpu_bytes_per_node <= cpu_memory


HOST_PHASE_WORDS = {TRAINING: "in training", LOADING: "while loading"}


def host_phases(est: MemoryEstimate) -> list[tuple[str, int, str]]:
    """Host RAM per node by phase, the peak first: (`in training`, bytes, `weights 65.7 GiB, ...`). The
    checkpoint is read before the training state exists, so the two are not added."""
    phases = [est.host_peak_phase] + [p for p in (TRAINING, LOADING) if p != est.host_peak_phase]
    rows = []
    for phase in phases:
        parts = [c for c in host_in_phase(est.host, phase) if c.bytes]
        if parts:
            rows.append((HOST_PHASE_WORDS[phase], sum(c.bytes for c in parts),
                         ", ".join(f"{c.name} {gib(c.bytes)}" for c in parts)))
    return rows


def to_json(est: MemoryEstimate, setup: MemorySetup, budget_bytes: int | None, cpu_memory: int | None = None,
            assumptions: tuple[str, ...] = ()) -> dict:
    return {
        "peak_bytes_per_gpu": int(est.peak_bytes),
        "tensor_peak_bytes_per_gpu": int(est.tensor_peak_bytes),
        "budget_bytes_per_gpu": budget_bytes,
        "fits": fits(est, budget_bytes),
        "cpu_bytes_per_node": int(est.cpu_bytes_per_node),
        "cpu_memory_per_node": cpu_memory,
        "cpu_fits": host_fits(est, cpu_memory),
        "paged_bytes_per_gpu": int(est.paged_bytes),
        "peak_phase": est.peak_phase,
        "components": {c.name: int(c.bytes) for c in est.components},
        "off_peak": off_peak_by_phase(est),
        "host_components": {c.name: int(c.bytes) for c in est.host},
        "host_peak_phase": est.host_peak_phase,
        "nvme_bytes_per_node": sum(int(c.bytes) for c in est.nvme),
        "params": {"total": est.params_total, "trainable": est.params_trainable},
        "setup": {
            "model_type": setup.arch.model_type, "method": setup.method, "dtype": setup.dtype,
            "optimizer": setup.optimizer, "micro_batch": setup.micro_batch, "seq_len": setup.seq_len,
            "gradient_checkpointing": setup.gradient_checkpointing, "attention": setup.attention,
            "strategy": setup.strategy, "zero": setup.zero if setup.strategy == "deepspeed" else None,
            "data_parallel_world": setup.dp_world,
        },
        "unmodeled": list(est.unmodeled),
        "assumptions": list(assumptions),
    }


def off_peak_by_phase(est: MemoryEstimate) -> dict[str, dict[str, int]]:
    """The phases that are not the peak, each as component name → bytes (a name can recur across phases)."""
    phases: dict[str, dict[str, int]] = {}
    for c in est.off_peak:
        phases.setdefault(c.phase, {})[c.name] = int(c.bytes)
    return phases


def breakdown_rows(est: MemoryEstimate) -> list[tuple[str, int, str, str]]:
    """(component, bytes, share of the peak, note) for the GPU components at the peak, largest first."""
    rows = []
    for c in sorted(est.components, key=lambda c: -c.bytes):
        if c.bytes == 0 and c.note == "offloaded":
            continue
        share = f"{c.bytes / est.peak_bytes:.0%}" if est.peak_bytes else "-"
        rows.append((c.name, c.bytes, share, c.note))
    return rows


def breakdown_notes(est: MemoryEstimate, limit: int = 6) -> tuple[str, ...]:
    """Short lines for a diagnostic: the largest components at the peak."""
    rows = [r for r in breakdown_rows(est) if r[1] > 0][:limit]
    return tuple(f"{name}: {gib(b)} ({share})" for name, b, share, _ in rows)
