"""The training objectives: supervised (`sft`, the default) and the preference objectives TRL implements.

One table holds what each objective takes (its fields and their per-objective defaults), which data format
it reads, and which metrics it logs, so the schema, the checks, the lowering and the sweep's metric check
agree on one source.
"""

from __future__ import annotations

from ftc.compiler.schema import DPO_LOSSES, OBJECTIVE_BLOCK, OBJECTIVES  # noqa: F401  (re-exported)

PAIRED = ("dpo", "orpo", "simpo")  # read `format = preference`
PREFERENCE_FORMATS = ("preference", "unpaired_preference")
BETA_DEFAULTS = {"dpo": 0.1, "orpo": 0.1, "kto": 0.1, "simpo": 2.0}

_PAIR_REWARDS = ("rewards_chosen", "rewards_rejected", "rewards_accuracies", "rewards_margins",
                 "logps_chosen", "logps_rejected")
# Metric names each objective logs (TRL's names with `/` written `_`); evaluation adds an `eval_` prefix.
METRICS: dict[str, tuple[str, ...]] = {
    "sft": ("loss",),
    "dpo": ("loss",) + _PAIR_REWARDS,
    "orpo": ("loss", "nll_loss", "log_odds_ratio", "log_odds_chosen") + _PAIR_REWARDS,
    "simpo": ("loss", "nll_loss") + _PAIR_REWARDS,
    "kto": ("loss", "kl", "rewards_chosen", "rewards_rejected", "rewards_margins", "logps_chosen",
            "logps_rejected"),
}


def format_of(objective: str) -> tuple[str, ...]:
    """The data formats an objective reads."""
    if objective == "kto":
        return ("unpaired_preference",)
    if objective in PAIRED:
        return ("preference",)
    return ("text", "completion", "instruction", "chat")


def logged_metrics(objective: str) -> tuple[str, ...]:
    """Every metric name a run of this objective writes to metrics.jsonl (training and evaluation)."""
    names = METRICS.get(objective, ("loss",))
    return names + tuple(f"eval_{n}" for n in names)


def uses_reference(objective: str) -> bool:
    """Whether the objective needs reference log-probs at all (ORPO and SimPO are reference-free)."""
    return objective in ("dpo", "kto")
