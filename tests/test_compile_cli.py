"""`ftc compile` (write, --check), `ftc diff`, and what the compile path must never do."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ftc.cli import main

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "examples" / "tiny.ftspec"
ZERO3 = REPO / "examples" / "llama2-7b-full-zero3.ftspec"


def test_compile_writes_folder_and_summary(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["compile", str(ZERO3), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "global 128 = micro" in text and "16 = 2 node(s) x 8" in text and "memory" in text
    autos = [line for line in text.splitlines() if line.lstrip().startswith("auto ")]
    assert autos and not any("True" in line or "False" in line or "'" in line for line in autos)  # as written
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["plan.json", "ds_config.json", "accelerate.yaml", "launch.sh", "hostfile",
                            "slurm.sbatch", "ftc.lock"])
    assert (out / "launch.sh").stat().st_mode & 0o111


def test_check_passes_then_fails_on_stale_and_leftover_files(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["compile", str(ZERO3), "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["compile", str(ZERO3), "-o", str(out), "--check"]) == 0
    # A stale value: the diff names the file and the line.
    assert main(["compile", str(ZERO3), "-o", str(out), "--check", "--set", "train.lr=1e-4"]) == 1
    captured = capsys.readouterr()
    assert "--- a/plan.json" in captured.out and '+    "lr": 0.0001' in captured.out
    assert "stale" in captured.err and "--set train.lr=1e-4" in captured.err
    # A hand edit is caught too.
    (out / "launch.sh").write_text((out / "launch.sh").read_text() + "echo edited\n")
    assert main(["compile", str(ZERO3), "-o", str(out), "--check"]) == 1
    assert "-echo edited" in capsys.readouterr().out
    # Switching away from DeepSpeed: the old ds_config.json would be removed, so the folder is stale.
    assert main(["compile", str(ZERO3), "-o", str(out)]) == 0
    assert main(["compile", str(ZERO3), "-o", str(out), "--check", "--set", "distributed=ddp",
                 "--set", "method=lora"]) == 1
    assert "+++ /dev/null" in capsys.readouterr().out
    assert main(["compile", str(ZERO3), "-o", str(out), "--set", "distributed=ddp", "--set", "method=lora"]) == 0
    assert not (out / "ds_config.json").exists() and not (out / "hostfile").exists()


def test_compile_reports_recipe_errors_with_exit_1(tmp_path, capsys):
    bad = tmp_path / "bad.ftspec"
    bad.write_text(TINY.read_text().replace("tiny/", str(REPO / "examples" / "tiny") + "/")
                   .replace("global_batch = 8", "global_batch = 7"))
    assert main(["compile", str(bad), "-o", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "E0502" in err and "bad.ftspec:" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("override, code", [
    ("train.warmup=60 steps", "E0515"),  # not shorter than the run's 60 steps
])
def test_check_reports_what_only_lowering_finds_as_compile_does(tmp_path, capsys, override, code):
    """`ftc check` passing means `ftc compile` compiles: the lowering errors are the check's too."""
    recipe = tmp_path / "r.ftspec"
    recipe.write_text(TINY.read_text().replace("tiny/", str(REPO / "examples" / "tiny") + "/"))
    assert main(["check", str(recipe)]) == 0
    capsys.readouterr()
    assert main(["check", str(recipe), "--set", override]) == 1
    checked = capsys.readouterr().err
    assert main(["compile", str(recipe), "--set", override, "-o", str(tmp_path / "o")]) == 1
    compiled = capsys.readouterr().err
    assert f"error[{code}]" in checked and "--set #1:1:" in checked
    assert checked.split("\n\n")[0] == compiled.split("\n\n")[0]


def test_default_output_folder_is_build_recipe_name(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["compile", str(TINY)]) == 0
    assert (tmp_path / "build" / "tiny" / "plan.json").is_file()
    plan = json.loads((tmp_path / "build" / "tiny" / "plan.json").read_text())
    assert plan["model"]["name_or_path"].endswith("examples/tiny/model") and not plan["model"]["name_or_path"].startswith("/")


