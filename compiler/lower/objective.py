"""Lower the `objective` block: the objective's settings with its per-objective defaults filled in (null
where a field does not apply, as for every field under `sft`), and what the data pipeline needs for
preference rows."""

from __future__ import annotations

from ftc.compiler.lower.builder import Lowering, Section, frozen
from ftc.compiler.objectives import BETA_DEFAULTS, OBJECTIVE_BLOCK, logged_metrics, uses_reference


def data_with_prompt_length(lw: Lowering, data: Section) -> Section:
    """The `data` section with `max_prompt_length` (preference formats; null otherwise)."""
    prompt = lw.recipe.value("data.max_prompt_length")
    value = None if prompt is None else int(getattr(prompt, "value", prompt))
    return frozen(dict(sorted({**data, "max_prompt_length": value}.items())))


def lower_objective(lw: Lowering) -> Section:
    """The `objective` section: one shape for every objective, its defaults filled in."""
    r = lw.recipe
    kind = r.value("objective", "sft")
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
    return frozen(dict(sorted(section.items())))
