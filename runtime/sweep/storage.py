"""Where a sweep's optuna study lives, and how workers that share it notice a dead one.

- `sqlite` (the default for `parallel = 1`): `study.db` in the sweep folder, for one process.
- `journal` (the default for `parallel > 1`): optuna's journal file `study.journal` in the sweep folder, with a
  file lock, for worker processes on one machine or on a shared file system.
- a database URL (`postgresql://user@host/db`): optuna's RDB storage, for workers on many machines.

Every running trial carries a heartbeat: the sweep process that runs it writes the time into the trial's
user attributes every FTC_SWEEP_HEARTBEAT seconds (10), with its `host:pid`. A trial whose worker is gone
(on this host: its process no longer exists; elsewhere: no heartbeat for three intervals) is marked failed
as interrupted and its values are queued again, so another worker re-runs it. This is optuna's heartbeat
and retry callback, done by ftc because the trials are asked and told rather than run by `optimize`, and
because a busy machine can delay a heartbeat while its worker is well alive.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import SweepError

STUDY_FILE = "study.db"  # sqlite
JOURNAL_FILE = "study.journal"
MARKER_FILE = "study.json"  # which storage and study a sweep folder belongs to (every storage)
INTERRUPTED = "interrupted"  # user attribute of a trial that was cut off and queued again
HEARTBEAT = "heartbeat"  # user attribute: last sign of life of a journal trial (unix seconds)
WORKER = "worker"  # user attribute: host:pid of the process that runs the trial


def heartbeat_interval() -> int:
    """Seconds between heartbeats (FTC_SWEEP_HEARTBEAT, default 10); a trial is stale after three missed."""
    text = os.environ.get("FTC_SWEEP_HEARTBEAT", "10")
    try:
        value = int(text)
    except ValueError:
        raise SweepError(f"FTC_SWEEP_HEARTBEAT={text!r} is not a whole number of seconds") from None
    if value < 1:
        raise SweepError(f"FTC_SWEEP_HEARTBEAT={text!r} must be at least 1 second")
    return value


@dataclass(frozen=True)
class StorageChoice:
    kind: str  # sqlite | journal | url
    url: str | None = None  # the database URL for kind `url`

    @property
    def shared(self) -> bool:
        """Many processes may run trials of the study at once."""
        return self.kind != "sqlite"

    def describe(self) -> str:
        return redact(self.url) if self.kind == "url" else self.kind


def choose(text: str | None) -> StorageChoice:
    if text in (None, "", "sqlite"):
        return StorageChoice("sqlite")
    if text == "journal":
        return StorageChoice("journal")
    if "://" in text:
        return StorageChoice("url", text)
    raise SweepError(f"`sweep.storage = {text}`: use sqlite, journal or a database URL")


def redact(url: str) -> str:
    """The URL without its password, for messages and files."""
    head, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    user, _, host = rest.rpartition("@")
    return f"{head}{sep}{user.split(':', 1)[0]}{':***' if ':' in user else ''}@{host}"


def study_name(folder: Path, recipe_name: str, choice: StorageChoice) -> str:
    """The folder's name in its own file; `<recipe>/<folder>` in a database that may hold many recipes' studies."""
    return f"{recipe_name}/{folder.name}" if choice.kind == "url" else folder.name


def has_study(folder: Path) -> bool:
    return (folder / STUDY_FILE).is_file() or (folder / MARKER_FILE).is_file()


def open_storage(folder: Path, choice: StorageChoice):
    """The optuna storage object for the sweep folder."""
    import optuna

    folder = Path(folder)
    if choice.kind == "sqlite":
        return f"sqlite:///{(folder / STUDY_FILE).resolve().as_posix()}"
    if choice.kind == "journal":
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

        path = str((folder / JOURNAL_FILE).resolve())
        return optuna.storages.JournalStorage(JournalFileBackend(path, lock_obj=JournalFileOpenLock(path)))
    try:
        return optuna.storages.RDBStorage(choice.url, engine_kwargs={"pool_pre_ping": True})
    except ImportError as exc:
        raise SweepError(f"`storage = \"{choice.describe()}\"` needs a database driver: {exc} "
                         "(for PostgreSQL: pip install 'psycopg[binary]')") from None
    except Exception as exc:  # sqlalchemy's OperationalError: a server that is down, a wrong password
        raise SweepError(f"cannot open the study storage {choice.describe()}: {str(exc).splitlines()[0]}") from None


def write_marker(folder: Path, choice: StorageChoice, name: str) -> None:
    data = {"storage": choice.kind if choice.kind != "url" else choice.url, "study": name}
    text = json.dumps(data, indent=2) + "\n"
    path = Path(folder) / MARKER_FILE
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)


def read_marker(folder: Path) -> tuple[StorageChoice, str]:
    """(storage, study name) of an existing sweep folder; a folder from before the marker is sqlite."""
    path = Path(folder) / MARKER_FILE
    if not path.is_file():
        return StorageChoice("sqlite"), Path(folder).name
    data = json.loads(path.read_text(encoding="utf-8"))
    return choose(data["storage"]), data["study"]


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Heartbeat:
    """A thread that keeps a running trial's heartbeat fresh until `stop()`."""

    def __init__(self, study, trial_id: int, interval: float | None = None):
        self.storage = study._storage
        self.trial_id = trial_id
        self.interval = interval or heartbeat_interval()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{trial_id}", daemon=True)

    def start(self) -> "Heartbeat":
        self.beat()
        self._thread.start()
        return self

    def beat(self) -> None:
        self.storage.set_trial_user_attr(self.trial_id, HEARTBEAT, round(time.time(), 3))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except Exception:  # the trial finished meanwhile, or the storage hiccuped: try again next time
                pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def requeue(study, trial) -> None:
    """Queue a cut-off trial's values again; the new trial names the old one (`rerun_of`)."""
    study.enqueue_trial(dict(trial.params), user_attrs={"rerun_of": trial.number})


def _gone(trial, now: float, grace: float) -> bool:
    """The worker of a running trial is dead: its process on this host is gone, or its heartbeat stopped."""
    host, _, pid = str(trial.user_attrs.get(WORKER, "")).rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
        else:
            return False  # alive here: a late heartbeat only means a busy machine
    seen = trial.user_attrs.get(HEARTBEAT)
    return seen is not None and now - float(seen) > grace


def fail_stale(study) -> list[int]:
    """Fail the running trials whose worker died and queue their values again; their numbers."""
    import optuna
    from optuna.trial import TrialState

    grace, now, failed = 3 * heartbeat_interval(), time.time(), []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not _gone(t, now, grace):
            continue
        try:
            if study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                requeue(study, t)
                failed.append(t.number)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another worker failed it first, or it just finished
    return failed


def interrupted_numbers(trials) -> set[int]:
    """Trials that were cut off and queued again: marked interrupted, or named by a later trial's `rerun_of`."""
    marked = {t.number for t in trials if t.user_attrs.get(INTERRUPTED)}
    return marked | {int(t.user_attrs["rerun_of"]) for t in trials if t.user_attrs.get("rerun_of") is not None}
