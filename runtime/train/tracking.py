"""What metric sinks that are configured through the environment read (wandb)."""

from __future__ import annotations

from pathlib import Path

from ftc.plan.sections import Wandb


def wandb_env(settings: Wandb | None, run_dir: Path) -> dict[str, str]:
    """The environment wandb.init reads: project, entity, run name, tags, and the run folder as its directory
    (so `WANDB_MODE=offline` writes the run next to metrics.jsonl)."""
    project = settings.project if settings is not None else None
    name = settings.name if settings is not None else None
    env = {"WANDB_PROJECT": project or run_dir.parent.name, "WANDB_NAME": name or run_dir.name,
           "WANDB_DIR": str(run_dir)}
    if settings is not None and settings.entity:
        env["WANDB_ENTITY"] = settings.entity
    if settings is not None and settings.tags:
        env["WANDB_TAGS"] = ",".join(settings.tags)
    return env


def finish_wandb() -> None:
    """Close the wandb run transformers' callback opened: its files are complete when the run returns, and
    the next run in the process (a sweep's next trial) starts a run of its own."""
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()
