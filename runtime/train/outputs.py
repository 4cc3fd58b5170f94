"""The run folder `runs/<recipe>/<run id>/`: plan copy, metrics, final model or adapter with its
tokenizer, optional LoRA merge, loss-curve PNG and summary.json (what `ftc report` reads)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from .errors import RunError
from ftc.plan import Plan

# Files of a compiled folder worth keeping next to the run: what was reviewed is what ran.
COMPILED_FILES = ("plan.json", "ftc.lock", "recipe.ftspec", "resolved.ftspec", "ds_config.json", "accelerate.yaml")
SUMMARY = "summary.json"


def new_run_dir(plan: Plan, run_id: str | None = None) -> Path:
    """A fresh `runs/<recipe>/<run id>` (a timestamp, with a suffix when two start in one second)."""
    parent = plan.runs_dir / plan.recipe_name
    parent.mkdir(parents=True, exist_ok=True)
    base = run_id or time.strftime("%Y%m%d-%H%M%S")
    candidate, n = parent / base, 1
    while True:
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            if run_id:
                raise RunError(f"run folder {candidate} already exists; continue it with --resume {candidate}, "
                               "or choose another --run-id") from None
            n += 1
            candidate = parent / f"{base}-{n}"


def copy_compiled(plan: Plan, run_dir: Path) -> None:
    for name in COMPILED_FILES:
        src = plan.folder / name
        if src.is_file() and not (run_dir / name).exists():
            shutil.copyfile(src, run_dir / name)


def write_json_atomic(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_metrics(path: Path) -> list[dict]:
    from .callbacks import metric_records

    return metric_records(path)


def replace_dir(tmp: Path, final: Path) -> None:
    """Put the complete folder `tmp` at `final`. An older `final` is renamed aside before it is deleted, so a
    kill in between leaves it (as `.<name>.old`) rather than nothing."""
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def loss_curve(metrics: list[dict], out: Path, title: str) -> Path | None:
    """Train and eval loss against step, as a PNG (matplotlib's Agg backend: no display needed)."""
    train = [(m["step"], m["loss"]) for m in metrics if "loss" in m]
    evals = [(m["step"], m["eval_loss"]) for m in metrics if "eval_loss" in m]
    if not train and not evals:
        return None
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    rewards = _reward_series(metrics)
    if rewards:  # preference objectives: a second panel with the rewards of chosen and rejected answers
        fig, (ax, rx) = plt.subplots(1, 2, figsize=(12, 4), dpi=100)
        _rewards_panel(rx, rewards)
    else:
        fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train), label="train loss", linewidth=1)
    if evals:
        ax.plot(*zip(*evals), "o-", label="eval loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


REWARD_KEYS = ("rewards_chosen", "rewards_rejected", "rewards_margins", "rewards_accuracies")


def _reward_series(metrics: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """The reward metrics against step: evaluation's when the run evaluates, else training's."""
    prefix = "eval_" if any("eval_rewards_chosen" in m for m in metrics) else ""
    out = {}
    for key in REWARD_KEYS:
        points = [(m["step"], m[prefix + key]) for m in metrics if prefix + key in m]
        if points:
            out[prefix + key] = points
    return out


def _rewards_panel(ax, rewards: dict) -> None:
    for key, points in rewards.items():
        if not key.endswith("accuracies"):
            ax.plot(*zip(*points), "o-" if key.startswith("eval_") else "-", label=key, linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("reward")
    ax.grid(alpha=0.3)
    accuracy = [v for k, v in rewards.items() if k.endswith("accuracies")]
    if accuracy:
        twin = ax.twinx()
        twin.plot(*zip(*accuracy[0]), "s--", color="black", label="accuracy", linewidth=1)
        twin.set_ylim(0, 1.05)
        twin.set_ylabel("reward accuracy")
        twin.legend(loc="lower right")
    ax.legend(loc="upper left")
    ax.set_title("rewards (chosen, rejected, margin) and accuracy")


def save_final(trainer, tokenizer, run_dir: Path) -> Path:
    """The trained model (full) or adapter (LoRA/QLoRA) with its tokenizer, written atomically."""
    tmp, final = run_dir / ".final.tmp", run_dir / "final"
    main = trainer.args.should_save  # in a multi-process run every rank saves (shards gather), rank 0 writes
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
    if getattr(trainer, "is_fsdp_enabled", False):  # the final model is whole files, not per-rank shards
        from ftc.runtime.launch.rank import save_fsdp_full

        save_fsdp_full(trainer, tmp, main)
    else:
        trainer.save_model(str(tmp))
    if not main:
        return final
    tokenizer.save_pretrained(str(tmp))
    replace_dir(tmp, final)
    return final


def merge_lora(plan: Plan, adapter_dir: Path, base_source: str, run_dir: Path) -> Path:
    """Fold the adapter into a fresh copy of the base weights (in the model dtype, never 4-bit)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .model import DTYPES

    dtype = getattr(torch, DTYPES[plan.model.dtype])
    base = AutoModelForCausalLM.from_pretrained(base_source, dtype=dtype,
                                                trust_remote_code=plan.model.trust_remote_code)
    tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir))
    if len(tokenizer) > base.get_input_embeddings().weight.shape[0]:  # the run added tokens: the adapter
        base.resize_token_embeddings(len(tokenizer))  # holds the resized embedding and head
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    tmp, out = run_dir / ".merged.tmp", run_dir / "merged"
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    replace_dir(tmp, out)
    return out
