"""Lower the `objective` block: the objective's settings with its per-objective defaults filled in (null
where a field does not apply, as for every field under `sft`), and what the data pipeline needs for
preference rows."""

from __future__ import annotations

from ftc.compiler.lower.builder import Lowering
from ftc.compiler.objectives import BETA_DEFAULTS, OBJECTIVE_BLOCK, logged_metrics, uses_reference


def lower_objective(lw: Lowering) -> None:
    r = lw.recipe
    kind = r.value("objective", "sft")
    prompt = r.value("data.max_prompt_length")
    if "data" in lw.plan:
        lw.plan["data"]["max_prompt_length"] = None if prompt is None else int(getattr(prompt, "value", prompt))
        lw.plan["data"] = dict(sorted(lw.plan["data"].items()))
    # one shape for every objective (null where a field does not apply): a typed, frozen section
    section: dict = {"kind": kind, **{name: None for name in OBJECTIVE_BLOCK.field_names}}
    for name in OBJECTIVE_BLOCK.variant_fields[kind]:
        value = r.value(f"objective.{name}")
        if value is None:
            value = BETA_DEFAULTS[kind] if name == "beta" else OBJECTIVE_BLOCK.field(name).default
        section[name] = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    if not uses_reference(kind):
        section["reference"] = "none"
    elif section["reference"] == "auto":
        lora = r.value("method") in ("lora", "qlora")
        section["reference"] = lw.decide(
            "objective.reference", "base" if lora else "model",
            "LoRA: the base with the adapters disabled is the starting policy; no copy is held" if lora else
            "full fine-tuning changes every weight: a frozen copy of the starting model is the reference")
    section["metrics"] = list(logged_metrics(kind))
    lw.plan["objective"] = dict(sorted(section.items()))
