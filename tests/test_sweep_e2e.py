"""Sweeps with real training on CPU: `ftc run` on the tiny sweep (3 short trials), and a pruner that stops
a trial at its first evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TINY_SWEEP = EXAMPLES / "tiny-sweep.ftspec"
SHORT = ("train.max_steps=4 steps", "train.warmup=1 steps", "train.eval_every=2 steps", "checkpoint.every=4 steps",
         "data.max_length=64")


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Each end-to-end training here runs with one torch thread (see conftest)."""


def short_overrides(tmp_path: Path) -> tuple[str, ...]:
    return (f'output.runs_dir="{(tmp_path / "runs").as_posix()}"', *SHORT)


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_tiny_sweep_runs_three_trials_and_picks_the_lowest_final_eval_loss(tmp_path, capsys):
    from ftc.cli import main

    args = ["run", str(TINY_SWEEP), "-o", str(tmp_path / "build")]
    for text in short_overrides(tmp_path):
        args += ["--set", text]
    assert main(args) == 0
    out = capsys.readouterr().out
    sweeps = list((tmp_path / "runs" / "tiny-sweep").glob("sweep-*"))
    assert len(sweeps) == 1
    folder = sweeps[0]
    summary = json.loads((folder / "sweep_summary.json").read_text())
    assert summary["counts"]["COMPLETE"] == 3 and len(summary["trials"]) == 3

    final = {}
    for trial in summary["trials"]:
        run = folder / trial["run_dir"]
        evals = [r for r in records(run / "metrics.jsonl") if "eval_loss" in r]
        assert evals[-1]["step"] == 4
        final[trial["number"]] = evals[-1]["eval_loss"]
        assert trial["value"] == pytest.approx(final[trial["number"]])
        plan = json.loads((run / "plan.json").read_text())  # the trial trained with its own draw
        assert plan["train"]["lr"] == trial["params"]["train.lr"]
        assert plan["method"]["lora"]["rank"] == trial["params"]["method.rank"]
        assert json.loads((run / "summary.json").read_text())["status"] == "completed"
    best = min(final, key=final.get)
    assert summary["best"]["number"] == best
    assert len({t["params"]["train.lr"] for t in summary["trials"]}) == 3
    best_lines = (folder / "best_overrides.txt").read_text().splitlines()
    assert f"--set train.lr={summary['best']['params']['train.lr']!r}" in best_lines
    assert "eval_loss" in out and f"best trial {best}:" in out and "complete" in out


def test_a_pruner_stops_the_trial_at_its_first_evaluation(tmp_path):
    import optuna

    from ftc.orchestrate.build import build, write_folder
    from ftc.orchestrate.sweep import SweepOptions, run_sweep
    from ftc.plan import load_plan
    from ftc.runtime.train.cli import quiet_libraries

    quiet_libraries()
    overrides = short_overrides(tmp_path)
    compiled = build(TINY_SWEEP, overrides, out_dir=tmp_path / "build")
    write_folder(compiled.out_dir, compiled.files)
    always = optuna.pruners.ThresholdPruner(upper=0.0)  # every loss is above 0: prune at the first report
    result = run_sweep(SweepOptions(str(TINY_SWEEP), overrides, trials=1, pruner=always), load_plan(compiled.out_dir))
    [trial] = result.trials
    assert trial.state == "PRUNED" and result.best is None
    run = result.folder / trial.run_dir
    logged = records(run / "metrics.jsonl")
    assert max(r["step"] for r in logged) == 0 < 4  # stopped before the first optimizer step
    assert not (run / "final").exists() and not (run / "summary.json").exists()
    study = optuna.load_study(study_name=result.folder.name, storage=f"sqlite:///{result.folder / 'study.db'}")
    assert study.trials[0].intermediate_values == {0: pytest.approx(logged[0]["eval_loss"])}
    assert trial.value == pytest.approx(logged[0]["eval_loss"])
