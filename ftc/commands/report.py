"""`ftc report RUN`: the summary of a finished (or preempted) run, from its summary.json.

RUN is a run folder (`runs/<recipe>/<run id>`) or a recipe's runs folder (its newest run is shown), or a
sweep folder (`runs/<recipe>/sweep-<name>`: the table of its trials).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("run", metavar="RUN", help="run folder, runs/<recipe> for its newest run, or a sweep folder")
    parser.add_argument("--json", action="store_true", help="print summary.json instead of the table")


def find_run(path: Path) -> Path | None:
    if (path / "summary.json").is_file():
        return path
    runs = sorted((p for p in path.iterdir() if (p / "summary.json").is_file()), key=lambda p: p.name) \
        if path.is_dir() else []
    return runs[-1] if runs else None


def _bytes(n) -> str:
    if n is None:
        return "-"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _loss(x) -> str:
    return "-" if x is None else f"{x:.4f}"


def _seconds(s) -> str:
    if s is None:
        return "-"
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def render(summary: dict, run: Path, console) -> None:
    from rich.table import Table

    table = Table(title=f"{summary['recipe']} / {summary['run_id']}  ({summary['status']})", show_header=False,
                  title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    best = _loss(summary.get("best_eval_loss"))
    if summary.get("best_eval_step") is not None:
        best += f" (step {summary['best_eval_step']})"
    rows = [
        ("method", f"{summary.get('method')} on {summary.get('model')}"),
        ("steps", f"{summary.get('global_step')} / {summary.get('max_steps')}"),
        ("train loss", f"{_loss(summary.get('first_train_loss'))} -> {_loss(summary.get('final_train_loss'))}"),
        ("eval loss", f"{_loss(summary.get('first_eval_loss'))} -> {_loss(summary.get('final_eval_loss'))}"),
        ("best eval loss", best),
        ("tokens/s", f"{summary.get('tokens_per_second') or 0:,.0f}  ({summary.get('tokens_seen') or 0:,} tokens)"),
        ("wall time", f"{_seconds(summary.get('wall_seconds'))}  (training {_seconds(summary.get('train_seconds'))})"),
        ("peak memory", f"{_bytes(summary.get('peak_rss_bytes'))} RSS"
         + (f", {_bytes(summary['peak_gpu_bytes'])} GPU" if summary.get("peak_gpu_bytes") else "")),
        ("final output", summary.get("final_dir") or "-"),
    ]
    if summary.get("first_eval_reward_accuracies") is not None:  # preference objectives
        rows.insert(5, ("reward accuracy", f"{summary['first_eval_reward_accuracies']:.3f} -> "
                                           f"{summary['final_eval_reward_accuracies']:.3f}  (eval)"))
        rows.insert(6, ("reward margin", f"{summary['first_eval_reward_margins']:.4f} -> "
                                         f"{summary['final_eval_reward_margins']:.4f}  (eval)"))
    if summary.get("merged_dir"):
        rows.append(("merged model", summary["merged_dir"]))
    if summary.get("resumed_from"):
        rows.append(("resumed from", ", ".join(summary["resumed_from"])))
    for key, value in rows:
        table.add_row(key, str(value))
    console.print(table)
    checkpoints = Table(title="checkpoints", title_justify="left")
    for col in ("name", "step", "metric", ""):
        checkpoints.add_column(col)
    for c in summary.get("checkpoints") or []:
        metric = "-" if c.get("value") is None else f"{c['metric']} {c['value']:.4f}"
        checkpoints.add_row(c["name"], str(c["step"]), metric,
                            "best" if c["name"] == summary.get("best_checkpoint") else "")
    if summary.get("checkpoints"):
        console.print(checkpoints)
    console.print(f"run folder: {run}")


def run(args) -> int:
    from rich.console import Console

    from ftc.orchestrate.sweep_results import is_sweep_folder, report_sweep

    if is_sweep_folder(Path(args.run)):  # a sweep folder: its trials table
        return report_sweep(Path(args.run), args.json, Console())
    run_dir = find_run(Path(args.run))
    if run_dir is None:
        print(f"ftc report: no summary.json in {args.run} (is it a run folder?)", file=sys.stderr)
        return 1
    try:
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"ftc report: cannot read {run_dir / 'summary.json'}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.write(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        return 0
    render(summary, run_dir, Console())
    return 0
