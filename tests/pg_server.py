"""A throwaway PostgreSQL server for the shared-study tests: initdb into a temporary folder, start on a free
port of 127.0.0.1 (trust authentication), one database `ftc`; stopped and removed at the end.

The server binaries come from the project's setup (`make setup` installs the `postgresql` package when
they are missing). initdb refuses to run as root, so as root the server runs as the `postgres` user.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path


def bin_dir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


@contextmanager
def postgres_server():
    """Yields the URL of a fresh database; raises RuntimeError with the reason when no server can start."""
    bins = bin_dir()
    if bins is None:
        raise RuntimeError("PostgreSQL server binaries not found (run `make setup`, which installs postgresql)")
    root = Path(tempfile.mkdtemp(prefix="ftc-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port = _free_port()
    run = lambda argv: subprocess.run(_as_server_user(argv), capture_output=True, text=True, timeout=120)  # noqa
    try:
        for argv in ([str(bins / "initdb"), "-D", str(data), "--auth=trust", "-U", "ftc", "-E", "UTF8"],
                     [str(bins / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60",
                      "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                     [str(bins / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "ftc", "ftc"]):
            done = run(argv)
            if done.returncode != 0:
                log = (root / "server.log").read_text() if (root / "server.log").is_file() else ""
                raise RuntimeError(f"{argv[0]} failed: {done.stderr or done.stdout}\n{log}")
        yield f"postgresql://ftc@127.0.0.1:{port}/ftc"
    finally:
        if (data / "postmaster.pid").is_file():
            run([str(bins / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(root, ignore_errors=True)
