"""`ftc diff --format github`: one workflow notice per changed generated file, on the new recipe; a recipe that
does not compile is reported as error annotations (what examples/ci/ftc.yml relies on)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "examples" / "tiny"


def ftc(*argv, cwd):
    return subprocess.run([sys.executable, "-m", "ftc", *argv], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_diff_github_annotations(tmp_path):
    old = (REPO / "examples" / "tiny.ftspec").read_text().replace('"tiny/', f'"{TINY}/')
    (tmp_path / "old.ftspec").write_text(old)
    (tmp_path / "new.ftspec").write_text(old.replace("lr           = 2e-3", "lr           = 1e-3"))
    changed = ftc("diff", "old.ftspec", "new.ftspec", "--format", "github", cwd=tmp_path)
    assert changed.returncode == 1, changed.stderr
    assert changed.stdout == ("::notice file=new.ftspec,title=ftc diff%3A plan.json changes (1)::"
                              "~ train.lr: 0.002 -> 0.001\n")
    same = ftc("diff", "old.ftspec", "old.ftspec", "--format", "github", cwd=tmp_path)
    assert same.returncode == 0 and same.stdout == ""
    (tmp_path / "bad.ftspec").write_text(old.replace("lr           = 2e-3", "learning_rate = 2e-3"))
    broken = ftc("diff", "old.ftspec", "bad.ftspec", "--format", "github", cwd=tmp_path)
    assert broken.returncode == 2
    assert broken.stdout.startswith("::error file=bad.ftspec,line=") and "title=E0102::" in broken.stdout
