"""A sweep's results (the best trial's recipe, the plots, `ftc report SWEEP_DIR`) and its storage choices
(the `storage` field, the journal's stale-trial re-queue, the count of a shared study), with a stand-in
for training: fast."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_sweep_runner import TINY, TINY_SWEEP, FakeTraining, child_recipe, compile_base

from ftc.compiler.pipeline import compile_recipe
from ftc.orchestrate.sweep_command import run_sweep_command


@pytest.fixture(autouse=True)
def _extends_from_a_temporary_folder(monkeypatch):
    """These recipes live in a temporary folder and extend an example of the repository (E0116 otherwise)."""
    monkeypatch.setenv("FTC_ALLOW_OUTSIDE_PROJECT", "1")


def _args(**kw):
    return argparse.Namespace(resume=kw.get("resume"), run_id=kw.get("run_id"), merge=None,
                              trials=kw.get("trials"), worker=kw.get("worker", False))


def comparable(plan: dict) -> dict:
    """A plan without what names its source files (and their provenance) or the search."""
    return {k: v for k, v in plan.items() if k not in ("recipe", "provenance", "sweep")}


def test_the_best_trial_recipe_compiles_to_the_best_trials_plan(tmp_path, capsys):
    overrides, plan = compile_base(tmp_path, TINY_SWEEP, "train.warmup=2 steps")
    fake = FakeTraining()
    code = run_sweep_command(str(TINY_SWEEP), overrides, plan.folder, _args(trials=3), execute=fake)
    assert code == 0, capsys.readouterr()
    [folder] = (tmp_path / "runs" / "tiny-sweep").glob("sweep-*")
    summary = json.loads((folder / "sweep_summary.json").read_text())
    best = summary["best"]
    recipe = folder / "best.ftspec"
    text = recipe.read_text()
    assert not any(line.startswith(("sweep", "extends")) for line in text.splitlines())
    assert text.startswith(f"# best trial {best['number']} of {folder.name}")
    from ftc.cli import main

    assert main(["fmt", "--check", str(recipe)]) == 0  # formatted
    assert main(["check", str(recipe)]) == 0
    trial_dir = folder / "build" / f"trial-{best['number']}"
    trial_plan = json.loads((trial_dir / "plan.json").read_text())
    again = compile_recipe(recipe, (), out_dir=trial_dir)  # the same folder: the same relative paths
    assert again.ok and comparable(again.plan) == comparable(trial_plan)
    assert again.plan["train"]["lr"] == best["params"]["train.lr"] and again.plan["sweep"] is None
    for name in ("optimization_history.png", "param_importances.png"):
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ftc_report_prints_a_sweeps_trials(tmp_path, capsys):
    from ftc.cli import main

    overrides, plan = compile_base(tmp_path, TINY_SWEEP)
    assert run_sweep_command(str(TINY_SWEEP), overrides, plan.folder, _args(trials=2, run_id="r"),
                             execute=FakeTraining()) == 0
    capsys.readouterr()
    folder = tmp_path / "runs" / "tiny-sweep" / "sweep-r"
    assert main(["report", str(folder)]) == 0
    out = capsys.readouterr().out
    summary = json.loads((folder / "sweep_summary.json").read_text())
    assert "sweep-r: minimize eval_loss" in out and "2 complete" in out
    assert f"{summary['best']['number']} *" in out and "method.rank" in out
    assert main(["report", str(folder), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == summary


def test_the_storage_field_and_its_default(tmp_path):
    recipe = child_recipe(tmp_path, "trials = 2\n  parallel = 2\n  train.lr = loguniform(1e-4, 1e-3)")
    assert compile_recipe(recipe, (), out_dir=tmp_path / "b").plan["sweep"]["storage"] == "journal"
    compiled = compile_recipe(recipe, ('sweep.storage="postgresql://u:secret@db/s"',), out_dir=tmp_path / "b")
    assert compiled.plan["sweep"]["storage"] == "postgresql://u:secret@db/s"
    bad = compile_recipe(recipe, ("sweep.storage=redis",), out_dir=tmp_path / "b")
    [error] = [d for d in bad.diagnostics if d.is_error]
    assert error.code == "E0311" and "`redis`" in error.message
    from ftc.runtime.sweep.storage import redact

    assert redact("postgresql://u:secret@db/s") == "postgresql://u:***@db/s"


def test_a_worker_needs_a_shared_storage_and_a_recipe(tmp_path, capsys):
    from ftc.cli import main

    overrides, plan = compile_base(tmp_path, TINY_SWEEP)
    assert run_sweep_command(str(TINY_SWEEP), overrides, plan.folder, _args(worker=True)) == 1
    assert "--worker joins a study shared" in capsys.readouterr().err
    assert main(["run", "--plan", str(plan.folder), "--worker"]) == 2
    assert main(["run", str(TINY), "-o", str(tmp_path / "t"), "--worker"]) == 2


def test_a_journal_trial_whose_worker_died_is_failed_and_queued_again(tmp_path, monkeypatch):
    import optuna

    from ftc.runtime.sweep.schedule import tally
    from ftc.runtime.sweep.storage import HEARTBEAT, WORKER, StorageChoice, fail_stale
    from ftc.runtime.sweep.study import open_study, quiet_optuna

    quiet_optuna()
    monkeypatch.setenv("FTC_SWEEP_HEARTBEAT", "1")
    study = open_study(tmp_path, "minimize", optuna.samplers.RandomSampler(seed=0), optuna.pruners.NopPruner(),
                       choice=StorageChoice("journal"), name="s")
    done = study.ask()
    done.suggest_float("train.lr", 1e-4, 1e-3)
    study.tell(done, 1.0)
    busy, elsewhere, killed = study.ask(), study.ask(), study.ask()
    for t in (busy, elsewhere, killed):
        t.suggest_float("train.lr", 1e-4, 1e-3)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    here = socket.gethostname()
    busy.set_user_attr(WORKER, f"{here}:{os.getpid()}")  # alive on this host: a late heartbeat is a busy machine
    busy.set_user_attr(HEARTBEAT, time.time() - 10)
    elsewhere.set_user_attr(WORKER, "other-host:1")  # another machine: no heartbeat for 3 intervals
    elsewhere.set_user_attr(HEARTBEAT, time.time() - 10)
    killed.set_user_attr(WORKER, f"{here}:{gone.pid}")  # its process is gone: at once
    killed.set_user_attr(HEARTBEAT, time.time())
    assert fail_stale(study) == [elsewhere.number, killed.number]
    trials = {t.number: t for t in study.get_trials()}
    assert trials[busy.number].state.name == "RUNNING"
    reruns = sorted((t for t in trials.values() if t.state.name == "WAITING"), key=lambda t: t.number)
    assert [t.user_attrs["rerun_of"] for t in reruns] == [elsewhere.number, killed.number]
    assert reruns[1].system_attrs["fixed_params"] == trials[killed.number].params
    assert tally(study) == tally(study).__class__(done=1, running=1, waiting=2)
    assert fail_stale(study) == []  # once


def test_a_continued_grid_sweep_visits_each_point_once(tmp_path):
    """The grid's order comes from the seed: a continued sweep walks the same order, so no point runs twice."""
    from ftc.orchestrate.sweep import SweepOptions, run_sweep

    recipe = child_recipe(tmp_path, "trials = 4\n  sampler = grid\n  train.lr = choice(1e-4, 2e-4, 3e-4, 4e-4)")
    overrides, plan = compile_base(tmp_path, recipe)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(SweepOptions(str(recipe), overrides, name="g"), plan, execute=FakeTraining(interrupt_on_call=3))
    result = run_sweep(SweepOptions(str(recipe), overrides, resume="auto"), plan, execute=FakeTraining())
    done = [r.params["train.lr"] for r in result.trials if r.state == "COMPLETE"]
    assert sorted(done) == [1e-4, 2e-4, 3e-4, 4e-4]
