"""Start one node's launcher, stream rank 0's log, and stop everything when a rank fails.

Each rank writes `logs/rank-<N>.log`, a pid record and, when it ends, an exit record (see rank.py). The
supervisor polls those records while it waits on the launcher (no collective timeouts involved): the first
rank to end with a code other than 0 (done) or 75 (preempted), or to vanish without a record, is the
failing rank. Then every local rank's process group and the launcher's get SIGTERM, and SIGKILL after
`kill_after_s`; the report names the rank, its exit code and its log. A SIGTERM/SIGINT to `ftc run` is
forwarded to the ranks (each rank agrees with the others at the next step boundary, saves, exits 75);
a second one kills them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ftc.plan import EXIT_ABORTED, EXIT_NO_SPACE, EXIT_OK, EXIT_PREEMPTED, EXIT_USER_ERROR

from .spec import LaunchSpec

CLEAN_CODES = (EXIT_OK, EXIT_PREEMPTED)
SETTLE_S = 1.0  # how long a failure with an exit code waits for a killed rank to be seen gone (see _Watch.settle)
HOST = os.uname()[1]


@dataclass(frozen=True)
class RankExit:
    rank: int
    exit_code: int | None  # None: the process is gone without a record (killed by a signal, OOM killer)
    time: float
    log: Path


@dataclass(frozen=True)
class LaunchResult:
    exit_code: int  # what `ftc run` exits with
    status: str  # completed | preempted | failed | interrupted
    launcher_code: int | None
    failed: RankExit | None
    message: str
    run_dir: Path
    seconds: float


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its launcher) is not alive
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


class _Ranks:
    """The records of this node's ranks in `log_dir`."""

    def __init__(self, log_dir: Path, ranks: tuple[int, ...]):
        self.log_dir, self.ranks = log_dir, ranks

    def log(self, rank: int) -> Path:
        return self.log_dir / f"rank-{rank}.log"

    def clear(self) -> None:
        """Records of an earlier attempt in the same run folder (a resume) must not be read as this one's."""
        for rank in self.ranks:
            for suffix in ("pid", "exit.json"):
                try:
                    (self.log_dir / f"rank-{rank}.{suffix}").unlink()
                except FileNotFoundError:
                    pass

    def pids(self) -> dict[int, int]:
        out = {}
        for rank in self.ranks:
            record = _read_json(self.log_dir / f"rank-{rank}.pid")
            if record and record.get("host", HOST) == HOST:
                out[rank] = int(record["pid"])
        return out

    def exits(self) -> dict[int, RankExit]:
        out = {}
        for rank in self.ranks:
            record = _read_json(self.log_dir / f"rank-{rank}.exit.json")
            if record is not None:
                out[rank] = RankExit(rank, int(record["exit_code"]), float(record["time"]), self.log(rank))
        return out

    def first_failure(self) -> RankExit | None:
        exits = self.exits()
        failed = [e for e in exits.values() if e.exit_code not in CLEAN_CODES]
        for rank, pid in self.pids().items():  # gone without writing its record
            if rank not in exits and not _alive(pid) and rank not in self.exits():
                failed.append(RankExit(rank, None, time.time(), self.log(rank)))
        # a rank gone without its record was killed (a signal, the OOM killer): the others' collective errors
        # follow from it, so it is the one to name even when their records were written first
        return min(failed, key=lambda e: (e.exit_code is not None, e.time, e.rank)) if failed else None


class _Stream:
    """Copies what a log file gains to our stdout (rank 0's progress lines while the run goes)."""

    def __init__(self, path: Path, out):
        self.path, self.out = path, out
        self.offset = path.stat().st_size if path.is_file() else 0

    def pump(self) -> None:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return
        if data:
            self.offset += len(data)
            self.out.write(data.decode("utf-8", "replace"))
            self.out.flush()


def _signal_group(pid: int, sig: int) -> None:
    for target in (lambda: os.killpg(pid, sig), lambda: os.kill(pid, sig)):
        try:
            target()
            return
        except (ProcessLookupError, PermissionError):
            continue


def tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def supervise(spec: LaunchSpec, *, out=None, poll_s: float = 0.25, kill_after_s: float = 10.0,
              on_started=None) -> LaunchResult:
    """Run `spec` to the end; never raises for a failed rank (the result says what happened)."""
    out = out or sys.stdout
    spec.log_dir.mkdir(parents=True, exist_ok=True)
    ranks = _Ranks(spec.log_dir, spec.local_ranks)
    ranks.clear()
    launcher_log = spec.log_dir / f"launcher-node{spec.node_rank}.log"
    stream = _Stream(ranks.log(spec.local_ranks[0]), out)
    started = time.monotonic()
    with launcher_log.open("ab") as log:
        proc = subprocess.Popen(list(spec.argv), env=dict(spec.env), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    if on_started is not None:
        on_started(proc)
    watch = _Watch(proc, ranks, poll_s, kill_after_s)
    previous = {}
    if _in_main_thread():
        for s in (signal.SIGTERM, signal.SIGINT):
            previous[s] = signal.signal(s, watch.forward)
    try:
        code, failed = watch.until_done(stream)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    stream.pump()
    return _outcome(spec, ranks, code, failed, len(watch.signals), launcher_log, time.monotonic() - started)


class _Watch:
    """The launcher process and its ranks while they run: forwards the user's signals to every rank, and
    stops them all when one fails or the launcher leaves them orphaned."""

    def __init__(self, proc, ranks: "_Ranks", poll_s: float, kill_after_s: float):
        self.proc, self.ranks, self.poll_s, self.kill_after_s = proc, ranks, poll_s, kill_after_s
        self.signals: list[int] = []

    def forward(self, signum, frame) -> None:
        self.signals.append(signum)
        if len(self.signals) == 1:
            print(f"\nftc: {signal.Signals(signum).name}: asking every rank to save at the next step "
                  "(send it again to stop at once)", file=sys.stderr, flush=True)
            for pid in self.ranks.pids().values():
                _signal_group(pid, signal.SIGTERM)
        else:
            self.kill_all(signal.SIGKILL)

    def kill_all(self, sig: int) -> None:
        for pid in self.ranks.pids().values():
            _signal_group(pid, sig)
        _signal_group(self.proc.pid, sig)

    def until_done(self, stream) -> tuple[int | None, "RankExit | None"]:
        """(launcher exit code, the first rank that failed or None), once everything has ended."""
        while True:
            try:
                code = self.proc.wait(timeout=self.poll_s)
            except subprocess.TimeoutExpired:
                code = None
            stream.pump()
            failed = self.ranks.first_failure()
            if failed is not None:
                failed = self.settle(failed)
                self.stop_everything()
                return self.proc.returncode, failed
            if code is not None:
                if any(_alive(p) for p in self.ranks.pids().values()):  # launcher gone, ranks orphaned
                    self.stop_everything()
                return code, self.ranks.first_failure()

    def settle(self, failed: "RankExit") -> "RankExit":
        """A rank that failed with a code may only be reporting a peer that was killed (a collective error):
        the killed peer's process can still be tearing down when that record appears. Look again for up to
        SETTLE_S, while a rank without a record is still alive, so that the killed rank is the one named."""
        deadline = time.monotonic() + SETTLE_S
        while True:
            failed = self.ranks.first_failure() or failed
            exits, pids = self.ranks.exits(), self.ranks.pids()
            waiting = any(_alive(pid) for rank, pid in pids.items() if rank not in exits)
            if failed.exit_code is None or not waiting or time.monotonic() >= deadline:
                return failed
            time.sleep(self.poll_s)

    def stop_everything(self) -> None:
        proc, ranks = self.proc, self.ranks
        self.kill_all(signal.SIGTERM)
        deadline = time.monotonic() + self.kill_after_s
        while time.monotonic() < deadline:
            if proc.poll() is not None and not any(_alive(p) for p in ranks.pids().values()):
                break
            try:
                proc.wait(timeout=self.poll_s)
            except subprocess.TimeoutExpired:
                pass
        else:
            self.kill_all(signal.SIGKILL)
        proc.wait()
        # a rank that had not registered its pid yet is still in the launcher's process group
        # (the group id outlives the reaped launcher while members remain; no plain kill of a reused pid)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        # SIGKILL is delivered asynchronously: return only once every rank is really gone (bounded)
        gone_by = time.monotonic() + 5.0
        while any(_alive(p) for p in ranks.pids().values()) and time.monotonic() < gone_by:
            time.sleep(self.poll_s)


def _outcome(spec: LaunchSpec, ranks: "_Ranks", code: int | None, failed: "RankExit | None", signals: int,
             launcher_log: Path, seconds: float) -> LaunchResult:
    """What happened, from the launcher's exit code and the ranks' exit records."""
    exits = ranks.exits()
    if failed is not None:
        how = f"exit code {failed.exit_code}" if failed.exit_code is not None else \
            "no exit code (killed by a signal or the OOM killer?)"
        message = (f"rank {failed.rank} failed ({how}); all ranks were stopped. Its log: {failed.log}\n"
                   + _indent(tail(failed.log)))
        # a full disk keeps its own code (the last complete checkpoint is intact: free space and resume)
        exit_code = EXIT_NO_SPACE if failed.exit_code == EXIT_NO_SPACE else EXIT_USER_ERROR
        return LaunchResult(exit_code, "failed", code, failed, message, spec.run_dir, seconds)
    if signals > 1:
        return LaunchResult(EXIT_ABORTED, "interrupted", code, None, "stopped by a second signal", spec.run_dir,
                            seconds)
    missing = [r for r in spec.local_ranks if r not in exits]
    if code == 0 and not missing and all(e.exit_code == 0 for e in exits.values()):
        return LaunchResult(EXIT_OK, "completed", code, None, "", spec.run_dir, seconds)
    if exits and not missing and all(e.exit_code == EXIT_PREEMPTED for e in exits.values()):
        return LaunchResult(EXIT_PREEMPTED, "preempted", code, None, "every rank saved a checkpoint and stopped",
                            spec.run_dir, seconds)
    if not ranks.pids():
        message = (f"the {spec.launcher} launcher exited with code {code} before any rank started. "
                   f"Its log: {launcher_log}\n" + _indent(tail(launcher_log)))
    else:
        message = (f"the {spec.launcher} launcher exited with code {code}; ranks without an exit record: "
                   f"{missing or 'none'}. Its log: {launcher_log}\n" + _indent(tail(launcher_log)))
    return LaunchResult(EXIT_USER_ERROR, "failed", code, None, message, spec.run_dir, seconds)


def _indent(text: str) -> str:
    return "".join(f"    | {line}\n" for line in text.splitlines())


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
