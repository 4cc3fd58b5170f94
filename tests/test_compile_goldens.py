"""Every example compiles to the checked-in folder under tests/goldens/compiled/<example>/, byte for byte,
and to the same bytes from another working directory, hash seed and locale."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ftc.compiler.emit import ARTIFACTS, emit
from ftc.compiler.pipeline import compile_recipe

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "examples").glob("*.ftspec"))
GOLDENS = REPO / "tests" / "goldens" / "compiled"
SCHEMA = json.loads((REPO / "plan" / "schema.json").read_text())


def _compiled(example: Path) -> tuple[dict, dict[str, bytes]]:
    compiled = compile_recipe(example, out_dir=GOLDENS / example.stem)
    assert compiled.plan is not None, [d.message for d in compiled.diagnostics]
    return compiled.plan, emit(compiled.plan)


def test_there_are_examples():
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_example_matches_golden_folder(example, golden, update_goldens):
    _, files = _compiled(example)
    folder = GOLDENS / example.stem
    for name, data in files.items():
        golden(folder / name, data.decode("utf-8"))
    present = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    if update_goldens:
        for name in present - set(files):
            (folder / name).unlink()
    else:
        assert present == set(files), "generated file set changed (--update-goldens to refresh)"
    assert set(files) <= set(ARTIFACTS)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_example_plan_validates_against_schema(example):
    jsonschema = pytest.importorskip("jsonschema")
    plan, files = _compiled(example)
    jsonschema.Draft202012Validator(SCHEMA).validate(plan)
    assert json.loads(files["plan.json"]) == plan
    assert "auto" not in list(_values(plan)), "lowering left an unresolved auto"


def _values(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _values(item)
    elif isinstance(value, list):
        for item in value:
            yield from _values(item)
    else:
        yield value


def _ftc(args: list[str], cwd: Path, seed: str, locale: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG", "PYTHONHASHSEED"))}
    env.update({"PYTHONHASHSEED": seed, "LC_ALL": locale, "LANG": locale, "TZ": "Pacific/Kiritimati"})
    return subprocess.run([sys.executable, "-m", "ftc", "compile", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def _read(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_bytes_identical_across_cwd_hash_seed_and_locale(tmp_path):
    example = REPO / "examples" / "llama2-7b-full-zero3.ftspec"
    other = tmp_path / "elsewhere" / "deeper"
    other.mkdir(parents=True)
    out = tmp_path / "out"
    first = _ftc([str(example), "-o", str(out)], REPO, "0", "C")
    assert first.returncode == 0, first.stderr
    run_one = _read(out)
    # Same recipe and folder, spelled relative to another working directory.
    second = _ftc([os.path.relpath(example, other), "-o", os.path.relpath(out, other)], other, "12345", "C.UTF-8")
    assert second.returncode == 0, second.stderr
    assert _read(out) == run_one
    # And in memory, in this process (another hash seed again), the same bytes.
    assert emit(compile_recipe(example, out_dir=out).plan) == run_one


def test_every_golden_folder_is_current_under_another_seed_locale_and_cwd(tmp_path):
    """`ftc compile --check` against each golden folder, run from elsewhere with another hash seed and locale."""
    calls = "".join(
        f"rc |= main(['compile', {os.path.relpath(ex, tmp_path)!r}, '-o', "
        f"{os.path.relpath(GOLDENS / ex.stem, tmp_path)!r}, '--check'])\n" for ex in EXAMPLES)
    code = "from ftc.cli import main\nrc = 0\n" + calls + "raise SystemExit(rc)\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG", "PYTHONHASHSEED"))}
    env.update({"PYTHONHASHSEED": "987654", "LC_ALL": "C", "LANG": "C", "TZ": "America/St_Johns"})
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_lock_hashes_the_recipe_chain_and_every_artifact():
    import hashlib

    example = REPO / "examples" / "lora-ddp-2gpu.ftspec"
    _, files = _compiled(example)
    lock = json.loads(files["ftc.lock"])
    parent = REPO / "examples" / "llama2-7b-lora-a100-40gb.ftspec"
    assert [s["sha256"] for s in lock["sources"]] == [hashlib.sha256(p.read_bytes()).hexdigest()
                                                      for p in (parent, example)]
    assert [s["path"] for s in lock["sources"]] == ["../../../../examples/llama2-7b-lora-a100-40gb.ftspec",
                                                    "../../../../examples/lora-ddp-2gpu.ftspec"]
    assert lock["artifacts"] == {n: hashlib.sha256(d).hexdigest() for n, d in files.items() if n != "ftc.lock"}
