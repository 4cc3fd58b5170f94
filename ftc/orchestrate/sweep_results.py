"""What a finished sweep leaves besides the summary: the best trial's recipe (best.py), optuna's
optimization-history and parameter-importance plots as PNG, and `ftc report SWEEP_DIR` (the trials table,
read from the study itself, so that a sweep still running on other workers shows its latest state)."""

from __future__ import annotations

import json
from pathlib import Path

from ftc.runtime.sweep.errors import SweepError

HISTORY_PNG = "optimization_history.png"
IMPORTANCE_PNG = "param_importances.png"


def write_plots(study, folder: Path) -> list[Path]:
    """Both plots when the study has completed trials (importance: at least two, over a varying parameter)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as ovm

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    written = []
    if not complete:
        return written
    plots = [(HISTORY_PNG, ovm.plot_optimization_history)]
    if len(complete) >= 2 and any(len({repr(t.params.get(k)) for t in complete}) > 1 for k in complete[0].params):
        plots.append((IMPORTANCE_PNG, ovm.plot_param_importances))
    for name, plot in plots:
        axes = plot(study)
        figure = axes.figure
        figure.set_size_inches(8, 5)
        figure.tight_layout()
        path = Path(folder) / name
        figure.savefig(path, dpi=100, bbox_inches="tight", metadata={"Software": None})
        plt.close(figure)
        written.append(path)
    return written


def is_sweep_folder(path: Path) -> bool:
    from ftc.runtime.sweep.storage import has_study

    return (path / "sweep_summary.json").is_file() or has_study(path)


def report_sweep(folder: Path, as_json: bool, console) -> int:
    """Print the sweep's trials table (or its sweep_summary.json); 1 with a message when it cannot be read."""
    import sys

    summary_file = folder / "sweep_summary.json"
    summary = json.loads(summary_file.read_text(encoding="utf-8")) if summary_file.is_file() else None
    if as_json:
        if summary is None:
            print(f"ftc report: {folder} has no sweep_summary.json yet (the sweep is still running)",
                  file=sys.stderr)
            return 1
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        return 0
    try:
        result = _from_study(folder, summary)
    except SweepError as exc:
        print(f"ftc report: {exc}", file=sys.stderr)
        return 1
    from .sweep_report import print_table

    print_table(result, console)
    counts = {s: sum(r.state == s for r in result.trials) for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")}
    console.print(", ".join(f"{n} {s.lower()}" for s, n in counts.items() if n) + f"; sweep folder: {folder}")
    for name in ("best.ftspec", HISTORY_PNG, IMPORTANCE_PNG):
        if (folder / name).is_file():
            console.print(f"  {folder / name}")
    return 0


def _from_study(folder: Path, summary: dict | None):
    from ftc.runtime.sweep.study import load_folder_study, quiet_optuna

    from .sweep import collect

    quiet_optuna()
    try:
        study = load_folder_study(folder)
    except Exception as exc:  # a database that is not reachable from here, a study that is gone
        if summary is None:
            raise SweepError(f"cannot read the study of {folder}: {str(exc).splitlines()[0]}") from None
        return _from_summary(folder, summary)
    metric = study.user_attrs.get("metric") or (summary or {}).get("objective", {}).get("metric") or "value"
    return collect(study, folder, metric, study.direction.name.lower())


def _from_summary(folder: Path, summary: dict):
    from .sweep import SweepResult, TrialRecord

    records = tuple(TrialRecord(**{**t, "overrides": tuple(t["overrides"])}) for t in summary["trials"])
    best = next((r for r in records if summary.get("best") and r.number == summary["best"]["number"]), None)
    return SweepResult(folder, summary["objective"]["metric"], summary["objective"]["direction"], records, best)
