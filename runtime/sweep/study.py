"""The optuna study of a sweep: sampler and pruner from the plan, SQLite storage in the sweep folder,
and the bookkeeping that lets an interrupted sweep continue (`--resume`)."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

from .errors import SweepError
from .space import Dimension
from .storage import INTERRUPTED, STUDY_FILE, StorageChoice, interrupted_numbers, open_storage, read_marker


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


def open_study(folder: Path, direction: str, sampler, pruner, *, choice: StorageChoice | None = None,
               name: str | None = None):
    """Create the study (SQLite `folder/study.db` by default), or load it when the sweep continues."""
    import optuna

    choice = choice or StorageChoice("sqlite")
    name = name or Path(folder).name
    for attempt in range(1, 6):
        try:
            study = optuna.create_study(storage=open_storage(folder, choice), study_name=name, direction=direction,
                                        sampler=sampler, pruner=pruner, load_if_exists=True)
            break
        except ValueError as exc:  # e.g. a stored study with another direction
            raise SweepError(f"cannot continue the study in {folder}: {exc}") from None
        except Exception as exc:  # two workers creating a new database's tables at once; a server that is down
            if attempt == 5 or not choice.shared:
                if isinstance(exc, SweepError):
                    raise
                raise SweepError(f"cannot open the study {name} in {choice.describe()}: "
                                 f"{str(exc).splitlines()[0]}") from None
            time.sleep(0.5 * attempt)
    stored = study.direction.name.lower()
    if stored != direction:
        raise SweepError(f"the study in {folder} was started to {stored}; the recipe now says {direction}. "
                         "Start a new sweep (without --resume) or restore the objective")
    return study


def load_folder_study(folder: Path):
    """The study a sweep folder belongs to (its storage and name from study.json), for reading."""
    import optuna

    choice, name = read_marker(folder)
    return optuna.load_study(study_name=name, storage=open_storage(folder, choice))


def existing_trials(folder: Path) -> int:
    """Trials already stored in the folder's study (0 for a new sweep); seeds the sampler on resume."""
    from .storage import has_study

    if not has_study(Path(folder)):
        return 0
    try:
        study = load_folder_study(folder)
    except (KeyError, SweepError):
        return 0
    except Exception:  # a database not reachable yet: the sweep reports it when it opens the study
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


def counted(trial, trials=()) -> bool:
    """Finished trials that count toward `trials`: an interrupted one is re-run, and a surplus place is not
    run, so neither counts."""
    from optuna.trial import TrialState

    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL) \
        and not trial.user_attrs.get(INTERRUPTED) and not trial.user_attrs.get("surplus") \
        and trial.number not in interrupted_numbers(trials)
