"""Recipes are data (docs/reliability.md): no eval, no template or shell built from user strings, an
`extends` that leaves the project is refused, risks are shown to the reviewer, secrets from the
environment never reach generated files or run folders, checkpoints load with weights_only."""

from __future__ import annotations

import ast
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from multiproc_util import REPO, TINY, base_env, explain

SOURCES = [p for d in ("compiler", "runtime", "ftc", "plan") for p in sorted((REPO / d).rglob("*.py"))]


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
            yield node, owner, name


def _sandboxed(path: Path, receiver) -> bool:
    """`env.from_string` where `env = sandbox_environment()` in the same file (chat templates, by design)."""
    text = path.read_text(encoding="utf-8")
    return isinstance(receiver, ast.Name) and f"{receiver.id} = sandbox_environment()" in text


def test_user_chat_templates_render_only_in_the_immutable_sandbox(tmp_path):
    from jinja2.exceptions import SecurityError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    from ftc.plan.chat_templates import sandbox_environment

    env = sandbox_environment()
    assert isinstance(env, ImmutableSandboxedEnvironment)
    marker = tmp_path / "PWNED"
    with pytest.raises(SecurityError):
        env.from_string("{{ cycler.__init__.__globals__.os.system('touch " + str(marker) + "') }}").render()
    assert not marker.exists()


def test_no_eval_no_shell_strings_no_unsafe_loaders_in_the_source():
    found = []
    for path in SOURCES:
        for node, owner, name in _calls(ast.parse(path.read_text(encoding="utf-8"))):
            where = f"{path.relative_to(REPO)}:{node.lineno}"
            keywords = {k.arg: k.value for k in node.keywords}
            if name in ("eval", "exec") and not owner:
                found.append(f"{where}: {name}()")
            if (owner, name) in (("os", "system"), ("os", "popen"), ("pickle", "load"), ("pickle", "loads"),
                                 ("yaml", "load"), ("yaml", "unsafe_load"), ("jinja2", "Template")):
                found.append(f"{where}: {owner}.{name}()")
            if name == "from_string" and not (isinstance(node.func, ast.Attribute) and
                                              _sandboxed(path, node.func.value)):
                found.append(f"{where}: a template built from a string outside jinja2's sandbox")
            shell = keywords.get("shell")
            if isinstance(shell, ast.Constant) and shell.value is True:
                found.append(f"{where}: shell=True")
            if owner == "torch" and name == "load":
                weights_only = keywords.get("weights_only")
                if not (isinstance(weights_only, ast.Constant) and weights_only.value is True):
                    found.append(f"{where}: torch.load without weights_only=True")
    assert found == []


