"""The Trainer callback that tells optuna how a trial is doing, and stops the trial when the pruner says so."""

from __future__ import annotations

from transformers import TrainerCallback


def metric_keys(metric: str) -> tuple[str, ...]:
    """Log keys that carry the objective: its own name, then the Trainer's `eval_` form (`loss` -> `eval_loss`)."""
    return (metric,) if metric.startswith("eval_") else (metric, f"eval_{metric}")


class TrialReporter(TrainerCallback):
    """At each evaluation: `trial.report(value, step)`; while training, `trial.should_prune()` raises
    `optuna.TrialPruned`, which ends `trainer.train()` at once. The evaluation that `execute` adds after
    training is reported but never prunes: the trial has already run to the end."""

    def __init__(self, trial, metric: str):
        self.trial = trial
        self.keys = metric_keys(metric)
        self.training = False
        self.reports: list[tuple[int, float]] = []

    def on_train_begin(self, args, state, control, **kw):
        self.training = True

    def on_train_end(self, args, state, control, **kw):
        self.training = False

    def on_log(self, args, state, control, logs=None, **kw):
        if not state.is_world_process_zero or not logs:
            return
        value = next((logs[k] for k in self.keys if isinstance(logs.get(k), (int, float))), None)
        if value is None or any(step == state.global_step for step, _ in self.reports):
            return
        import optuna

        self.trial.report(float(value), state.global_step)
        self.reports.append((state.global_step, float(value)))
        if self.training and self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {state.global_step} ({self.keys[-1]} {value:.4g})")
