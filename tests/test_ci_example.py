"""examples/ci: the review script the GitHub Actions example runs, on a temporary git repository whose pull
request changes a recipe (annotations on stdout, the markdown comment in a file); the workflow's shape."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
CI = REPO / "examples" / "ci"
TINY = REPO / "examples" / "tiny"


def git(*argv, cwd, env):
    subprocess.run(["git", *argv], cwd=cwd, env=env, check=True, capture_output=True, timeout=60)


def test_review_script_annotates_and_writes_the_comment(tmp_path):
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t", PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    work = tmp_path / "recipes"
    work.mkdir()
    recipe = (REPO / "examples" / "tiny.ftspec").read_text().replace('"tiny/', f'"{TINY}/')
    (work / "tiny.ftspec").write_text(recipe)
    git("init", "-q", "-b", "main", cwd=work, env=env)
    git("add", "-A", cwd=work, env=env)
    git("commit", "-qm", "base", cwd=work, env=env)
    git("checkout", "-qb", "change", cwd=work, env=env)
    (work / "tiny.ftspec").write_text(recipe.replace("rank    = 8", "rank    = 16"))
    (work / "other.ftspec").write_text(recipe.replace('recipe "tiny"', 'recipe "other"'))
    git("add", "-A", cwd=work, env=env)
    git("commit", "-qm", "change", cwd=work, env=env)

    result = subprocess.run(["bash", str(CI / "ftc-review.sh"), "main", "review.md"], cwd=work, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "::notice file=tiny.ftspec,title=ftc diff%3A plan.json changes" in result.stdout
    assert "method.lora.rank: 8 -> 16" in result.stdout
    comment = (work / "review.md").read_text()
    assert "### ftc diff `main:tiny.ftspec` → `tiny.ftspec`" in comment
    assert "| ~ | `method.lora.rank` | `8` | `16` |" in comment
    assert "`other.ftspec` is new" in comment
    assert subprocess.run(["git", "worktree", "list"], cwd=work, capture_output=True, text=True).stdout.count("\n") == 1

    (work / "tiny.ftspec").write_text(recipe.replace("lr           = 2e-3", "learning_rate = 2e-3"))
    git("commit", "-qam", "broken", cwd=work, env=env)
    broken = subprocess.run(["bash", str(CI / "ftc-review.sh"), "main", "review.md"], cwd=work, env=env,
                            capture_output=True, text=True, timeout=300)
    assert broken.returncode == 1 and "::error file=tiny.ftspec" in broken.stdout and "title=E0102" in broken.stdout


def test_workflow_runs_the_hooks_and_posts_the_diff():
    workflow = yaml.safe_load((CI / "ftc.yml").read_text())
    steps = workflow["jobs"]["recipes"]["steps"]
    commands = "\n".join(step.get("run", "") for step in steps)
    assert "pre-commit run" in commands and "ftc-review.sh" in commands and "gh pr comment" in commands
    assert workflow["permissions"]["pull-requests"] == "write"
    config = yaml.safe_load((CI / "pre-commit-config.yaml").read_text())
    hooks = {hook["id"] for hook in config["repos"][0]["hooks"]}
    ours = {hook["id"] for hook in yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())}
    assert hooks == ours == {"ftc-fmt", "ftc-check", "ftc-compile-check"}
    script = (CI / "ftc-review.sh").read_text()
    assert "--format markdown" in script and "--format github" in script
