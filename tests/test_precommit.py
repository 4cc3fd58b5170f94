"""The repository's pre-commit hooks (.pre-commit-hooks.yaml), run by pre-commit itself on a temporary git
repository that installs them from this repository's path: a clean recipe commits; an unformatted one, an
invalid one and a stale compiled folder are refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "examples" / "tiny"


def _run(argv, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)


@pytest.fixture
def repo(tmp_path):
    """A git repository using the hooks, with `ftc` on the PATH (the hooks run the installed ftc)."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
    work = tmp_path / "project"
    work.mkdir()
    env = dict(os.environ, PRE_COMMIT_HOME=str(tmp_path / "cache"), GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    (work / ".pre-commit-config.yaml").write_text(
        f"repos:\n- repo: {REPO}\n  rev: {head.stdout.strip()}\n"
        "  hooks:\n  - id: ftc-fmt\n  - id: ftc-check\n  - id: ftc-compile-check\n")
    recipe = (REPO / "examples" / "tiny.ftspec").read_text().replace('"tiny/', f'"{TINY}/')
    (work / "tiny.ftspec").write_text(recipe)
    for argv in (["git", "init", "-q"], [sys.executable, "-m", "pre_commit", "install"],
                 [sys.executable, "-m", "ftc", "compile", "tiny.ftspec"]):
        result = _run(argv, work, env)
        assert result.returncode == 0, result.stdout + result.stderr
    return work, env


def commit(work: Path, env: dict, message: str) -> tuple[int, str]:
    """(exit status, what the hooks printed) of `git commit`."""
    _run(["git", "add", "-A"], work, env)
    result = _run(["git", "commit", "-q", "-m", message], work, env)
    return result.returncode, result.stdout + result.stderr


@pytest.mark.slow
def test_hooks_pass_a_clean_recipe_and_refuse_broken_ones(repo):
    work, env = repo
    status, out = commit(work, env, "a clean recipe and its compiled folder")
    assert status == 0 and out.count("Passed") == 3, out

    recipe = work / "tiny.ftspec"
    clean = recipe.read_text()
    recipe.write_text(clean.replace("  rank    = 8", "  rank=8"))
    status, out = commit(work, env, "unformatted")
    assert status != 0 and _verdict(out, "ftc fmt --check") == "Failed" and "not formatted" in out

    recipe.write_text(clean.replace("  lr           = 2e-3", "  learning_rate = 2e-3"))
    status, out = commit(work, env, "invalid")
    assert status != 0 and _verdict(out, "ftc check") == "Failed" and "error[E0102]" in out

    recipe.write_text(clean.replace("2e-3", "1e-3"))
    status, out = commit(work, env, "recipe changed, compiled folder not")
    assert status != 0 and _verdict(out, "ftc compile --check") == "Failed", out
    assert _verdict(out, "ftc check") == "Passed" and _verdict(out, "ftc fmt --check") == "Passed"
    assert _run([sys.executable, "-m", "ftc", "compile", "tiny.ftspec"], work, env).returncode == 0
    status, out = commit(work, env, "recompiled")
    assert status == 0, out


def _verdict(output: str, hook: str) -> str:
    """`Passed` or `Failed` from pre-commit's `NAME.....Passed` line of a hook."""
    line = next(line for line in output.splitlines() if line.startswith(hook + "."))
    return line.rstrip(".").rsplit(".", 1)[-1]