"""Launching without training: the launcher invocation for each node and under SLURM, and the failures
that must be caught before any rank starts (missing launcher, busy port, a rank count the plan does not
count). Fast: nothing here imports torch."""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from multiproc_util import base_env, compile_recipe, ftc_run

SBATCH_STEP = 'NODE_RANK="$SLURM_NODEID" exec bash "$0/launch.sh" "$@"'


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    root = tmp_path_factory.mktemp("launch")
    return {"ddp": compile_recipe(root, "l-ddp", "ddp"),
            "two-node": compile_recipe(root, "l-2node", "ddp", processes=1, nodes=2),
            "zero2-two-node": compile_recipe(root, "l-z2-2node", "zero2", processes=1, nodes=2)}


def _args(**kw):
    return argparse.Namespace(resume=kw.get("resume"), run_id=kw.get("run_id"), merge=kw.get("merge"))


def _fake_bin(folder: Path, name: str, body: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/usr/bin/env bash\n" + body, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_missing_launcher_is_one_clear_message(plans, tmp_path, capsys):
    from ftc.runtime.launch.cli import run_launched

    env = {**base_env(), "PATH": str(tmp_path)}  # no accelerate anywhere
    code = run_launched(plans["ddp"], _args(run_id="missing"), env=env, interpreter_dir=None, out=io.StringIO())
    err = capsys.readouterr().err
    assert code == 1
    assert "launcher `accelerate` is not on PATH" in err and "pip install accelerate" in err
    assert "Traceback" not in err


def test_busy_port_is_named_before_any_rank_starts(plans):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = ftc_run(plans["ddp"], "--run-id", "busy", timeout=120, MASTER_PORT=str(port))
    assert result.returncode == 1, result.stderr
    assert f"rendezvous port {port}" in result.stderr and "already in use" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (plans["ddp"] / "runs" / "l-ddp" / "busy").exists()  # nothing started, no run folder left


def test_a_rank_entry_point_refuses_a_plan_for_more_ranks(plans):
    result = subprocess.run([sys.executable, "-m", "ftc.runtime.train", "--plan", str(plans["ddp"])],
                            capture_output=True, text=True, timeout=120, env=base_env())
    assert result.returncode == 1
    assert "this plan trains on 2 processes" in result.stderr and "Traceback" not in result.stderr


def test_each_node_runs_the_compiled_launch_sh_with_its_rank(plans):
    from ftc.runtime.launch.errors import LaunchError
    from ftc.runtime.launch.spec import build_spec
    from ftc.plan import load_plan

    plan = load_plan(plans["two-node"])
    run = plans["two-node"] / "runs" / "x"
    spec = build_spec(plan, run, ("--resume", "ckpt"), env={**base_env(), "NODE_RANK": "1", "MASTER_PORT": "31234"},
                      interpreter_dir=None)
    assert spec.argv == ("bash", str(plans["two-node"] / "launch.sh"), "--resume", "ckpt")
    assert (spec.env["NODE_RANK"], spec.env["MASTER_ADDR"], spec.env["MASTER_PORT"]) == ("1", "127.0.0.1", "31234")
    assert spec.env["FTC_RUN_ID"] == "x" and spec.local_ranks == (1,) and spec.world_size == 2
    with pytest.raises(LaunchError, match="NODE_RANK=2"):
        build_spec(plan, run, env={**base_env(), "NODE_RANK": "2"}, interpreter_dir=None)


@pytest.mark.parametrize("launcher, expected", [
    ("accelerate", ["launch", "--config_file", "{dir}/accelerate.yaml", "--num_machines", "2", "--num_processes", "2",
                    "--machine_rank", "1", "--main_process_ip", "127.0.0.1", "--main_process_port", "31234",
                    "-m", "ftc.runtime.train", "--plan", "{dir}"]),
    ("torchrun", ["--nnodes", "2", "--nproc_per_node", "1", "--node_rank", "1", "--master_addr", "127.0.0.1",
                  "--master_port", "31234", "-m", "ftc.runtime.train", "--plan", "{dir}"]),
])
def test_launch_sh_passes_node_rank_and_rendezvous(plans, tmp_path, launcher, expected):
    """The generated launch.sh (run by bash, launcher replaced by a recorder) starts node 1 of 2."""
    folder = plans["two-node"]
    _fake_bin(tmp_path, launcher, 'printf "%s\\n" "$@" > "$RECORD"\n')
    env = base_env(PATH=f"{tmp_path}{os.pathsep}{os.environ['PATH']}", FTC_LAUNCHER=launcher, NODE_RANK="1",
                   MASTER_ADDR="127.0.0.1", MASTER_PORT="31234", RECORD=str(tmp_path / "argv"), FTC_RUN_ID="same")
    result = subprocess.run(["bash", str(folder / "launch.sh")], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    argv = (tmp_path / "argv").read_text().splitlines()
    want = [a.replace("{dir}", str(folder)) for a in expected]
    assert [a for a in argv if a in want or a.startswith(str(folder))] == want, argv


def test_slurm_allocation_runs_srun_as_the_sbatch_does(plans, tmp_path):
    from ftc.runtime.launch.spec import build_spec
    from ftc.plan import load_plan

    _fake_bin(tmp_path, "scontrol", 'echo node-a; echo node-b\n')
    env = {**base_env(), "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}", "SLURM_JOB_ID": "77",
           "SLURM_JOB_NODELIST": "node-[a-b]", "FTC_LAUNCHER": "deepspeed"}  # it needs a hostfile, as sbatch writes
    folder = plans["zero2-two-node"]
    spec = build_spec(load_plan(folder), folder / "runs" / "r", ("--merge",), env=env, interpreter_dir=None)
    assert spec.slurm and spec.argv[0] == "srun" and "--kill-on-bad-exit=1" in spec.argv
    assert spec.argv[-3:] == (SBATCH_STEP, str(folder), "--merge")
    assert SBATCH_STEP in (folder / "slurm.sbatch").read_text()  # the very step the sbatch file runs
    assert spec.env["MASTER_ADDR"] == "node-a" and spec.local_ranks == (0, 1)
    assert (folder / "hostfile.slurm-77").read_text() == "node-a slots=1\nnode-b slots=1\n"
    inside_step = build_spec(load_plan(folder), folder / "runs" / "r", env={**env, "SLURM_STEP_ID": "0",
                                                                          "SLURM_NODEID": "1"},
                             interpreter_dir=None)
    assert not inside_step.slurm and inside_step.env["NODE_RANK"] == "1"  # no srun inside srun


def test_plans_name_their_launch(plans, tmp_path, monkeypatch):
    from plan_cases import base_plan

    from ftc.plan import load_plan
    from ftc.runtime.launch import needs_launcher

    monkeypatch.delenv("FTC_LAUNCHER", raising=False)
    plan = load_plan(plans["ddp"])
    assert needs_launcher(plan) and plan.launch.launcher == "accelerate"
    (tmp_path / "plan.json").write_text(json.dumps(base_plan()))  # one rank, the python launcher
    assert not needs_launcher(load_plan(tmp_path))


def test_qlora_with_zero3_is_rejected_at_compile_time_with_the_reason(tmp_path):
    from multiproc_util import recipe_text

    text = recipe_text("q-z3", "zero3").replace(
        "method lora {", "method qlora {\n  quant = nf4\n  compute_dtype = bf16").replace(
        "  offload_params = cpu\n", "")
    recipe = tmp_path / "q.ftspec"
    recipe.write_text(text, encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "ftc", "compile", str(recipe), "-o", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=120, env=base_env())
    assert result.returncode == 1
    assert "E0416" in result.stderr and "uint8" in result.stderr and "zero = 2" in result.stderr
    ok = recipe.with_name("q2.ftspec")
    ok.write_text(text.replace("zero = 3", "zero = 2").replace("  offload_optimizer = cpu\n", ""), encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "ftc", "compile", str(ok), "-o", str(tmp_path / "out2")],
                            capture_output=True, text=True, timeout=120, env=base_env())
    assert result.returncode == 0, result.stderr


def test_every_node_must_name_the_same_run_folder(plans):
    """launch.sh of a multi-node plan refuses to start without FTC_RUN_ID (ranks on different nodes would
    otherwise write one run into different folders); ftc run and slurm.sbatch set it."""
    result = subprocess.run(["bash", str(plans["two-node"] / "launch.sh")], capture_output=True, text=True,
                            timeout=60, env=base_env(NODE_RANK="1", MASTER_ADDR="127.0.0.1"))
    assert result.returncode == 2 and "FTC_RUN_ID" in result.stderr
    assert 'export FTC_RUN_ID' in (plans["two-node"] / "slurm.sbatch").read_text()


RANK_SCRIPT = """
import os, signal, sys, time
from pathlib import Path
from ftc.runtime.launch.rank import rank_process

ready = Path(os.environ["FTC_RANK_LOG_DIR"]) / "rank-0.deaf"
with rank_process() as code:
    print(f"rank {os.environ['RANK']} up", flush=True)
    if os.environ["RANK"] == "1":
        while not ready.exists():                 # however slowly rank 0 starts on a loaded machine
            time.sleep(0.01)
        raise SystemExit(3)                       # the failing rank
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a rank stuck in a collective, deaf to SIGTERM
    ready.write_text("")
    while True:
        time.sleep(0.05)
"""


def _supervise_script(tmp_path, text: str, **kw):
    """Two ranks running `text` under supervise(), as a launcher would start them; (result, log_dir, out)."""
    from ftc.runtime.launch.spec import LaunchSpec
    from ftc.runtime.launch.supervise import supervise

    script = tmp_path / "rank.py"
    script.write_text(text, encoding="utf-8")
    launcher = tmp_path / "launcher.sh"
    launcher.write_text(f'RANK=0 "{sys.executable}" "{script}" & RANK=1 "{sys.executable}" "{script}" & wait\n')
    log_dir = tmp_path / "run" / "logs"
    env = {**base_env(), "FTC_RANK_LOG_DIR": str(log_dir), "WORLD_SIZE": "2"}
    spec = LaunchSpec(folder=tmp_path, launcher="torchrun", argv=("bash", str(launcher)), env=env, binaries=(),
                      nnodes=1, nproc_per_node=2, node_rank=0, master_addr="127.0.0.1", master_port=1,
                      run_dir=tmp_path / "run", log_dir=log_dir)
    out = io.StringIO()
    return supervise(spec, out=out, **kw), log_dir, out


def test_supervisor_kills_a_rank_deaf_to_sigterm_within_the_bound(tmp_path):
    """Rank 1 exits 3; rank 0 ignores SIGTERM: the supervisor names rank 1 and SIGKILLs rank 0 after
    `kill_after_s`, without any collective timeout."""
    from ftc.runtime.launch.supervise import _alive

    result, log_dir, out = _supervise_script(tmp_path, RANK_SCRIPT, kill_after_s=2.0, poll_s=0.05)
    assert result.status == "failed" and result.exit_code == 1
    assert (result.failed.rank, result.failed.exit_code) == (1, 3)
    assert str(log_dir / "rank-1.log") in result.message
    assert result.seconds < 30
    pid0 = json.loads((log_dir / "rank-0.pid").read_text())["pid"]
    assert not _alive(pid0)
    assert "rank 0 up" in out.getvalue()  # rank 0's log streamed to the terminal


# Rank 1 is SIGKILLed, but rank 0's exit record (a collective error about its vanished peer) appears while
# rank 1's process is still being torn down, as happens on a loaded machine.
PEER_KILLED_SCRIPT = """
import os, signal, sys, time
from pathlib import Path
from ftc.runtime.launch.rank import rank_process

logs = Path(os.environ["FTC_RANK_LOG_DIR"])
with rank_process() as code:
    if os.environ["RANK"] == "0":
        while not (logs / "rank-1.pid").exists():
            time.sleep(0.01)
        print("Connection closed by peer", flush=True)
        raise SystemExit(1)
    while not (logs / "rank-0.exit.json").exists():
        time.sleep(0.01)
    time.sleep(0.2)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_rank_is_named_even_when_its_peer_reports_first(tmp_path):
    result, log_dir, _ = _supervise_script(tmp_path, PEER_KILLED_SCRIPT, kill_after_s=2.0, poll_s=0.05)
    assert result.status == "failed" and result.exit_code == 1
    assert (result.failed.rank, result.failed.exit_code) == (1, None), result.message
    assert "rank 1 failed (no exit code" in result.message