def _ftc(*args, cwd=REPO, env=None):
    return subprocess.run([sys.executable, "-m", "ftc", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env or base_env())


RECIPE = """recipe "sec"

model "{model}" {{
  dtype = fp32{trust}
}}

method lora {{
  rank    = 8
  alpha   = 16
  dropout = 0.0
  targets = all_linear
}}

data {{
  train      = "{train}"
  format     = chat
  max_length = 64
  packing    = false
}}

train {{
  max_steps    = 4 steps
  lr           = 2e-3
  global_batch = 4
  micro_batch  = 4
  seed         = 42
}}

hardware {{
  accelerator = cpu
}}

checkpoint {{
  every     = 2 steps
  keep_last = 5
}}
"""


def _recipe(folder: Path, *, model=TINY / "model", train=TINY / "data" / "train.jsonl", trust=False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "r.ftspec"
    path.write_text(RECIPE.format(model=Path(model).as_posix(), train=Path(train).as_posix(),
                                  trust="\n  trust_remote_code = true" if trust else ""), encoding="utf-8")
    return path


def test_an_extends_leaving_the_project_is_refused_unless_allowed(tmp_path):
    (tmp_path / "shared").mkdir()
    _recipe(tmp_path / "shared")
    project = tmp_path / "project"
    project.mkdir()
    (project / "child.ftspec").write_text('extends "../shared/r.ftspec"\nrecipe "child"\n', encoding="utf-8")
    env = {k: v for k, v in base_env().items() if k != "FTC_ALLOW_OUTSIDE_PROJECT"}
    refused = _ftc("check", str(project / "child.ftspec"), env=env)
    assert refused.returncode == 1 and "E0116" in refused.stderr and "leaves the recipe's project" in refused.stderr
    assert "--allow-outside-project" in refused.stderr
    assert _ftc("--allow-outside-project", "check", str(project / "child.ftspec"), env=env).returncode == 0
    (tmp_path / ".git").mkdir()  # one repository holding both folders: the parent is inside the project
    assert _ftc("check", str(project / "child.ftspec"), env=env).returncode == 0


def test_trust_remote_code_and_outside_data_are_risk_lines_in_compile_and_diff(tmp_path):
    project = tmp_path / "project"
    (tmp_path / "elsewhere").mkdir()
    outside = tmp_path / "elsewhere" / "train.jsonl"
    outside.write_bytes((TINY / "data" / "train.jsonl").read_bytes())
    inside = project / "data.jsonl"
    old = _recipe(project / "old", train=(TINY / "data" / "train.jsonl"))
    inside.write_bytes(outside.read_bytes())
    old.write_text(old.read_text().replace((TINY / "data" / "train.jsonl").as_posix(), "../data.jsonl"))
    new = _recipe(project / "new", train=outside, trust=True)
    (project / ".git").mkdir()
    compiled = _ftc("compile", str(new), "-o", str(project / "build"))
    assert compiled.returncode == 0, explain(compiled)
    risks = [line.strip() for line in compiled.stdout.splitlines() if line.strip().startswith("risk")]
    assert len(risks) == 2, compiled.stdout
    assert "trust_remote_code = true" in risks[0] and (TINY / "model").as_posix() in risks[0]
    assert f"data.train reads {outside.as_posix()}, outside the project {project.as_posix()}" in risks[1]
    quiet = _ftc("compile", str(old), "-o", str(project / "build-old"))
    assert "risk" not in quiet.stdout, quiet.stdout
    diff = _ftc("diff", str(old), str(new))
    assert diff.returncode == 1
    assert "+ risk: model.trust_remote_code = true" in diff.stdout and "+ risk: data.train reads" in diff.stdout
    same = _ftc("diff", str(new), str(project / "build"))
    assert "= risk: model.trust_remote_code = true" in same.stdout, same.stdout


SECRETS = {"HF_TOKEN": "hf_FAKEfaketoken1234567890abcdef", "HUGGING_FACE_HUB_TOKEN": "hf_FAKEsecondtoken99887766",
           "WANDB_API_KEY": "fakewandbkey0123456789abcdef0123456789ab",
           "AWS_ACCESS_KEY_ID": "AKIAFAKEFAKEFAKE1234", "AWS_SECRET_ACCESS_KEY": "fakeAwsSecret/0123456789abcdefghijKLMN",
           "AWS_SESSION_TOKEN": "FakeSessionToken+abc/def==", "OPENAI_API_KEY": "sk-fake0123456789abcdefghijklmnop",
           "GITHUB_TOKEN": "ghp_FAKE0123456789abcdefghijklmnopqrst", "MLFLOW_TRACKING_PASSWORD": "fake-mlflow-pass-42"}


def _leaks(folder: Path) -> list[str]:
    out = []
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            out += [f"{path}: {name}" for name, value in SECRETS.items() if value.encode() in data]
    return out


class _Payload:
    """A pickle that would create a file if it were ever unpickled with the full unpickler."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.slow
def test_no_secret_reaches_outputs_and_checkpoints_load_weights_only(tmp_path):
    """A run with fake tokens and keys in its environment: none appears in the compiled folder, the run folder
    or the data cache. Then a checkpoint's pickled file is replaced by one that runs a command when unpickled
    (its manifest rewritten to match): resuming refuses it and the command never runs."""
    from ftc.runtime.train.checkpoints import write_manifest

    recipe = _recipe(tmp_path / "project")
    env = base_env(**SECRETS)
    compiled = _ftc("compile", str(recipe), "-o", str(tmp_path / "build"), env=env)
    assert compiled.returncode == 0, explain(compiled)
    first = _ftc("run", "--plan", str(tmp_path / "build"), "--run-id", "r",
                 env={**env, "FTC_FAULT": "sigterm", "FTC_FAULT_STEP": "3"})
    assert first.returncode == 75, explain(first)
    assert _leaks(tmp_path) == []
    assert not any(value in first.stdout + first.stderr for value in SECRETS.values())

    checkpoint = next(tmp_path.rglob("checkpoint-3"))
    marker = tmp_path / "PWNED"
    (checkpoint / "rng_state.pth").write_bytes(pickle.dumps(_Payload(marker)))
    (checkpoint / "ftc-manifest.json").unlink()
    write_manifest(checkpoint, 3, None, None)
    resumed = _ftc("run", "--plan", str(tmp_path / "build"), "--resume", "auto", env=env)
    assert not marker.exists()
    assert resumed.returncode == 1, explain(resumed)
    assert "weights_only loading refused it" in resumed.stderr and "checkpoint-3" in resumed.stderr, explain(resumed)
    assert "Traceback" not in resumed.stderr, explain(resumed)


class _Hostile:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_a_sweep_trial_unpickles_only_an_optuna_pruner():
    """The coordinator hands a programmatic pruner to a trial's ranks in FTC_SWEEP_PRUNER; anything else that
    variable could name is refused before it runs."""
    import base64

    import optuna

    from ftc.runtime.sweep.rank import _pruner, encode_pruner

    pruner = _pruner({"FTC_SWEEP_PRUNER": encode_pruner(optuna.pruners.ThresholdPruner(upper=5.0))}, None)
    assert isinstance(pruner, optuna.pruners.ThresholdPruner)
    hostile = base64.b64encode(pickle.dumps(_Hostile())).decode("ascii")
    with pytest.raises(pickle.UnpicklingError, match="not an optuna pruner"):
        _pruner({"FTC_SWEEP_PRUNER": hostile}, None)
