"""`ftc estimate RECIPE [--json]`: the per-GPU memory breakdown of a recipe.

Exit 0 when the estimate fits (or there is no budget), 1 when the recipe has errors, including
not fitting its GPUs, or when there is nothing to estimate; the estimate is printed whenever the
architecture is known. `--json` always prints one document (nulls without an estimate, `ok`, and the
diagnostics that the text form writes on stderr).
"""

from __future__ import annotations

import sys

from ftc.commands.common import add_set_argument, dump_json, print_diagnostics
from ftc.compiler.spelling import spell


# `--json` when there is nothing to estimate (errors before the model, an architecture ftc does not model)
NO_ESTIMATE = {"peak_bytes_per_gpu": None, "tensor_peak_bytes_per_gpu": None, "budget_bytes_per_gpu": None,
               "fits": None, "cpu_bytes_per_node": None, "components": {}}


def add_arguments(parser) -> None:
    parser.add_argument("recipe", metavar="RECIPE", help=".ftspec file")
    parser.add_argument("--json", action="store_true", help="print one JSON object (LANGUAGE.md keys)")
    add_set_argument(parser)


def run(args) -> int:
    from ftc.compiler.memory.breakdown import memory_report
    from ftc.compiler.memory.report import to_json
    from ftc.compiler.render import to_json_obj
    from ftc.orchestrate.build import build

    analysis = build(args.recipe, tuple(args.overrides), files=False)  # the checks and lowering of `ftc check`
    recipe = analysis.recipe
    report = memory_report(recipe, analysis.plan) if recipe is not None else None
    est, setup, rm, decisions = (report.estimate, report.setup, report.recipe_memory, report.decisions) \
        if report is not None else (None,) * 4
    print_diagnostics(analysis)  # text on stderr: with --json, stdout stays one JSON document
    if args.json:  # a document even without an estimate, so that a pipeline reading it always can
        obj = to_json(est, setup, rm.budget_bytes, rm.cpu_memory, rm.assumptions) if est is not None else \
            dict(NO_ESTIMATE, budget_bytes_per_gpu=rm.budget_bytes if rm is not None else None)
        obj["auto"] = [{"field": d.field, "value": d.value, "reason": d.reason} for d in decisions or ()]
        obj["switches"] = switches(setup, analysis.plan) if setup is not None else {}
        obj["ok"] = analysis.ok and est is not None
        obj["diagnostics"] = [to_json_obj(d) for d in analysis.diagnostics]
        dump_json(obj)
        return 0 if obj["ok"] else 1
    if est is None:
        return 1
    render_table(recipe.name, est, setup, rm, decisions, switches(setup, analysis.plan))
    return 0 if analysis.ok else 1


def switches(setup, plan: dict | None) -> dict:
    """The efficiency switches the estimate counts (and the run uses), for the report."""
    data, train = (plan or {}).get("data") or {}, (plan or {}).get("train") or {}
    return {"chunked_cross_entropy": setup.chunked_ce_used,
            "optimizer_impl": "fused" if setup.fused_optimizer else "foreach",
            "compile": setup.compiled, "packing": data.get("packing"),
            **({"optimizer_impl": "deepspeed"} if setup.strategy == "deepspeed" else {}),
            **({} if train.get("optimizer", "adamw") == "adamw" else {"optimizer_impl": None})}


def render_table(name: str, est, setup, rm, decisions, switched: dict | None = None) -> None:
    """The breakdown as a table (rich), then the budget, host RAM, autos and what is not modeled, one line each."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from ftc.compiler.memory.report import breakdown_rows, host_phases
    from ftc.compiler.memory.units import gib, param_count

    # a terminal's own width; piped into a log or a PR comment, wide enough that no note wraps
    console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
    a = setup.arch
    console.print(f"{name}: {a.model_type}, {param_count(est.params_total)} params "
                  f"({est.params_trainable:,} trainable), {setup.method}, {setup.strategy}"
                  + (f" ZeRO-{setup.zero}" if setup.strategy == "deepspeed" else "")
                  + f" × {setup.dp_world}, micro_batch {setup.micro_batch} × {setup.seq_len} tokens, "
                  + (f"{setup.objective}: 2 sequences per example, " if setup.objective != "sft" else "")
                  + f"checkpointing {'on' if setup.gradient_checkpointing else 'off'}", markup=False)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("component")
    table.add_column("per GPU", justify="right")
    table.add_column("share", justify="right")
    table.add_column("note", overflow="fold")
    for comp, size, share, note in breakdown_rows(est):
        table.add_row(comp, gib(size), share, note)
    table.add_section()
    table.add_row("peak", gib(est.peak_bytes), "", f"at the {est.peak_phase}; live tensors "
                  f"{gib(est.tensor_peak_bytes)}", style="bold")
    for c in est.off_peak:
        if c.bytes:
            table.add_row(f"  ({c.name})", gib(c.bytes), "", f"at the {c.phase}, not the peak", style="dim")
    console.print(table)
    lines = []
    budget = rm.budget_bytes
    if budget is None and rm.budget_source == "unknown-gpu":
        lines.append("budget: unknown (`hardware.gpu` names no GPU of the catalog)")
    elif budget is None and rm.budget_source == "cpu":
        lines.append("budget: none (`accelerator = cpu`: the breakdown is what one GPU would hold)")
    elif budget is None:
        lines.append("budget: none (no `hardware.gpu` or `memory_per_gpu` to check against)")
    else:
        spare = budget - est.peak_bytes
        verdict = f"fits with {gib(spare)} to spare" if spare >= 0 else f"does NOT fit: {gib(-spare)} over"
        lines.append(f"budget: {gib(budget)} per GPU ({rm.budget_source}) — {verdict}")
    if est.paged_bytes:
        lines.append(f"paged optimizer state: {gib(est.paged_bytes)} per GPU in managed memory (not in the peak)")
    phases = host_phases(est)
    if phases:
        (when, _, parts), others = phases[0], phases[1:]
        lines.append(f"host RAM per node: {gib(est.cpu_bytes_per_node)}"
                     + (f" of {gib(rm.cpu_memory)}" if rm.cpu_memory else "") + f", {when} ({parts})"
                     + "".join(f"; {w} {gib(total)} ({p})" for w, total, p in others))
    if switched:
        on = {True: "on", False: "off", None: "n/a"}
        lines.append(f"switches: chunked_cross_entropy {on[switched['chunked_cross_entropy']]} (the logits_loss "
                     f"row), optimizer_impl {switched['optimizer_impl'] or 'n/a'} (the optimizer_step row), compile "
                     f"{on[switched['compile']]} (not modelled), packing {on.get(switched['packing'], 'n/a')}")
    for d in decisions:
        lines.append(f"auto {d.field} = {spell(d.value)}: {d.reason}")
    for text in rm.assumptions:
        lines.append(f"assumed: {text}")
    lines.append("not modeled: " + "; ".join(est.unmodeled))
    for line in lines:
        console.print(line, markup=False)

