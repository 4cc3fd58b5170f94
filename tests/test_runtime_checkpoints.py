"""Checkpoint manager: manifests, verification, atomic commit, retention, resume selection.
No training here: checkpoints are small folders of bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftc.runtime.train.checkpoints import (MANIFEST, CheckpointManager, list_complete, newest_verified, verify,
                                           write_manifest)


def stage(manager: CheckpointManager, step: int, payload: bytes = b"weights") -> Path:
    folder = manager.staging / f"checkpoint-{step}"
    (folder / "sub").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(payload * 100 + str(step).encode())
    (folder / "sub" / "optimizer.pt").write_bytes(b"opt" + str(step).encode())
    return folder


def commit(manager, step, metric=None):
    return manager.commit(stage(manager, step), step, metric)


def test_manifest_verifies_and_detects_damage(tmp_path):
    m = CheckpointManager(tmp_path, keep_last=None, keep_best=None)
    path = commit(m, 10)
    assert (path / MANIFEST).is_file() and verify(path) is None
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[:-5])
    assert "truncated" in verify(path)
    (path / "model.safetensors").write_bytes(data[:-1] + b"X")
    assert "checksum" in verify(path)
    (path / "model.safetensors").write_bytes(data)
    assert verify(path) is None
    (path / "sub" / "optimizer.pt").unlink()
    assert "missing" in verify(path)
    (path / MANIFEST).unlink()
    assert "manifest" in verify(path)


def test_commit_is_a_rename_and_staging_leftovers_are_cleaned(tmp_path):
    m = CheckpointManager(tmp_path, keep_last=None, keep_best=None)
    half = stage(m, 5)  # a save that never finished (process killed before commit)
    assert not (tmp_path / "checkpoint-5").exists()
    assert [c.step for c in list_complete(tmp_path)] == []
    m2 = CheckpointManager(tmp_path, keep_last=None, keep_best=None)  # next run
    assert not half.exists() and m2.staging.is_dir()


def test_the_same_step_saved_twice_replaces_it(tmp_path):
    m = CheckpointManager(tmp_path, keep_last=3, keep_best=None)
    commit(m, 4)
    path = m.commit(stage(m, 4, b"newer"), 4, None)
    assert verify(path) is None and (path / "model.safetensors").read_bytes().startswith(b"newer")


def test_retention_keeps_last_k_and_the_best(tmp_path):
    m = CheckpointManager(tmp_path, keep_last=2, keep_best="eval_loss", best_mode="min")
    for step, loss in [(10, 3.0), (20, 1.0), (30, 2.0), (40, 2.5), (50, 2.7)]:
        commit(m, step, loss)
    assert [c.step for c in list_complete(tmp_path)] == [20, 40, 50]
    assert m.best().step == 20


def test_retention_max_mode(tmp_path):
    m = CheckpointManager(tmp_path, keep_last=1, keep_best="accuracy", best_mode="max")
    for step, acc in [(1, 0.5), (2, 0.9), (3, 0.7)]:
        commit(m, step, acc)
    assert [c.step for c in list_complete(tmp_path)] == [2, 3]


def test_retention_never_deletes_the_only_complete_checkpoint(tmp_path):
    m = CheckpointManager(tmp_path, keep_last=0, keep_best=None)
    commit(m, 1)
    commit(m, 2)
    assert [c.step for c in list_complete(tmp_path)] == [2]
    # an incomplete newer folder does not count as complete: the older one stays
    (tmp_path / "checkpoint-3").mkdir()
    m.retain()
    assert [c.step for c in list_complete(tmp_path)] == [2]


def test_newest_verified_skips_damaged_with_a_warning(tmp_path):
    m = CheckpointManager(tmp_path, keep_last=None, keep_best=None)
    commit(m, 1)
    commit(m, 2)
    bad = commit(m, 3)
    (bad / "model.safetensors").write_bytes(b"")
    (tmp_path / "checkpoint-4").mkdir()  # no manifest at all
    warnings = []
    found = newest_verified(tmp_path, warn=warnings.append)
    assert found.step == 2
    assert len(warnings) == 2 and "checkpoint-4" in warnings[0] and "checkpoint-3" in warnings[1]


def test_write_manifest_lists_every_file(tmp_path):
    (tmp_path / "a").write_bytes(b"1")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b").write_bytes(b"22")
    write_manifest(tmp_path, 7, "eval_loss", 1.5)
    import json

    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert sorted(manifest["files"]) == ["a", "d/b"] and manifest["step"] == 7 and manifest["value"] == 1.5


@pytest.mark.parametrize("resume", ["auto"])
def test_resume_auto_picks_newest_run_with_a_verified_checkpoint(tmp_path, resume):
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from test_runtime_plan import make_plan

    from ftc.plan import load_plan
    from ftc.runtime.train.resume import find_resume

    plan = load_plan(make_plan(tmp_path / "build"))
    runs = plan.runs_dir / plan.recipe_name
    old = CheckpointManager(runs / "20260101-000000" / "checkpoints", keep_last=None, keep_best=None)
    commit(old, 8)
    new = CheckpointManager(runs / "20260102-000000" / "checkpoints", keep_last=None, keep_best=None)
    damaged = commit(new, 12)
    (damaged / "model.safetensors").write_bytes(b"x")
    point = find_resume(plan, resume)
    assert point.run_dir.name == "20260101-000000" and point.step == 8
    assert find_resume(plan, None) is None


def test_resume_from_an_explicit_path(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from test_runtime_plan import make_plan

    from ftc.runtime.train import RunError
    from ftc.plan import load_plan
    from ftc.runtime.train.resume import find_resume

    plan = load_plan(make_plan(tmp_path / "build"))
    run = plan.runs_dir / plan.recipe_name / "r1"
    m = CheckpointManager(run / "checkpoints", keep_last=None, keep_best=None)
    good, bad = commit(m, 4), commit(m, 8)
    (bad / "sub" / "optimizer.pt").write_bytes(b"")
    assert find_resume(plan, str(good)).step == 4  # a checkpoint folder
    assert find_resume(plan, str(run)).step == 4  # a run folder: its newest that verifies
    with pytest.raises(RunError, match="truncated"):
        find_resume(plan, str(bad))  # asked for by name: refused, not silently replaced
    with pytest.raises(RunError, match="not a checkpoint folder or a run folder"):
        find_resume(plan, str(tmp_path / "nowhere"))