def test_diff_recipes_text_and_markdown(capsys):
    assert main(["diff", str(ZERO3), str(ZERO3)]) == 0
    assert "No changes." in capsys.readouterr().out
    assert main(["diff", str(ZERO3), str(ZERO3), "--set", "train.lr=1e-4", "--set", "distributed.zero=2"]) == 1
    out = capsys.readouterr().out
    assert "~ train.lr: 2e-05 -> 0.0001" in out
    assert "~ ds_config.zero_optimization.stage: 3 -> 2" in out
    assert "- ds_config.zero_optimization.stage3_gather_16bit_weights_on_model_save: true" in out
    assert main(["diff", str(ZERO3), str(ZERO3), "--set", "train.lr=1e-4", "--format", "markdown"]) == 1
    out = capsys.readouterr().out
    assert "| ~ | `train.lr` | `2e-05` | `0.0001` |" in out and out.startswith("### ftc diff")


def test_diff_folder_against_recipe_and_added_files(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["compile", str(ZERO3), "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["diff", str(out), str(ZERO3)]) == 0
    assert main(["diff", str(out), str(ZERO3), "--set", "distributed=ddp", "--set", "method=lora"]) == 1
    text = capsys.readouterr().out
    assert "- ds_config.train_batch_size: 128" in text and '~ distributed.strategy: "deepspeed" -> "ddp"' in text


def test_diff_bad_input_exits_2(tmp_path, capsys):
    assert main(["diff", str(tmp_path / "missing.ftspec"), str(ZERO3)]) == 2
    assert main(["diff", str(tmp_path), str(ZERO3)]) == 2  # a folder without plan.json
    out = tmp_path / "out"
    assert main(["compile", str(ZERO3), "-o", str(out)]) == 0
    (out / "ds_config.json").write_text("{ not json")
    assert main(["diff", str(out), str(ZERO3)]) == 2
    assert "cannot parse" in capsys.readouterr().err


def test_compile_into_unwritable_place_is_a_message_not_a_traceback(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["compile", str(TINY), "-o", str(blocker / "sub")]) == 1
    assert "cannot write" in capsys.readouterr().err


def test_compile_path_imports_no_training_library(tmp_path):
    code = (
        "import sys\n"
        "from ftc.cli import main\n"
        f"assert main(['compile', {str(ZERO3)!r}, '-o', {str(tmp_path / 'o')!r}]) == 0\n"
        f"assert main(['diff', {str(ZERO3)!r}, {str(TINY)!r}]) == 1\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'peft', 'deepspeed', 'accelerate', 'datasets')"
        " if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout


STUB = """#!/usr/bin/env bash
printf '%s\\n' "$(basename "$0")" >> "$FTC_STUB_LOG"
"""


def test_recipe_with_shell_syntax_is_quoted_or_rejected(tmp_path, capsys):
    """Names, model ids and paths with $(...), backticks, quotes and `;` compile, and launch.sh runs only the launcher."""
    nasty = "x$(touch PWNED_1)`touch PWNED_2`';touch PWNED_3;'"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "t;`touch PWNED_4`.jsonl").write_text('{"text": "a"}\n')
    recipe = tmp_path / "r.ftspec"
    recipe.write_text(f"""recipe "{nasty}"
model "org/$(touch PWNED_5)" {{}}
method lora {{}}
data {{
  train = "data/t;`touch PWNED_4`.jsonl"
  format = text
}}
train {{
  lr = 1e-4
  global_batch = 4
}}
hardware {{
  accelerator = cpu
  gpus_per_node = 2
}}
output {{
  runs_dir = "runs $(touch PWNED_6)"
}}
""")
    out = tmp_path / "compiled"
    rc = main(["compile", str(recipe), "-o", str(out)])
    capsys.readouterr()
    assert rc == 0
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("python", "accelerate", "torchrun", "deepspeed"):
        (bin_dir / tool).write_text(STUB)
        (bin_dir / tool).chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    log = tmp_path / "log"
    for launcher in ("accelerate", "torchrun", "deepspeed"):
        result = subprocess.run(["bash", str(out / "launch.sh")], cwd=work, capture_output=True, text=True,
                                env={"PATH": f"{bin_dir}:/usr/bin:/bin", "FTC_STUB_LOG": str(log),
                                     "FTC_LAUNCHER": launcher})
        assert result.returncode == 0, result.stderr
    assert log.read_text().split() == ["accelerate", "torchrun", "deepspeed"]
    assert sorted(p.name for p in tmp_path.rglob("PWNED*")) == []
    plan = json.loads((out / "plan.json").read_text())
    assert plan["recipe"]["name"] == nasty and plan["model"]["name_or_path"] == "org/$(touch PWNED_5)"
