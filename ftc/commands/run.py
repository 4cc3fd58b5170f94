"""`ftc run RECIPE [--set ...] [--resume auto|PATH]` compiles, then executes;
`ftc run --plan DIR` executes an already compiled folder (what was reviewed is what runs).
A recipe with a `sweep` block runs an optuna study (ftc.runtime.sweep) unless `--no-sweep` is given.

Exit codes: 0 done; 1 recipe or run error (a message, never a traceback); 2 usage;
75 preempted by SIGTERM/SIGINT after saving a full checkpoint; 130 aborted by a second signal.
"""

from __future__ import annotations

import sys

from ftc.commands.common import CompileReport, add_set_argument, print_diagnostics


def add_arguments(parser) -> None:
    from ftc.runtime.train.cli import add_run_options

    parser.add_argument("recipe", nargs="?", metavar="RECIPE", help=".ftspec file (or use --plan)")
    parser.add_argument("--plan", metavar="DIR", default=None, help="run an already compiled folder")
    parser.add_argument("-o", "--output", metavar="DIR", default=None,
                        help="where to compile the recipe (default: build/<recipe name>/)")
    add_set_argument(parser)
    add_run_options(parser)
    parser.add_argument("--no-sweep", action="store_true",
                        help="train once with the recipe's own values, even if it has a `sweep` block")
    parser.add_argument("--trials", type=_positive, metavar="N", default=None,
                        help="run N trials in all instead of the sweep's `trials` (e.g. for a quick try)")
    parser.add_argument("--worker", action="store_true",
                        help="join the sweep's shared study (storage = journal or a database URL) and run trials "
                             "until it has enough; start one per machine with the same --run-id (default: main)")


def _positive(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, found {text!r}")
    return value


def run_plan_folder(folder, args) -> int:
    """In this process, or — for more than one rank or another launcher — through ftc.runtime.launch."""
    import json
    from pathlib import Path

    from ftc.runtime.launch import needs_launcher, run_launched
    from ftc.runtime.train.cli import run_plan_folder as run_here

    try:
        raw = json.loads((Path(folder) / "plan.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raw = None  # the runtime reports a missing or broken plan
    if isinstance(raw, dict) and needs_launcher(raw):
        return run_launched(folder, args)
    return run_here(folder, args)


def run(args) -> int:
    if (args.recipe is None) == (args.plan is None):
        print("ftc run: give either a RECIPE or --plan DIR", file=sys.stderr)
        return 2
    if args.plan is not None:
        if args.overrides:
            print("ftc run: --set applies to a recipe; recompile to change a compiled plan", file=sys.stderr)
            return 2
        if getattr(args, "trials", None) is not None or getattr(args, "worker", False):
            print("ftc run: --trials and --worker apply to a recipe with a `sweep` block; a compiled plan runs once",
                  file=sys.stderr)
            return 2
        return run_plan_folder(args.plan, args)
    folder = compile_to_folder(args.recipe, tuple(args.overrides), args.output)
    if folder is None:
        return 1
    sweeps = not getattr(args, "no_sweep", False) and _has_sweep(folder)
    if getattr(args, "worker", False) and args.resume:
        print("ftc run: --worker joins the study as it is (it re-runs trials of dead workers); drop --resume",
              file=sys.stderr)
        return 2
    if getattr(args, "worker", False) and not sweeps:
        print("ftc run: --worker applies to a recipe with a `sweep` block (and without --no-sweep)", file=sys.stderr)
        return 2
    if getattr(args, "trials", None) is not None and not sweeps:
        print("ftc run: --trials applies to a recipe with a `sweep` block (and without --no-sweep)", file=sys.stderr)
        return 2
    if sweeps:
        from ftc.runtime.sweep.cli import run_sweep_command

        return run_sweep_command(args.recipe, tuple(args.overrides), folder, args)
    return run_plan_folder(folder, args)


def _has_sweep(folder) -> bool:
    import json
    from pathlib import Path

    try:
        return bool(json.loads((Path(folder) / "plan.json").read_text(encoding="utf-8")).get("sweep"))
    except (OSError, ValueError, AttributeError):
        return False


def compile_to_folder(recipe: str, overrides: tuple[str, ...], output: str | None):
    """Compile exactly as `ftc compile` does, writing the folder that is then run."""
    from ftc.commands.compile import write_folder
    from ftc.compiler.emit import emit
    from ftc.compiler.pipeline import compile_recipe

    compiled = compile_recipe(recipe, overrides, out_dir=output)
    print_diagnostics(CompileReport(compiled), "text")
    if compiled.plan is None:
        print(f"{recipe}: not compiled", file=sys.stderr)
        return None
    write_folder(compiled.out_dir, emit(compiled.plan))
    print(f"ftc: compiled {recipe} -> {compiled.out_dir.as_posix().rstrip('/')}/", file=sys.stderr)
    return compiled.out_dir
