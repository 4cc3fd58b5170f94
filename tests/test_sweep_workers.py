"""Workers on one study in a real PostgreSQL server (started here, see pg_server.py): two `ftc run --worker`
processes share 4 trials; one is killed in the middle of a trial, the other re-runs that trial and completes
the count; no trial runs twice and no finished trial is lost."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from multiproc_util import base_env
from pg_server import postgres_server


@pytest.fixture(autouse=True)
def _extends_from_a_temporary_folder(monkeypatch):
    """These recipes live in a temporary folder and extend an example of the repository (E0116 otherwise)."""
    monkeypatch.setenv("FTC_ALLOW_OUTSIDE_PROJECT", "1")

pytestmark = pytest.mark.slow

TINY = Path(__file__).resolve().parent.parent / "examples" / "tiny.ftspec"


def recipe_text(url: str) -> str:
    return f"""recipe "shared"
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
  sampler  = random
  pruner   = none
  storage  = "{url}"
  train.lr = loguniform(1e-3, 5e-3)
}}
"""


@pytest.fixture(scope="module")
def database():
    with postgres_server() as url:
        yield url


def start_worker(tmp_path: Path, recipe: Path, name: str, **env: str) -> subprocess.Popen:
    log = (tmp_path / f"{name}.log").open("w")
    return subprocess.Popen([sys.executable, "-m", "ftc", "run", str(recipe), "--worker", "-o", f"build-{name}"],
                            cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                            env=base_env(FTC_SWEEP_HEARTBEAT="1", **env))


def trials(url: str):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.load_study(study_name="shared/sweep-main", storage=url).get_trials(deepcopy=False)
    except KeyError:
        return []


def test_two_workers_share_the_study_and_a_killed_workers_trial_is_run_again(tmp_path, database):
    recipe = tmp_path / "shared.ftspec"
    recipe.write_text(recipe_text(database), encoding="utf-8")
    # worker a is SIGKILLed in the middle of step 3 of its second trial (runtime/train/faults.py), after one
    # finished trial of its own: the same kill at the same point on any machine, however loaded
    a = start_worker(tmp_path, recipe, "a", FTC_FAULT="sigkill", FTC_FAULT_STEP="3", FTC_FAULT_RUN="2")
    b = start_worker(tmp_path, recipe, "b")
    a_id = f"{socket.gethostname()}:{a.pid}"
    try:
        code = a.wait(timeout=600)
        assert code == -9, f"worker a ended with {code}, not killed in its second trial\n" + \
            (tmp_path / "a.log").read_text()[-3000:]
        before = trials(database)
        killed = next(t.number for t in before if t.state.name == "RUNNING" and t.user_attrs["worker"] == a_id)
        assert any(t.state.name == "COMPLETE" and t.user_attrs["worker"] == a_id for t in before)
        finished_before = {t.number: t.value for t in before if t.state.name == "COMPLETE"}
        assert b.wait(timeout=600) == 0, (tmp_path / "b.log").read_text()[-3000:]
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.kill()
    final = {t.number: t for t in trials(database)}
    assert final[killed].state.name == "FAIL"
    rerun = [t for t in final.values() if t.user_attrs.get("rerun_of") == killed]
    assert len(rerun) == 1 and rerun[0].state.name == "COMPLETE" and rerun[0].params == final[killed].params
    complete = [t for t in final.values() if t.state.name == "COMPLETE"]
    assert len(complete) == 4 and len(final) == 5, [(t.number, t.state.name) for t in final.values()]
    assert all(final[n].value == v for n, v in finished_before.items())  # nothing finished was lost
    workers = {t.user_attrs["worker"] for t in complete}
    assert a_id in workers and len(workers) == 2  # both took part
    folder = tmp_path / "runs" / "shared" / "sweep-main"
    runs = [t.user_attrs["run_dir"] for t in complete]
    assert len(set(runs)) == 4  # no trial ran twice: one run folder each, trained to the end once
    for run in runs:
        assert json.loads((folder / run / "summary.json").read_text())["status"] == "completed"
    summary = json.loads((folder / "sweep_summary.json").read_text())
    assert summary["counts"]["COMPLETE"] == 4
    assert [t["interrupted"] for t in summary["trials"] if t["number"] == killed] == [True]
    log = (tmp_path / "b.log").read_text()
    assert "joining" in log or "sweep " in log
