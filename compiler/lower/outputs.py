"""Passes for what the run writes and how it starts: checkpoints, tracking, the sweep, the launch and
the provenance of every value."""

from __future__ import annotations

from ftc.compiler.lower.builder import Lowering, plain_number
from ftc.compiler.lower.steps import every_epochs, every_steps
from ftc.compiler.units import Amount
from ftc.plan import ENTRY_MODULE

DEFAULT_MASTER_PORT = 29500


def lower_checkpoint(lw: Lowering) -> None:
    r = lw.recipe
    lw.plan["checkpoint"] = {
        "every_steps": every_steps(lw, "checkpoint.every"),
        "keep_last": r.value("checkpoint.keep_last"),
        "keep_best": r.value("checkpoint.keep_best"),
        "best_mode": r.value("checkpoint.best_mode"),
        "full_state": bool(r.value("checkpoint.full_state")),
        **every_epochs(lw, "checkpoint.every"),
    }


def lower_tracking(lw: Lowering) -> None:
    track = [t for t in lw.recipe.value("train.track", ()) if t != "none"]
    lw.plan["tracking"] = {"backends": ["jsonl"] + sorted(set(track)), "mlflow_uri": None}
    lw.plan["output"] = {"runs_dir": lw.rel(lw.recipe.value("output.runs_dir"), "output.runs_dir"),
                         "merge": bool(lw.recipe.value("output.merge"))}


def lower_sweep(lw: Lowering) -> None:
    r = lw.recipe
    if not r.has_block("sweep"):
        lw.plan["sweep"] = None
        return
    objective = r.value("sweep.objective")
    direction, metric = objective if isinstance(objective, tuple) else tuple(str(objective).split(None, 1))
    space = {}
    for param in r.sweep:
        args = [a.value if isinstance(a, Amount) else a for a in param.args]
        units = {a.unit for a in param.args if isinstance(a, Amount)}
        space[param.target] = {"distribution": param.distribution, "args": args,
                               "unit": units.pop() if units else None}
    timeout = r.value("sweep.timeout")
    lw.plan["sweep"] = {
        "trials": r.value("sweep.trials"),
        "objective": {"direction": direction, "metric": metric},
        "sampler": r.value("sweep.sampler"),
        "pruner": r.value("sweep.pruner"),
        "parallel": r.value("sweep.parallel"),
        "timeout_s": plain_number(timeout.value) if isinstance(timeout, Amount) else None,
        "space": space,
    }




def lower_launch(lw: Lowering) -> None:
    hw, dist = lw.plan["hardware"], lw.plan["distributed"]
    deepspeed = dist["strategy"] == "deepspeed"
    env = {}
    if deepspeed and hw["accelerator"] == "cpu":
        env["DS_ACCELERATOR"] = "cpu"
    lw.plan["launch"] = {
        "launcher": "python" if dist["strategy"] == "none" else "accelerate",
        "nnodes": hw["nodes"],
        "nproc_per_node": hw["gpus_per_node"],
        "master_addr": "127.0.0.1",
        "master_port": DEFAULT_MASTER_PORT,
        "entry_module": ENTRY_MODULE,
        "env": env,
        "files": {
            "accelerate": "accelerate.yaml",
            "deepspeed": "ds_config.json" if deepspeed else None,
            "hostfile": "hostfile" if deepspeed and hw["nodes"] > 1 else None,
        },
    }


def lower_provenance(lw: Lowering) -> None:
    provenance = {key: s.provenance for key, s in lw.recipe.items()}
    provenance.update(lw.derived)
    lw.plan["auto"] = lw.auto
    lw.plan["provenance"] = dict(sorted(provenance.items()))
