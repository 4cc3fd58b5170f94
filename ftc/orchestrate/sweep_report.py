"""What a sweep leaves behind: a table of its trials, `sweep_summary.json`, and the best trial's values as
`--set` lines (`best_overrides.txt`) ready for `ftc run RECIPE --no-sweep` or for writing into a recipe."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from .sweep import SweepResult, TrialRecord

SUMMARY_FILE = "sweep_summary.json"
BEST_FILE = "best_overrides.txt"


def best_command(recipe: str, user_overrides: tuple[str, ...], best: TrialRecord) -> str:
    parts = ["ftc", "run", recipe, "--no-sweep"]
    for text in (*user_overrides, *best.overrides):
        parts += ["--set", text]
    return shlex.join(parts)


def write_outputs(result: SweepResult, recipe: str, user_overrides: tuple[str, ...]) -> dict:
    """sweep_summary.json always; best_overrides.txt when a trial completed."""
    summary = {
        "recipe": recipe,
        "sweep": result.folder.name,
        "objective": {"direction": result.direction, "metric": result.metric},
        "stopped": result.stopped,
        "counts": {state: sum(r.state == state for r in result.trials)
                   for state in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")},
        "best": None if result.best is None else {
            **result.best.to_json(), "command": best_command(recipe, user_overrides, result.best)},
        "trials": [r.to_json() for r in result.trials],
        "notes": list(result.notes),
    }
    _write(result.folder / SUMMARY_FILE, json.dumps(summary, indent=2, sort_keys=False) + "\n")
    if result.best is not None:
        b = result.best
        lines = [f"# best trial {b.number} of {result.folder.name}: {result.direction} {result.metric} = {b.value:.6g}",
                 f"# {best_command(recipe, user_overrides, b)}",
                 *(["# the --set this sweep ran with"] if user_overrides else []),
                 *(shlex.join(["--set", text]) for text in user_overrides),
                 "# the best trial's values",
                 *(shlex.join(["--set", text]) for text in b.overrides)]
        _write(result.folder / BEST_FILE, "\n".join(lines) + "\n")
    return summary


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def print_table(result: SweepResult, console=None) -> None:
    """One row per trial: number, state, each parameter, the objective, wall time; the best row marked."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    targets = list(dict.fromkeys(k for r in result.trials for k in r.params))
    table = Table(title=f"{result.folder.name}: {result.direction} {result.metric}", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("state")
    for target in targets:
        table.add_column(target, justify="right")
    table.add_column(result.metric, justify="right")
    table.add_column("wall", justify="right")
    for r in result.trials:
        best = result.best is not None and r.number == result.best.number
        state = "interrupted" if r.interrupted else r.state.lower()
        cells = [f"{r.number}{' *' if best else ''}", state,
                 *(_cell(r, t) for t in targets),
                 "" if r.value is None else f"{r.value:.4f}",
                 "" if r.wall_seconds is None else f"{r.wall_seconds:.1f} s"]
        table.add_row(*cells, style="bold green" if best else ("dim" if r.state != "COMPLETE" else None))
    console.print(table)


def _cell(record: TrialRecord, target: str) -> str:
    """The value as the recipe writes it (`37 steps`, `5%`), plain floats to 3 digits."""
    value = record.params.get(target)
    spelled = next((o.split("=", 1)[1] for o in record.overrides if o.split("=", 1)[0] == target), None)
    if spelled is not None and (" " in spelled or spelled.endswith("%")):
        return spelled
    if value is None:
        return ""
    return f"{value:.3g}" if isinstance(value, float) else str(value)
