"""`ftc run RECIPE` for a recipe with a `sweep` block: messages, the table at the end, exit codes."""

from __future__ import annotations

import sys

from ftc.plan import EXIT_ABORTED, EXIT_OK, EXIT_PREEMPTED, EXIT_USER_ERROR


def run_sweep_command(recipe: str, overrides: tuple[str, ...], folder, args, *, execute=None, out=None) -> int:
    """Run the study of the recipe compiled in `folder`. 0 when at least one trial completed."""
    from ftc.plan import UserError, load_plan
    from ftc.runtime.launch import needs_launcher
    from ftc.runtime.sweep.errors import SweepError
    from ftc.runtime.train.cli import quiet_libraries

    from .sweep import SweepOptions, run_sweep
    from .sweep_report import BEST_FILE, SUMMARY_FILE, print_table, write_outputs

    out = out or sys.stdout
    try:
        plan = load_plan(folder)
        if needs_launcher(plan):
            raise SweepError("a sweep runs its trials in this process, but this plan needs "
                             f"{plan.world_size} processes or another launcher; sweep on one device, "
                             "or run once with --no-sweep")
        quiet_libraries()
        options = SweepOptions(recipe=recipe, overrides=tuple(overrides), trials=getattr(args, "trials", None),
                               resume=args.resume, name=args.run_id, merge=args.merge)
        result = run_sweep(options, plan, execute=execute, out=out)
    except UserError as exc:
        print(f"ftc: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"ftc: sweep interrupted; continue it with: ftc run {recipe} --resume auto", file=sys.stderr)
        return EXIT_ABORTED
    write_outputs(result, recipe, tuple(overrides))
    from rich.console import Console

    print_table(result, Console(file=out, width=max(100, Console().width)))
    print(f"ftc: trials and best values in {result.folder / SUMMARY_FILE}", file=out)
    if result.best is not None:
        print(f"ftc: best trial {result.best.number}: {result.metric} {result.best.value:.6g}; "
              f"its --set lines are in {result.folder / BEST_FILE}", file=out)
    if result.stopped == "preempted":
        return EXIT_PREEMPTED
    if result.best is None:
        print("ftc: error: no trial completed (see the errors in the table and in sweep_summary.json)",
              file=sys.stderr)
        return EXIT_USER_ERROR
    return EXIT_OK
