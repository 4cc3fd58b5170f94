"""The sweep loop with a stand-in for training (each trial is still compiled by the real compiler):
best trial, reproducible draws, resume after an interruption, invalid trials, a missing objective metric,
the timeout, the `ftc run` switches, and the reporting callback."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest

from ftc.orchestrate import sweep as runner_module
from ftc.orchestrate.build import build, write_folder
from ftc.orchestrate.sweep import SweepOptions, run_sweep
from ftc.orchestrate.sweep_command import run_sweep_command
from ftc.orchestrate.sweep_report import BEST_FILE, SUMMARY_FILE, write_outputs
from ftc.plan import load_plan
from ftc.runtime.train.run import RunResult

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TINY = EXAMPLES / "tiny.ftspec"
TINY_SWEEP = EXAMPLES / "tiny-sweep.ftspec"


def fake_loss(plan) -> float:
    """A made-up final eval loss, lowest near lr = 3e-3 and for small ranks."""
    return round(abs(math.log10(plan.train.lr) + 2.5) + plan.method.lora.rank / 100, 6)


class FakeTraining:
    """Writes what `execute` writes that the sweep reads (run folder, metrics.jsonl); no model is loaded."""

    def __init__(self, interrupt_on_call: int | None = None, metrics=None):
        self.calls: list[str] = []
        self.interrupt_on_call = interrupt_on_call
        self.metrics = metrics

    def __call__(self, plan, options):
        self.calls.append(options.run_id)
        if self.interrupt_on_call == len(self.calls):
            raise KeyboardInterrupt
        run_dir = plan.runs_dir / plan.recipe_name / options.run_id
        run_dir.mkdir(parents=True)
        records = self.metrics(plan) if self.metrics else [
            {"step": 0, "eval_loss": 4.0}, {"step": 4, "loss": 3.5}, {"step": 4, "eval_loss": fake_loss(plan)}]
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        for callback in options.callbacks:  # what the Trainer would call: the evaluations, during training
            callback.on_train_begin(None, State(0), None)
            for r in records:
                callback.on_log(None, State(r["step"]), None, logs=r)
            callback.on_train_end(None, State(records[-1]["step"]), None)
        return RunResult(run_dir, "completed", 0, {})


def compile_base(tmp_path: Path, recipe: Path, *extra: str):
    overrides = (f'output.runs_dir="{(tmp_path / "runs").as_posix()}"', *extra)
    compiled = build(recipe, overrides, out_dir=tmp_path / "build")
    assert compiled.ok, [d.message for d in compiled.diagnostics]
    write_folder(compiled.out_dir, compiled.files)
    return overrides, load_plan(compiled.out_dir)


def child_recipe(tmp_path: Path, sweep_body: str, train: str = "") -> Path:
    path = tmp_path / "child.ftspec"
    path.write_text(f'recipe "child"\nextends "{TINY.as_posix()}"\n{train}\nsweep {{\n{sweep_body}\n}}\n',
                    encoding="utf-8")
    return path


def by_number(result):
    return {r.number: r for r in result.trials}


def test_best_trial_has_the_lowest_final_objective_and_outputs_name_it(tmp_path, capsys):
    overrides, plan = compile_base(tmp_path, TINY_SWEEP)
    fake = FakeTraining()
    result = run_sweep(SweepOptions(str(TINY_SWEEP), overrides, trials=4), plan, execute=fake)
    assert fake.calls == [f"{result.folder.name}/trial-{n}" for n in range(4)]
    assert result.folder.parent == tmp_path / "runs" / "tiny-sweep" and (result.folder / "study.db").is_file()
    assert [r.state for r in result.trials] == ["COMPLETE"] * 4
    for r in result.trials:  # the trial's values reached its compiled plan, and its value is the run's final metric
        trial_plan = load_plan(result.folder / "build" / f"trial-{r.number}")
        assert trial_plan.train.lr == r.params["train.lr"]
        assert trial_plan.method.lora.rank == r.params["method.rank"]
        assert r.value == fake_loss(trial_plan) and r.run_dir == f"trial-{r.number}"
    assert result.best.value == min(r.value for r in result.trials)
    summary = write_outputs(result, str(TINY_SWEEP), overrides)
    assert json.loads((result.folder / SUMMARY_FILE).read_text()) == summary
    assert summary["best"]["number"] == result.best.number and len(summary["trials"]) == 4
    lines = (result.folder / BEST_FILE).read_text().splitlines()
    assert f"--set method.rank={result.best.params['method.rank']}" in lines
    assert f"--set train.lr={result.best.params['train.lr']!r}" in lines
    assert "--no-sweep" in summary["best"]["command"]


def test_the_same_seed_draws_the_same_trials(tmp_path):
    draws = []
    for name, seed in (("a", 42), ("b", 42), ("c", 7)):
        overrides, plan = compile_base(tmp_path / name, TINY_SWEEP, f"train.seed={seed}")
        result = run_sweep(SweepOptions(str(TINY_SWEEP), overrides, trials=2), plan, execute=FakeTraining())
        draws.append([r.params for r in result.trials])
    assert draws[0] == draws[1]
    assert draws[0] != draws[2]


def test_resume_keeps_completed_trials_and_reruns_the_interrupted_one(tmp_path):
    overrides, plan = compile_base(tmp_path, TINY_SWEEP)
    interrupted = FakeTraining(interrupt_on_call=2)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(SweepOptions(str(TINY_SWEEP), overrides, trials=3, name="s"), plan, execute=interrupted)
    first = tmp_path / "runs" / "tiny-sweep" / "sweep-s"
    assert interrupted.calls == ["sweep-s/trial-0", "sweep-s/trial-1"]

    again = FakeTraining()
    result = run_sweep(SweepOptions(str(TINY_SWEEP), overrides, trials=3, resume="auto"), plan, execute=again)
    assert result.folder == first
    trials = by_number(result)
    assert again.calls == ["sweep-s/trial-2", "sweep-s/trial-3"]  # trial 0 is not run again
    assert trials[0].state == "COMPLETE" and trials[0].value is not None
    assert trials[1].state == "FAIL" and trials[1].interrupted
    assert trials[2].params == trials[1].params and trials[2].state == "COMPLETE"  # the re-run
    assert trials[3].state == "COMPLETE" and len(trials) == 4
    # a finished sweep continued again runs nothing more
    idle = FakeTraining()
    run_sweep(SweepOptions(str(TINY_SWEEP), overrides, trials=3, resume=str(first)), plan, execute=idle)
    assert idle.calls == []


def test_a_trial_whose_values_make_the_recipe_invalid_fails_with_the_diagnostic(tmp_path, capsys):
    recipe = child_recipe(tmp_path, "  trials = 2\n  sampler = grid\n  train.warmup = choice(1, 100) steps")
    overrides, plan = compile_base(tmp_path, recipe)
    fake = FakeTraining()
    result = run_sweep(SweepOptions(str(recipe), overrides), plan, execute=fake)
    states = {r.params["train.warmup"]: r for r in result.trials}
    assert states[1].state == "COMPLETE" and len(fake.calls) == 1
    failed = states[100]
    assert failed.state == "FAIL" and failed.value is None
    assert "error[E0515]" in failed.error and "warmup = 100 steps" in failed.error
    assert [d["code"] for d in failed.diagnostics] == ["E0515"] and failed.diagnostics[0]["line"] is not None
    assert "does not compile" in capsys.readouterr().out
    summary = write_outputs(result, str(recipe), overrides)  # the values reach sweep_summary.json
    assert next(t for t in summary["trials"] if t["number"] == failed.number)["diagnostics"][0]["code"] == "E0515"


def test_an_objective_metric_that_never_appears_names_the_logged_ones(tmp_path, capsys):
    recipe = child_recipe(tmp_path, "  trials = 2\n  objective = minimize eval_accuracy\n"
                                    "  train.lr = loguniform(1e-4, 1e-2)")
    overrides, plan = compile_base(tmp_path, recipe)
    args = argparse.Namespace(resume=None, run_id=None, merge=None, trials=None)
    code = run_sweep_command(str(recipe), overrides, tmp_path / "build", args, execute=FakeTraining())
    err = capsys.readouterr().err
    assert code == 1
    assert "`eval_accuracy` never appears" in err and "metrics logged: eval_loss, loss" in err
    assert "Traceback" not in err


def test_the_timeout_stops_starting_trials(tmp_path, monkeypatch):
    now = [0.0]
    monkeypatch.setattr(runner_module, "_clock", lambda: now[0])
    overrides, plan = compile_base(tmp_path, TINY_SWEEP, "sweep.timeout=1 min")

    def slow(plan, options):
        now[0] += 45.0
        return FakeTraining()(plan, options)

    result = run_sweep(SweepOptions(str(TINY_SWEEP), overrides, trials=5), plan, execute=slow)
    assert result.stopped == "timeout"
    assert [r.state for r in result.trials] == ["COMPLETE", "COMPLETE"]  # 45 s < 60 s starts one more, 90 s does not
    assert result.trials[0].wall_seconds == 45.0


def test_ftc_run_hands_a_sweep_to_the_sweep_runner_unless_no_sweep(tmp_path, monkeypatch, capsys):
    from ftc.cli import main
    from ftc.commands import run as run_command
    from ftc.orchestrate import sweep_command as sweep_cli

    calls = []
    monkeypatch.setattr(run_command, "run_plan_folder", lambda folder, args: calls.append(("once", None)) or 0)
    monkeypatch.setattr(sweep_cli, "run_sweep_command",
                        lambda recipe, overrides, folder, args: calls.append(("sweep", args.trials)) or 0)
    out = ["-o", str(tmp_path / "b")]
    assert main(["run", str(TINY_SWEEP), *out, "--trials", "2"]) == 0
    assert main(["run", str(TINY_SWEEP), *out, "--no-sweep"]) == 0
    assert main(["run", str(TINY), *out]) == 0
    assert calls == [("sweep", 2), ("once", None), ("once", None)]
    assert main(["run", str(TINY), *out, "--trials", "2"]) == 2
    assert "--trials applies to a recipe with a `sweep` block" in capsys.readouterr().err
    assert main(["run", "--plan", str(tmp_path / "b"), "--trials", "2"]) == 2
    with pytest.raises(SystemExit) as usage:
        main(["run", str(TINY_SWEEP), "--trials", "0"])
    assert usage.value.code == 2


class PruningTrial:
    def __init__(self, prune: bool):
        self.prune = prune
        self.reported = []

    def report(self, value, step):
        self.reported.append((step, value))

    def should_prune(self):
        return self.prune


class State:
    def __init__(self, step):
        self.global_step = step
        self.is_world_process_zero = True


def test_reporter_reports_each_evaluation_once_and_prunes_only_while_training():
    import optuna

    from ftc.runtime.sweep.callback import TrialReporter

    trial = PruningTrial(prune=False)
    reporter = TrialReporter(trial, "eval_loss")
    reporter.on_train_begin(None, State(0), None)
    reporter.on_log(None, State(0), None, logs={"eval_loss": 4.0})
    reporter.on_log(None, State(1), None, logs={"loss": 3.9})  # a training log line is not the objective
    reporter.on_log(None, State(2), None, logs={"eval_loss": 3.5})
    reporter.on_log(None, State(2), None, logs={"eval_loss": 3.5})
    assert trial.reported == [(0, 4.0), (2, 3.5)]

    trial = PruningTrial(prune=True)
    reporter = TrialReporter(trial, "eval_loss")
    reporter.on_train_begin(None, State(0), None)
    with pytest.raises(optuna.TrialPruned):
        reporter.on_log(None, State(2), None, logs={"eval_loss": 3.5})
    reporter.on_train_end(None, State(4), None)
    reporter.on_log(None, State(4), None, logs={"eval_loss": 3.1})  # the evaluation after training: no pruning
    assert trial.reported == [(2, 3.5), (4, 3.1)]


def test_a_preempted_trial_stops_the_sweep_with_75_and_reruns_on_resume(tmp_path, capsys):
    overrides, plan = compile_base(tmp_path, TINY_SWEEP)
    args = argparse.Namespace(resume=None, run_id="p", merge=None, trials=2)

    def preempted(plan, options):
        result = FakeTraining()(plan, options)
        return RunResult(result.run_dir, "preempted", 75, {})

    assert run_sweep_command(str(TINY_SWEEP), overrides, tmp_path / "build", args, execute=preempted) == 75
    out = capsys.readouterr().out
    assert "--resume" in out and "running" in out
    fake = FakeTraining()
    resumed = argparse.Namespace(resume="auto", run_id=None, merge=None, trials=2)
    assert run_sweep_command(str(TINY_SWEEP), overrides, tmp_path / "build", resumed, execute=fake) == 0
    assert fake.calls == ["sweep-p/trial-1", "sweep-p/trial-2"]
    summary = json.loads((tmp_path / "runs" / "tiny-sweep" / "sweep-p" / SUMMARY_FILE).read_text())
    assert [(t["state"], t["interrupted"]) for t in summary["trials"]] == \
        [("FAIL", True), ("COMPLETE", False), ("COMPLETE", False)]
    assert summary["trials"][1]["params"] == summary["trials"][0]["params"]


def test_a_draw_that_no_longer_fits_memory_is_a_failed_trial(tmp_path):
    """QLoRA on a 24 GB card: rank 1024 needs far more than the budget, so its trial fails with E0705."""
    recipe = tmp_path / "qlora.ftspec"
    recipe.write_text(f'recipe "qlora-ranks"\nextends "{(EXAMPLES / "llama2-7b-qlora-24gb-sweep.ftspec").as_posix()}"\n'
                      "train {\n  micro_batch = 1\n}\n"
                      "sweep {\n  trials = 2\n  sampler = grid\n  method.rank = choice(16, 1024)\n"
                      "  train.lr = choice(2e-4)\n  train.warmup = choice(10) steps\n}\n",
                      encoding="utf-8")
    overrides, plan = compile_base(tmp_path, recipe)
    fake = FakeTraining()
    result = run_sweep(SweepOptions(str(recipe), overrides), plan, execute=fake)
    by_rank = {r.params["method.rank"]: r for r in result.trials}
    assert by_rank[16].state == "COMPLETE" and len(fake.calls) == 1
    assert by_rank[1024].state == "FAIL" and "error[E0705]" in by_rank[1024].error
    assert "per GPU but the budget is" in by_rank[1024].error


@pytest.mark.parametrize("sampler, pruner", [("random", "hyperband"), ("cmaes", "none"), ("tpe", "median")])
def test_each_sampler_and_pruner_runs_a_sweep(tmp_path, sampler, pruner):
    overrides, plan = compile_base(tmp_path, TINY_SWEEP, f"sweep.sampler={sampler}", f"sweep.pruner={pruner}")
    result = run_sweep(SweepOptions(str(TINY_SWEEP), overrides, trials=2), plan, execute=FakeTraining())
    assert len(result.trials) == 2 and all(r.state in ("COMPLETE", "PRUNED") for r in result.trials)
    import optuna

    study = optuna.load_study(study_name=result.folder.name, storage=f"sqlite:///{result.folder / 'study.db'}")
    assert all(t.intermediate_values.get(0) == 4.0 for t in study.trials)  # the reporter reached optuna


def test_samplers_and_pruners_are_the_named_optuna_classes():
    import optuna

    from ftc.runtime.sweep import Dimension, SweepError
    from ftc.runtime.sweep.study import make_pruner, make_sampler

    space = (Dimension("method.rank", "choice", (4, 8)), Dimension("train.lr", "loguniform", (1e-4, 1e-2)))
    assert isinstance(make_sampler("tpe", 1, space), optuna.samplers.TPESampler)
    assert isinstance(make_sampler("random", 1, space), optuna.samplers.RandomSampler)
    assert isinstance(make_sampler("cmaes", 1, space), optuna.samplers.CmaEsSampler)
    assert isinstance(make_sampler("grid", 1, space[:1]), optuna.samplers.GridSampler)
    with pytest.raises(SweepError, match="train.lr"):
        make_sampler("grid", 1, space)
    assert isinstance(make_pruner("median"), optuna.pruners.MedianPruner)
    assert isinstance(make_pruner("hyperband"), optuna.pruners.HyperbandPruner)
    assert isinstance(make_pruner("none"), optuna.pruners.NopPruner)


def test_a_diverged_trial_fails_and_a_changed_direction_is_refused(tmp_path):
    from ftc.runtime.sweep import SweepError

    overrides, plan = compile_base(tmp_path, TINY_SWEEP)
    nan = FakeTraining(metrics=lambda plan: [{"step": 4, "eval_loss": float("nan")}])
    result = run_sweep(SweepOptions(str(TINY_SWEEP), overrides, trials=1, name="n"), plan, execute=nan)
    assert result.trials[0].state == "FAIL" and "diverged" in result.trials[0].error and result.best is None
    overrides, maximizing = compile_base(tmp_path, TINY_SWEEP, "sweep.objective=maximize eval_loss")
    with pytest.raises(SweepError, match="started to minimize"):
        run_sweep(SweepOptions(str(TINY_SWEEP), overrides, resume="auto"), maximizing, execute=FakeTraining())
