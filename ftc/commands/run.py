"""`ftc run RECIPE [--set ...] [--resume auto|PATH]` compiles, then executes;
`ftc run --plan DIR` executes an already compiled folder (what was reviewed is what runs).
A recipe with a `sweep` block runs an optuna study (ftc.orchestrate.sweep) unless `--no-sweep` is given.

Exit codes: 0 done; 1 recipe or run error (a message, never a traceback); 2 usage;
75 preempted by SIGTERM/SIGINT after saving a full checkpoint; 130 aborted by a second signal.
"""

from __future__ import annotations

import sys

from ftc.commands.common import add_set_argument, print_diagnostics


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
    from ftc.plan import PlanError, load_plan
    from ftc.runtime.launch import needs_launcher, run_launched
    from ftc.runtime.train.cli import run_plan_folder as run_here

    try:
        plan = load_plan(folder)
    except PlanError as exc:
        print(f"ftc: error: {exc}", file=sys.stderr)
        return exc.exit_code
    if needs_launcher(plan):
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
        if getattr(args, "trials", None) is not None:
            print("ftc run: --trials applies to a recipe with a `sweep` block; a compiled plan runs once",
                  file=sys.stderr)
            return 2
        return run_plan_folder(args.plan, args)
    built = compile_to_folder(args.recipe, tuple(args.overrides), args.output)
    if built is None:
        return 1
    folder = built.out_dir
    sweeps = not getattr(args, "no_sweep", False) and built.plan["sweep"] is not None
    if getattr(args, "trials", None) is not None and not sweeps:
        print("ftc run: --trials applies to a recipe with a `sweep` block (and without --no-sweep)", file=sys.stderr)
        return 2
    if sweeps:
        from ftc.orchestrate.sweep_command import run_sweep_command

        return run_sweep_command(args.recipe, tuple(args.overrides), folder, args)
    return run_plan_folder(folder, args)


def compile_to_folder(recipe: str, overrides: tuple[str, ...], output: str | None):
    """Compile exactly as `ftc compile` does, writing the folder that is then run; the Build, None on errors."""
    from ftc.orchestrate.build import build, write_folder

    built = build(recipe, overrides, out_dir=output)
    print_diagnostics(built, "text")
    if not built.ok:
        print(f"{recipe}: not compiled", file=sys.stderr)
        return None
    try:
        write_folder(built.out_dir, built.files)
    except OSError as exc:
        print(f"ftc run: cannot write {built.out_dir}: {exc.strerror or exc}", file=sys.stderr)
        return None
    print(f"ftc: compiled {recipe} -> {built.out_dir.as_posix().rstrip('/')}/", file=sys.stderr)
    return built
