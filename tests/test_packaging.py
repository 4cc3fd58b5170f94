"""A built wheel, installed into a fresh virtual environment, runs `ftc --version` and `ftc check`.

This proves the folder mapping (`ftc.compiler` <- compiler/, ...) and the grammar as package data work
outside an editable install, and that no generic top-level name (`compiler`, `runtime`) is installed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_installs_and_checks(tmp_path):
    dist = tmp_path / "dist"
    source = tmp_path / "source"  # build from a copy of the tracked files: no build/ left in the checkout
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(dist), str(source)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr
    wheel = next(dist.glob("ftspec-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "ftc/grammar/ftspec.lark" in names and "ftc/plan/schema.json" in names
    assert "ftc/compiler/parse.py" in names and "ftc/runtime/__init__.py" in names
    assert not any(n.startswith(("compiler/", "runtime/", "grammar/", "plan/")) for n in names)

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], capture_output=True,
                             text=True, timeout=600)
    assert install.returncode == 0, install.stderr
    ftc = env_dir / "bin" / "ftc"
    version = subprocess.run([str(ftc), "--version"], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("ftc ")

    work = tmp_path / "work"
    shutil.copytree(REPO / "examples", work / "examples")
    ok = subprocess.run([str(ftc), "check", "examples/llama2-7b-lora-a100-40gb.ftspec"], capture_output=True,
                        text=True, cwd=work, timeout=120)
    assert ok.returncode == 0, ok.stderr
    (work / "bad.ftspec").write_text("train {\n  learning_rate = 1\n}\n")
    bad = subprocess.run([str(ftc), "check", "bad.ftspec"], capture_output=True, text=True, cwd=work, timeout=120)
    assert bad.returncode == 1 and "E0102" in bad.stderr and "Traceback" not in bad.stderr
