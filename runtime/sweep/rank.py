"""The sweep's side of a trial that runs in its own processes (`parallel > 1`, a trial with several ranks, a
`--worker`): the trial's ranks are started through the same launcher path as `ftc run`, and the environment
below tells them which study and trial they belong to. Rank 0 reports every evaluation to the study; the
pruner's verdict is broadcast so that every rank stops at the same step.

  FTC_SWEEP_FOLDER     the sweep folder (the journal file lives there)
  FTC_SWEEP_STORAGE    sqlite | journal | a database URL
  FTC_SWEEP_STUDY      the study's name in that storage
  FTC_SWEEP_TRIAL_ID   the trial's id in the storage
  FTC_SWEEP_METRIC     the objective's metric
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

from .callback import TrialReporter

ENV_KEYS = ("FTC_SWEEP_FOLDER", "FTC_SWEEP_STORAGE", "FTC_SWEEP_STUDY", "FTC_SWEEP_TRIAL_ID", "FTC_SWEEP_METRIC")
PRUNED_AT = "pruned_at"  # user attribute set by the trial's rank 0 when the pruner stops it


def trial_env(folder: Path, storage_text: str, study: str, trial_id: int, metric: str) -> dict[str, str]:
    return dict(zip(ENV_KEYS, (str(Path(folder).resolve()), storage_text, study, str(trial_id), metric)))


def encode_pruner(pruner) -> str:
    """A pruner object given to the sweep (instead of the plan's) travels to the trial's ranks pickled."""
    import base64
    import pickle

    return base64.b64encode(pickle.dumps(pruner)).decode("ascii")


def _pruner(env, plan):
    import base64
    import io

    from .study import make_pruner

    if env.get("FTC_SWEEP_PRUNER"):
        return _PrunerUnpickler(io.BytesIO(base64.b64decode(env["FTC_SWEEP_PRUNER"]))).load()
    sweep = plan.sweep if plan is not None else None
    return make_pruner(sweep.pruner if sweep is not None else "median")


class _PrunerUnpickler(pickle.Unpickler):
    """Unpickles an optuna pruner and nothing else: a class outside optuna (and the builtins and numpy
    scalars its state holds) is refused, so the variable cannot make this process run anything."""

    SAFE_BUILTINS = frozenset({"float", "int", "bool", "str", "dict", "list", "tuple", "set", "frozenset",
                               "complex", "slice", "NoneType"})

    def find_class(self, module: str, name: str):
        top = module.split(".")[0]
        if top == "optuna" or (module == "builtins" and name in self.SAFE_BUILTINS) or \
                (top == "numpy" and name in ("dtype", "scalar", "_reconstruct", "ndarray")):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"FTC_SWEEP_PRUNER names {module}.{name}, which is not an optuna pruner")


def trial_callbacks(plan=None, env=None) -> tuple:
    """The reporter for a launched sweep trial; () for an ordinary run. The study is loaded with the
    sweep's pruner, so that `should_prune` here answers as the sweep would."""
    env = os.environ if env is None else env
    if not all(env.get(k) for k in ENV_KEYS):
        return ()
    import optuna

    from .storage import choose, open_storage
    from .study import quiet_optuna

    quiet_optuna()
    _watch(env.get("FTC_SWEEP_COORDINATOR"))
    storage = open_storage(Path(env["FTC_SWEEP_FOLDER"]), choose(env["FTC_SWEEP_STORAGE"]))
    study = optuna.load_study(study_name=env["FTC_SWEEP_STUDY"], storage=storage, pruner=_pruner(env, plan))
    trial = optuna.trial.Trial(study, int(env["FTC_SWEEP_TRIAL_ID"]))
    return (RankReporter(trial, env["FTC_SWEEP_METRIC"]),)


def _watch(pid_text: str | None, every_s: float = 1.0) -> None:
    """A trial's ranks end with the sweep process that started them (a killed worker leaves no orphan that
    keeps training a trial the study has already failed and queued again)."""
    if not pid_text or not pid_text.isdigit():
        return
    import signal
    import threading
    import time

    pid = int(pid_text)

    def watch():
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(every_s)

    threading.Thread(target=watch, name="sweep-watch", daemon=True).start()


def pruned(exc: BaseException) -> bool:
    import optuna

    return isinstance(exc, optuna.TrialPruned)


class RankReporter(TrialReporter):
    """Rank 0 reports and asks the pruner; with several ranks, the answer is broadcast so all stop together.
    Every rank logs the same (reduced) evaluation metrics, so every rank reaches this call at the same step."""

    def on_log(self, args, state, control, logs=None, **kw):
        import optuna

        prune = None
        try:
            if state.is_world_process_zero:
                super().on_log(args, state, control, logs=logs, **kw)
        except optuna.TrialPruned as exc:
            prune = str(exc)
            self.trial.set_user_attr(PRUNED_AT, state.global_step)
        prune = _agree(prune, self._evaluating(logs))
        if prune is not None:
            raise optuna.TrialPruned(prune)

    def _evaluating(self, logs) -> bool:
        return bool(logs) and any(isinstance(logs.get(k), (int, float)) for k in self.keys) and self.training


def _agree(prune: str | None, evaluating: bool) -> str | None:
    """Rank 0's verdict on every rank (only at an evaluation while training, where rank 0 may prune)."""
    try:
        import torch.distributed as dist
    except ImportError:
        return prune
    if not evaluating or not dist.is_available() or not dist.is_initialized() or dist.get_world_size() == 1:
        return prune
    box = [prune]
    dist.broadcast_object_list(box, src=0)
    return box[0]
