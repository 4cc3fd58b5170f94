"""The optuna study of a sweep: sampler and pruner from the plan, SQLite storage in the sweep folder,
and the bookkeeping that lets an interrupted sweep continue (`--resume`)."""

from __future__ import annotations

import warnings
from pathlib import Path

from .errors import SweepError
from .space import Dimension

STUDY_FILE = "study.db"
INTERRUPTED = "interrupted"  # user attribute of a trial that was cut off and queued again


def quiet_optuna() -> None:
    """The sweep prints its own one line per trial; optuna's INFO lines and experimental notes would double it."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def grid_space(space: tuple[Dimension, ...]) -> dict[str, list]:
    """GridSampler's search space: every dimension must be a `choice` (the compiler checks this, E0308)."""
    loose = [d.target for d in space if d.distribution != "choice"]
    if loose:
        raise SweepError("`sampler = grid` needs `choice(...)` for every entry; continuous: " + ", ".join(loose))
    return {d.target: list(d.args) for d in space}


def grid_size(space: tuple[Dimension, ...]) -> int:
    size = 1
    for d in space:
        size *= len(d.args)
    return size


def make_sampler(name: str, seed: int | None, space: tuple[Dimension, ...]):
    """tpe | random | grid | cmaes, seeded so that the same recipe draws the same trials."""
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        return _grid_sampler(grid_space(space), seed)
    if name == "cmaes":
        import importlib.util

        if importlib.util.find_spec("cmaes") is None:
            raise SweepError("`sampler = cmaes` needs the `cmaes` package: pip install cmaes")
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    raise SweepError(f"unknown sampler `{name}` (tpe, random, grid, cmaes)")


def _grid_sampler(search_space: dict, seed: int | None):
    import optuna

    class Grid(optuna.samplers.GridSampler):
        """GridSampler stops `study.optimize` when the grid is used up; the sweep asks and tells instead and
        caps its trials at the grid's size, so there is nothing to stop (and `stop` outside optimize raises)."""

        def after_trial(self, study, trial, state, values) -> None:
            return None

    return Grid(search_space, seed=seed)


def make_pruner(name: str):
    """median | hyperband | none. Steps are optimizer steps; intermediate values are the eval metric."""
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner()
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    if name == "none":
        return optuna.pruners.NopPruner()
    raise SweepError(f"unknown pruner `{name}` (median, hyperband, none)")


def storage_url(folder: Path) -> str:
    return f"sqlite:///{(Path(folder) / STUDY_FILE).resolve().as_posix()}"


def open_study(folder: Path, direction: str, sampler, pruner):
    """Create the study in `folder/study.db`, or load it when the sweep continues."""
    import optuna

    try:
        study = optuna.create_study(storage=storage_url(folder), study_name=Path(folder).name, direction=direction,
                                    sampler=sampler, pruner=pruner, load_if_exists=True)
    except ValueError as exc:  # e.g. a stored study with another direction
        raise SweepError(f"cannot continue the study in {folder}: {exc}") from None
    stored = study.direction.name.lower()
    if stored != direction:
        raise SweepError(f"the study in {folder} was started to {stored}; the recipe now says {direction}. "
                         "Start a new sweep (without --resume) or restore the objective")
    return study


def existing_trials(folder: Path) -> int:
    """Trials already stored in the folder's study (0 for a new sweep); seeds the sampler on resume."""
    import optuna

    if not (Path(folder) / STUDY_FILE).is_file():
        return 0
    try:
        study = optuna.load_study(study_name=Path(folder).name, storage=storage_url(folder))
    except KeyError:
        return 0
    return len(study.trials)


def requeue_interrupted(study) -> list[int]:
    """A trial left RUNNING was cut off (Ctrl-C, SIGTERM, a crash): mark it failed as interrupted and queue
    its parameters again, so the continued sweep re-runs it. Completed trials are kept as they are."""
    import optuna
    from optuna.trial import TrialState

    requeued = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        optuna.trial.Trial(study, t._trial_id).set_user_attr(INTERRUPTED, True)
        study.tell(t.number, state=TrialState.FAIL)
        study.enqueue_trial(dict(t.params), user_attrs={"rerun_of": t.number})
        requeued.append(t.number)
    return requeued


def counted(trial) -> bool:
    """Finished trials that count toward `trials`: an interrupted one is re-run, so it does not count."""
    from optuna.trial import TrialState

    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL) \
        and not trial.user_attrs.get(INTERRUPTED)
