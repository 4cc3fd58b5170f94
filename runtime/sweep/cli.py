"""`ftc run RECIPE` for a recipe with a `sweep` block: messages, the table at the end, exit codes."""

from __future__ import annotations

import sys

from .errors import SweepError

EXIT_OK, EXIT_USER_ERROR, EXIT_PREEMPTED, EXIT_ABORTED = 0, 1, 75, 130


def run_sweep_command(recipe: str, overrides: tuple[str, ...], folder, args, *, execute=None, out=None) -> int:
    """Run the study of the recipe compiled in `folder`. 0 when at least one trial completed."""
    from ftc.runtime.train.cli import quiet_libraries
    from ftc.runtime.train.errors import RunError
    from ftc.runtime.train.plan import load_plan

    from .best import BEST_RECIPE
    from .report import BEST_FILE, SUMMARY_FILE, print_table, write_outputs
    from .runner import SweepOptions, run_sweep

    out = out or sys.stdout
    try:
        plan = load_plan(folder)
        quiet_libraries()
        options = SweepOptions(recipe=recipe, overrides=tuple(overrides), trials=getattr(args, "trials", None),
                               resume=args.resume, name=args.run_id, merge=args.merge,
                               worker=bool(getattr(args, "worker", False)))
        result = run_sweep(options, plan, execute=execute, out=out)
    except (SweepError, RunError) as exc:
        print(f"ftc: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
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
    from .best import write_best_recipe
    from .results import write_plots
    from .study import load_folder_study

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
