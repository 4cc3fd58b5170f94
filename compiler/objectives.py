"""The training objectives: supervised (`sft`, the default) and the preference objectives TRL implements.

One table holds what each objective takes (its fields and their per-objective defaults), which data format
it reads, and which metrics it logs, so the schema, the checks, the lowering and the sweep's metric check
agree on one source.
"""

from __future__ import annotations

from ftc.compiler.schema import ENUM, FLOAT, BlockSpec, FieldSpec

F = FieldSpec

OBJECTIVES = ("sft", "dpo", "orpo", "kto", "simpo")
PAIRED = ("dpo", "orpo", "simpo")  # read `format = preference`
PREFERENCE_FORMATS = ("preference", "unpaired_preference")

# The DPO loss variants TRL's DPOTrainer offers (trl.DPOConfig.loss_type), all over paired data.
DPO_LOSSES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
              "apo_zero", "apo_down", "discopop", "sigmoid_norm")

BETA_DEFAULTS = {"dpo": 0.1, "orpo": 0.1, "kto": 0.1, "simpo": 2.0}

OBJECTIVE_BLOCK = BlockSpec(
    "objective", "What the model is trained to do: imitate the data (`sft`), or prefer chosen answers over "
                 "rejected ones (`dpo`, `orpo`, `simpo` on `format = preference`; `kto` on "
                 "`format = unpaired_preference`). Absent: `sft`.",
    label="required", label_kind=ENUM, label_choices=OBJECTIVES, label_doc="sft | dpo | orpo | kto | simpo",
    label_default="sft",
    fields=(
        F("beta", FLOAT, "Strength of the preference term: the inverse temperature of DPO and KTO, ORPO's "
          "odds-ratio weight (lambda), SimPO's reward scale. Default: 0.1, or 2.0 under `simpo`.",
          minimum=0, exclusive_min=True, maximum=100, tunable=True),
        F("loss", ENUM, "DPO loss variant (TRL's `loss_type`).", "sigmoid", DPO_LOSSES),
        F("label_smoothing", FLOAT, "DPO: assumed share of flipped preference labels (robust and cDPO losses).",
          0.0, minimum=0, maximum=0.5, exclusive_max=True, tunable=True),
        F("reference", ENUM, "The reference policy: `auto` (the adapter-disabled base under LoRA, a frozen copy "
          "for full fine-tuning), `model` (always a separate frozen copy), `precomputed` (its log-probs are "
          "computed once before training; no reference weights are held).", "auto",
          ("auto", "model", "precomputed")),
        F("desirable_weight", FLOAT, "KTO: weight of the desirable (label true) examples' loss.", 1.0,
          minimum=0, exclusive_min=True, maximum=100, tunable=True),
        F("undesirable_weight", FLOAT, "KTO: weight of the undesirable (label false) examples' loss.", 1.0,
          minimum=0, exclusive_min=True, maximum=100, tunable=True),
        F("gamma", FLOAT, "SimPO: target reward margin (gamma / beta is the margin term).", 0.5, minimum=0,
          maximum=100, tunable=True),
    ),
    variant_fields={
        "sft": (),
        "dpo": ("beta", "loss", "label_smoothing", "reference"),
        "orpo": ("beta",),
        "kto": ("beta", "reference", "desirable_weight", "undesirable_weight"),
        "simpo": ("beta", "gamma"),
    },
)

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
