"""Hover text (markdown): a field's docs, type and default with the value the recipe resolves to and its
provenance (explicit, inherited, override, default, derived, auto with its reason); a block's docs, and for
`model` and `hardware` the memory estimate per GPU."""

from __future__ import annotations

from ftc.compiler.schema import AUTO, DIRECTIVES, FieldSpec
from ftc.compiler.spelling import spell
from ftc.compiler.units import Amount
from ftc.lsp.scan import Context
from ftc.lsp.vocabulary import block_at, field_at


def hover_markdown(ctx: Context, compiled) -> str | None:
    """The hover for the statement under the cursor, None where there is nothing to say."""
    if ctx.in_comment:
        return None
    if ctx.name:
        found = field_at(ctx.path, ctx.name)
        return field_markdown(*found, compiled) if found else None
    word = ctx.first_word
    if not ctx.blocks and word in DIRECTIVES:
        return f"**{word}**\n\n{DIRECTIVES[word]}"
    spec = block_at(ctx.path + (word,))
    if spec is None:
        return None
    parts = [f"**{word}** block\n\n{spec.doc}"]
    if not ctx.blocks and spec.label != "none":
        parts.append(_resolved(word, compiled, label_doc=spec.label_doc))
    if not ctx.blocks and word in ("model", "hardware"):
        parts.append(memory_markdown(compiled))
    return "\n\n".join(p for p in parts if p)


def field_markdown(key: str, spec: FieldSpec, compiled) -> str:
    default = "" if spec.default is None else f" (default: `{_show(spec.default)}`)"
    head = f"**{key}**: {spec.describe_type()}{default}\n\n{spec.doc}"
    return head + "\n\n" + _resolved(key, compiled)


def _auto_decisions(compiled) -> dict[str, tuple[object, str]]:
    """field -> (value, reason) of the autos lowering decided; from the estimate when the recipe has errors."""
    if compiled is None or compiled.recipe is None:
        return {}
    if compiled.plan is not None:
        return {a["field"]: (a["value"], a["reason"]) for a in compiled.plan.get("auto") or ()}
    try:
        from ftc.compiler.memory.breakdown import memory_report

        decisions = memory_report(compiled.recipe).decisions
    except Exception:  # a recipe too broken to estimate: no auto to show
        return {}
    return {d.field: (d.value, d.reason) for d in decisions or ()}


def _resolved(key: str, compiled, label_doc: str = "") -> str:
    if compiled is None or compiled.recipe is None:
        return "_resolved value: unknown (the recipe does not parse)_"
    decided = _auto_decisions(compiled).get(key)
    setting = compiled.recipe.setting(key)
    if decided is not None:
        value, reason = decided
        return f"resolves to `{spell(value)}` (auto): {reason}"
    if setting is None or setting.value is None:
        return "not set" + (f" ({label_doc})" if label_doc else "")
    where = ""
    if setting.span is not None and setting.provenance == "inherited":
        where = f" from `{setting.span.file}:{setting.span.line}`"
    return f"resolves to `{_show(setting.value)}` ({setting.provenance}{where})"


def _show(value) -> str:
    """A typed value as the recipe writes it (an amount with its unit)."""
    if isinstance(value, Amount):
        return spell(value.value, value.unit)
    if value is AUTO:
        return "auto"
    return spell(value)


def memory_markdown(compiled) -> str:
    """The per-GPU estimate as `ftc estimate` computes it: peak, budget, the largest components."""
    if compiled is None or compiled.recipe is None:
        return ""
    from ftc.compiler.memory.breakdown import memory_report
    from ftc.compiler.memory.report import breakdown_rows
    from ftc.compiler.memory.units import gib

    try:
        report = memory_report(compiled.recipe, compiled.plan)
        est, setup, rm = report.estimate, report.setup, report.recipe_memory
    except Exception:  # an architecture or setup the estimator cannot take: say so, do not fail the hover
        est = None
    if est is None:
        return "_memory estimate: not available (model unknown or recipe incomplete)_"
    budget = rm.budget_bytes
    verdict = "no budget" if budget is None else (
        f"fits {gib(budget)} with {gib(budget - est.peak_bytes)} to spare" if est.peak_bytes <= budget
        else f"does NOT fit {gib(budget)}: {gib(est.peak_bytes - budget)} over")
    lines = [f"**memory per GPU**: peak {gib(est.peak_bytes)} at the {est.peak_phase} ({verdict})",
             f"{setup.method}, {setup.strategy} × {setup.dp_world}, micro_batch {setup.micro_batch} × "
             f"{setup.seq_len} tokens", "", "| component | per GPU | share |", "|---|---:|---:|"]
    lines += [f"| {name} | {gib(size)} | {share} |" for name, size, share, _ in breakdown_rows(est)[:6]]
    return "\n".join(lines)
