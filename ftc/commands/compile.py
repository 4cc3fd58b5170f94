"""`ftc compile RECIPE [-o DIR] [--set ...] [--check]`: write the plan and the generated configs.

`--check` writes nothing: it exits 1 with a unified diff when the files in DIR are not what this recipe
compiles to (stale, missing, or left over from an earlier compile), like `terraform fmt -check`.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from ftc.commands.common import add_format_argument, add_set_argument, dump_json, json_report, print_diagnostics
from ftc.compiler.spelling import spell


def add_arguments(parser) -> None:
    parser.add_argument("recipe", metavar="RECIPE", help=".ftspec file")
    parser.add_argument("-o", "--output", metavar="DIR", default=None,
                        help="output folder (default: build/<recipe name>/)")
    add_set_argument(parser)
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 with a diff when the files in DIR are stale")
    add_format_argument(parser)


def run(args) -> int:
    from ftc.orchestrate.build import build, stale_diff, write_folder

    built = build(args.recipe, tuple(args.overrides), out_dir=args.output)
    if args.format == "json":
        dump_json(json_report(args.recipe, built))
    else:
        print_diagnostics(built, args.format)
    if not built.ok:
        if args.format == "text":
            print(f"{args.recipe}: not compiled", file=sys.stderr)
        return 1
    out_dir = built.out_dir
    if args.check:
        try:
            stale = stale_diff(out_dir, built.files)
        except OSError as exc:
            print(f"ftc compile: cannot read {_show(out_dir)}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        if stale:
            sys.stdout.write(stale)
            command = ["ftc", "compile", args.recipe] + (["-o", args.output] if args.output else [])
            for override in args.overrides:
                command += ["--set", override]
            print(f"{_show(out_dir)}: stale; run `{shlex.join(command)}` to update", file=sys.stderr)
            return 1
        if args.format == "text":
            print(f"{_show(out_dir)}: up to date", file=sys.stderr)
        return 0
    try:
        write_folder(out_dir, built.files)
    except OSError as exc:
        print(f"ftc compile: cannot write {_show(out_dir)}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if args.format == "text":
        sys.stdout.write(summary(built.plan, out_dir, built.files))
    return 0


def _show(path: Path) -> str:
    return path.as_posix().rstrip("/") + "/"


def _gib(n: int | None) -> str:
    return "?" if n is None else f"{n / 2**30:.1f} GiB"


def summary(plan: dict, out_dir: Path, files: dict[str, bytes]) -> str:
    hw, dist, batch, steps, train = plan["hardware"], plan["distributed"], plan["batch"], plan["steps"], plan["train"]
    launch = plan["launch"]
    lines = [f"compiled {plan['recipe']['name']} -> {_show(out_dir)} ({', '.join(files)})"]
    device = "cpu process(es)" if hw["accelerator"] == "cpu" else f"{hw['gpu'] or 'gpu'}"
    strategy = dist["strategy"] + (f" ZeRO-{dist['zero']}" if dist["zero"] is not None else "")
    lines.append(f"  world    {dist['world_size']} = {launch['nnodes']} node(s) x {launch['nproc_per_node']} "
                 f"{device}; {strategy}; launcher {launch['launcher']}")
    lines.append(f"  batch    global {batch['global_batch']} = micro {batch['micro_batch']} x grad_accum "
                 f"{batch['grad_accum']} x {batch['data_parallel_world']} rank(s)")
    if steps["total_steps"] is not None:
        per_epoch = f", {steps['steps_per_epoch']} per epoch" if steps["steps_per_epoch"] else ""
        length = f"{steps['total_steps']} total ({steps['source']}{per_epoch})"
    else:
        rows = f"; {steps['train_rows']} rows in the train files" if steps["train_rows"] is not None else ""
        length = f"counted at run time ({train['epochs']} epoch(s){rows})"
    warmup = (f"{train['warmup_steps']} steps" if train["warmup_steps"] is not None
              else f"{train['warmup_ratio'] * 100:g}% of the run")
    lines.append(f"  steps    {length}; warmup {warmup}; {train['schedule']} lr {train['lr']!r}")
    memory = plan.get("memory")
    if memory:
        verdict = "fits" if memory.get("fits") else "DOES NOT FIT"
        lines.append(f"  memory   {_gib(memory.get('peak_bytes_per_gpu'))} per GPU of "
                     f"{_gib(memory.get('budget_bytes_per_gpu'))} budget ({verdict})")
    elif hw["accelerator"] == "cpu":
        lines.append("  memory   not estimated: a cpu run has no GPU budget")
    else:
        budget = f" (budget {_gib(hw['memory_per_gpu'])})" if hw["memory_per_gpu"] else " (no GPU budget given)"
        lines.append(f"  memory   not estimated{budget}")
    for decision in plan["auto"]:
        lines.append(f"  auto     {decision['field']} = {spell(decision['value'])}: {decision['reason']}")
    return "\n".join(lines) + "\n"
