"""`track = [wandb]` with project, run name and tags: lowered into the plan, and a tiny CPU run under
WANDB_MODE=offline writes its wandb run under the run folder with those settings."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ftc.compiler.emit import emit
from ftc.compiler.pipeline import compile_recipe

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "examples" / "tiny"

RECIPE = """recipe "tiny-wandb"
model "{model}" {{ dtype = fp32 }}
method lora {{ rank = 8; alpha = 16; dropout = 0.0; targets = [q_proj, v_proj] }}
data {{
  train = "{train}"
  format = chat
  max_length = 64
  packing = true
}}
train {{
  max_steps = 2 steps
  lr = 1e-3
  global_batch = 4
  micro_batch = 4
  {track}
  wandb {{ project = "ftc-tests"; name = "tiny-wandb-run"; tags = [tiny, "ci-offline"] }}
}}
hardware {{ accelerator = cpu }}
output {{ runs_dir = "runs" }}
"""


def write(tmp_path: Path, track: str = "track = [wandb]") -> Path:
    path = tmp_path / "tiny-wandb.ftspec"
    path.write_text(RECIPE.format(model=TINY / "model", train=TINY / "data" / "train.jsonl", track=track))
    return path


def test_wandb_settings_are_lowered_into_the_plan(tmp_path):
    compiled = compile_recipe(write(tmp_path), out_dir=tmp_path / "out")
    assert compiled.ok, compiled.diagnostics
    assert compiled.plan["tracking"]["backends"] == ["jsonl", "wandb"]
    assert compiled.plan["tracking"]["wandb"] == {"project": "ftc-tests", "entity": None, "name": "tiny-wandb-run",
                                                  "tags": ["tiny", "ci-offline"]}


def test_wandb_settings_without_wandb_in_track_are_a_warning(tmp_path):
    compiled = compile_recipe(write(tmp_path, track="track = [tensorboard]"), out_dir=tmp_path / "out")
    (warning,) = [d for d in compiled.diagnostics if d.code == "W0431"]
    assert warning.span.line == 16 and "wandb" not in compiled.plan["tracking"]


@pytest.mark.slow
def test_an_offline_wandb_run_is_written_locally(tmp_path, monkeypatch, one_torch_thread):
    pytest.importorskip("wandb")
    from ftc.orchestrate.build import write_folder
    from ftc.runtime.train import RunOptions, execute, load_plan
    from ftc.runtime.train.cli import quiet_libraries

    quiet_libraries()
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    compiled = compile_recipe(write(tmp_path), out_dir=tmp_path / "build")
    write_folder(compiled.out_dir, emit(compiled.plan))
    result = execute(load_plan(compiled.out_dir), RunOptions(run_id="r"))
    assert result.exit_code == 0 and result.summary["status"] == "completed"
    (offline,) = list((result.run_dir / "wandb").glob("offline-run-*"))
    (log,) = list(offline.glob("run-*.wandb"))
    written = log.read_bytes()
    for text in (b"ftc-tests", b"tiny-wandb-run", b"tiny", b"ci-offline", b"train/loss"):
        assert text in written, text
    shutil.rmtree(tmp_path / "wandb-cache", ignore_errors=True)
