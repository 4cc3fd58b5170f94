"""`ftc init`: the starter recipe checks cleanly for each method and for a CPU-only machine (which then trains
with `ftc run`, as the tiny demo does); without flags it asks in a terminal and refuses without one."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "examples" / "tiny"


def ftc(*argv, cwd: Path, stdin=subprocess.DEVNULL, timeout: int = 120):
    return subprocess.run([sys.executable, "-m", "ftc", *map(str, argv)], cwd=cwd, capture_output=True, text=True,
                          stdin=stdin, timeout=timeout)


@pytest.mark.parametrize("method", ["lora", "qlora", "full"])
def test_init_writes_a_recipe_that_checks(tmp_path, method):
    data = tmp_path / "data" / "train.jsonl"
    data.parent.mkdir()
    data.write_text((TINY / "data" / "train.jsonl").read_text())
    made = ftc("init", "recipe.ftspec", "--method", method, "--data", "data/train.jsonl", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    recipe = (tmp_path / "recipe.ftspec").read_text()
    assert f"method {method}" in recipe and "micro_batch            = auto" in recipe
    assert 'train      = "data/train.jsonl"' in recipe and "format     = chat" in recipe  # sniffed from the rows
    assert recipe.count("\n# ") >= 6  # a comment per block
    checked = ftc("check", "recipe.ftspec", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "warning" not in checked.stderr
    assert ftc("fmt", "--check", "recipe.ftspec", cwd=tmp_path).returncode == 0


@pytest.mark.slow
def test_init_cpu_recipe_checks_and_runs(tmp_path):
    made = ftc("init", "cpu.ftspec", "--gpu", "cpu", "--model", TINY / "model", "--data",
               TINY / "data" / "train.jsonl", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert "accelerator = cpu" in (tmp_path / "cpu.ftspec").read_text()
    assert ftc("check", "cpu.ftspec", cwd=tmp_path).returncode == 0
    env = dict(os.environ, HF_HUB_OFFLINE="1", DS_ACCELERATOR="cpu", TOKENIZERS_PARALLELISM="false")
    ran = subprocess.run([sys.executable, "-m", "ftc", "run", "cpu.ftspec"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600, env=env, stdin=subprocess.DEVNULL)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "ftc: done in" in ran.stdout + ran.stderr and "eval loss" in ran.stdout + ran.stderr
    runs = list((tmp_path / "runs" / "cpu").iterdir())
    assert len(runs) == 1 and (runs[0] / "metrics.jsonl").is_file()


def test_init_refuses_to_ask_without_a_terminal(tmp_path):
    result = ftc("init", cwd=tmp_path)
    assert result.returncode == 2 and "stdin is not a terminal" in result.stderr
    assert not (tmp_path / "recipe.ftspec").exists()


def test_init_keeps_an_existing_file(tmp_path):
    (tmp_path / "recipe.ftspec").write_text("# mine\n")
    result = ftc("init", "--method", "lora", cwd=tmp_path)
    assert result.returncode == 2 and "--force" in result.stderr
    assert (tmp_path / "recipe.ftspec").read_text() == "# mine\n"


def test_init_asks_in_a_terminal(tmp_path):
    """Answers typed into a pseudo-terminal: model, method, GPU, GPU count, data."""
    (tmp_path / "rows.jsonl").write_text('{"prompt": "a", "completion": "b"}\n')
    master, slave = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "ftc", "init", "asked.ftspec"], cwd=tmp_path, stdin=slave,
                               stdout=slave, stderr=subprocess.PIPE, text=True)
    os.close(slave)
    for answer in ("", "qlora", "h100-80gb", "2", "rows.jsonl"):
        os.write(master, (answer + "\n").encode())
    output = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until the terminal closes (EIO) once ftc has exited
        if not select.select([master], [], [], 1.0)[0]:
            if process.poll() is not None:
                break
            continue
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    process.wait(timeout=60)
    os.close(master)
    talk = process.stderr.read()
    assert process.returncode == 0, talk
    assert "Method [lora/qlora/full, default lora]" in talk and "GPUs per node" in talk
    assert b"qlora" in output  # the terminal echoed what was typed
    recipe = (tmp_path / "asked.ftspec").read_text()
    assert 'model "meta-llama/Llama-3.1-8B"' in recipe and "method qlora" in recipe and "quant   = nf4" in recipe
    assert "gpu           = h100-80gb" in recipe and "gpus_per_node = 2" in recipe
    assert 'train      = "rows.jsonl"' in recipe and "format     = completion" in recipe
