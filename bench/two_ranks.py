"""Two CPU ranks over gloo, rank 0's peak of live storages: what the FSDP and DeepSpeed memory benches share."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

MIB = 2**20


def rank0_peak(rank_fn, config: dict, fields: dict, prefix: str) -> int:
    """Spawn `rank_fn(rank, port, config, fields, out)` on two processes; the peak rank 0 wrote to `out`."""
    import torch.multiprocessing as mp

    from ftc.runtime.launch.ports import free_port

    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        out = os.path.join(folder, "peak.json")
        mp.spawn(rank_fn, args=(free_port(), config, fields, out), nprocs=2)
        return json.loads(Path(out).read_text())["peak"]


def write_peak(out: str, peak: int) -> None:
    Path(out).write_text(json.dumps({"peak": peak}))


def with_lora(fields: dict) -> dict:
    """LoRA and QLoRA cases: rank 8, on every linear unless the case names its targets."""
    if fields["method"] not in ("lora", "qlora"):
        return fields
    return dict({"lora_targets": "all_linear"}, **fields, lora_rank=8)


def report(rows, measure, estimate_for) -> None:
    """Measure each (name, config, fields) and print it next to the estimate (MiB, rank 0 of 2)."""
    print(f"{'case':24} {'measured':>9} {'estimate':>9} {'error':>7}  phase (MiB, rank 0 of 2)")
    for name, config, fields in rows:
        measured = measure(config, fields)
        est = estimate_for(config, fields)
        error = (est.tensor_peak_bytes - measured) / measured
        print(f"{name:24} {measured / MIB:9.1f} {est.tensor_peak_bytes / MIB:9.1f} {error:+7.1%}  {est.peak_phase}",
              flush=True)
