"""Trials in their own processes on CPU: `parallel = 2` runs two tiny trials at once (each with half the
cores) and the pruner stops a diverging one from its own process; a sweep whose trials are DDP runs of two
ranks each goes through the launcher as `ftc run` does."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from multiproc_util import base_env, recipe_text


@pytest.fixture(autouse=True)
def _extends_from_a_temporary_folder(monkeypatch):
    """These recipes live in a temporary folder and extend an example of the repository (E0116 otherwise)."""
    monkeypatch.setenv("FTC_ALLOW_OUTSIDE_PROJECT", "1")

pytestmark = pytest.mark.slow

TINY = Path(__file__).resolve().parent.parent / "examples" / "tiny.ftspec"

PARALLEL = f"""recipe "par"
extends "{TINY.as_posix()}"

data {{
  max_length = 64
}}

train {{
  max_steps  = 4 steps
  warmup     = 1 steps
  eval_every = 2 steps
}}

checkpoint {{
  every = 4 steps
}}

output {{
  runs_dir = "runs"
}}

sweep {{
  trials   = 4
  sampler  = grid
  pruner   = none
  parallel = 2
  train.lr = choice(1e-3, 2e-3, 3e-3, 1.0)
}}
"""


@pytest.fixture
def clean_env(monkeypatch):
    """The trials' processes inherit this environment: no launcher or rank settings of another test."""
    for key, value in base_env().items():
        monkeypatch.setenv(key, value)
    for key in ("FTC_LAUNCHER", "MASTER_PORT", "FTC_RUN_ID", "RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)


def _sweep(recipe: Path, pruner=None, trials=None):
    from ftc.orchestrate.build import build, write_folder
    from ftc.orchestrate.sweep import SweepOptions, run_sweep
    from ftc.plan import load_plan

    built = build(recipe, (), out_dir=recipe.parent / "build")
    assert built.ok, [d.message for d in built.errors]
    write_folder(built.out_dir, built.files)
    return run_sweep(SweepOptions(str(recipe), (), trials=trials, pruner=pruner), load_plan(built.out_dir))


def test_two_trials_run_at_once_and_a_diverging_one_is_pruned_from_its_process(tmp_path, clean_env):
    import optuna

    recipe = tmp_path / "par.ftspec"
    recipe.write_text(PARALLEL, encoding="utf-8")
    # lr 1.0 diverges: its eval loss at step 2 is above 5 (the others stay near 3.5)
    result = _sweep(recipe, pruner=optuna.pruners.ThresholdPruner(upper=5.0))
    states = {r.params["train.lr"]: r.state for r in result.trials}
    assert len(result.trials) == 4 and states == {1e-3: "COMPLETE", 2e-3: "COMPLETE", 3e-3: "COMPLETE",
                                                  1.0: "PRUNED"}, [(r.params, r.state, r.error) for r in result.trials]
    spans = sorted((r.started_at, r.ended_at) for r in result.trials)
    assert all(start < end for start, end in spans)
    assert any(b_start < a_end for (_, a_end), (b_start, _) in zip(spans, spans[1:])), spans  # two at once

    pruned = next(r for r in result.trials if r.state == "PRUNED")
    run = result.folder / pruned.run_dir
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 2 and not (run / "final").exists()  # stopped at its first evaluation in training
    study = optuna.load_study(study_name=result.folder.name, storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(result.folder / "study.journal"))))
    assert study.trials[pruned.number].intermediate_values[2] > 5.0  # reported by the trial's own process
    for r in result.trials:  # each trial's processes got half of the cores
        log = (result.folder / "logs" / f"trial-{r.number}" / "rank-0.log").read_text()
        assert "ftc: run folder" in log and str(result.folder / r.run_dir) in log
    assert result.best is not None and result.best.params["train.lr"] != 1.0


def test_a_sweep_of_ddp_trials_runs_each_through_the_launcher_and_prunes_on_every_rank(tmp_path, clean_env):
    import optuna

    text = recipe_text("ddp-sweep", "ddp", processes=2, max_steps=3, every=3) + """
sweep {
  trials    = 2
  objective = minimize loss
  sampler   = grid
  pruner    = none
  train.lr  = choice(2e-3, 1.0)
}
"""
    recipe = tmp_path / "ddp-sweep.ftspec"
    recipe.write_text(text, encoding="utf-8")
    result = _sweep(recipe, pruner=optuna.pruners.ThresholdPruner(upper=5.0))
    states = {r.params["train.lr"]: r.state for r in result.trials}
    assert states == {2e-3: "COMPLETE", 1.0: "PRUNED"}, [(r.params, r.state, r.error) for r in result.trials]
    for r in result.trials:
        run = result.folder / r.run_dir
        assert json.loads((run / "plan.json").read_text())["distributed"]["world_size"] == 2
        logs = result.folder / "logs" / f"trial-{r.number}"
        exits = [json.loads(p.read_text())["exit_code"] for p in sorted(logs.glob("rank-*.exit.json"))]
        assert exits == [0, 0]  # both ranks ended cleanly, the pruned trial's too (they stopped together)
    complete = next(r for r in result.trials if r.state == "COMPLETE")
    assert json.loads((result.folder / complete.run_dir / "summary.json").read_text())["status"] == "completed"
