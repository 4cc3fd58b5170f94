"""`ftc run RECIPE` for a recipe with a `sweep` block: messages, the table at the end, exit codes."""

from __future__ import annotations

import sys

from ftc.plan import EXIT_ABORTED, EXIT_OK, EXIT_PREEMPTED, EXIT_USER_ERROR


def run_sweep_command(recipe: str, overrides: tuple[str, ...], folder, args, *, execute=None, out=None) -> int:
    """Run the study of the recipe compiled in `folder`. 0 when at least one trial completed."""
    from ftc.plan import UserError, load_plan
    from ftc.runtime.train.cli import quiet_libraries

    from .sweep import SweepOptions, run_sweep
    from .sweep_best import BEST_RECIPE
    from .sweep_report import BEST_FILE, SUMMARY_FILE, print_table, write_outputs

    out = out or sys.stdout
    try:
        plan = load_plan(folder)
        quiet_libraries()
        options = SweepOptions(recipe=recipe, overrides=tuple(overrides), trials=getattr(args, "trials", None),
                               resume=args.resume, name=args.run_id, merge=args.merge,
                               worker=bool(getattr(args, "worker", False)))
        result = run_sweep(options, plan, execute=execute, out=out)
    except UserError as exc:
        print(f"ftc: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"ftc: sweep interrupted; continue it with: ftc run {recipe} --resume auto", file=sys.stderr)
        return EXIT_ABORTED
    write_outputs(result, recipe, tuple(overrides))
    for problem in write_results(result, recipe, tuple(overrides)):
        print(f"ftc: warning: {problem}", file=sys.stderr)
    from rich.console import Console

    print_table(result, Console(file=out, width=max(100, Console().width)))
    print(f"ftc: trials and best values in {result.folder / SUMMARY_FILE}", file=out)
    if result.best is not None:
        print(f"ftc: best trial {result.best.number}: {result.metric} {result.best.value:.6g}; "
              f"its --set lines are in {result.folder / BEST_FILE}, its recipe in {result.folder / BEST_RECIPE}",
              file=out)
    if result.stopped == "preempted":
        return EXIT_PREEMPTED
    if result.best is None:
        print("ftc: error: no trial completed (see the errors in the table and in sweep_summary.json)",
              file=sys.stderr)
        return EXIT_USER_ERROR
    return EXIT_OK


def write_results(result, recipe: str, overrides: tuple[str, ...]) -> list[str]:
    """best.ftspec and the plots; what could not be written is a warning, never a failed sweep."""
    from ftc.runtime.sweep.errors import SweepError
    from ftc.runtime.sweep.study import load_folder_study

    from .sweep_best import write_best_recipe
    from .sweep_results import write_plots

    problems = []
    if result.best is not None:
        b = result.best
        header = (f"best trial {b.number} of {result.folder.name}: {result.direction} {result.metric} = {b.value:.6g}",
                  f"{recipe} with --set " + " ".join(repr(o) for o in (*overrides, *b.overrides)))
        try:
            write_best_recipe(recipe, overrides, b, result.folder, header)
        except SweepError as exc:
            problems.append(f"best.ftspec not written: {exc}")
    try:
        write_plots(load_folder_study(result.folder), result.folder)
    except Exception as exc:  # a plotting library problem must not fail a finished sweep
        problems.append(f"plots not written: {type(exc).__name__}: {exc}")
    return problems
