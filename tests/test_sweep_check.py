"""Compile-time checks of a sweep that could not run: E0308 (grid over a continuous entry), E0309 (an entry
the method does not have), E0310 (fractions drawn for whole steps or tokens)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftc.compiler.frontend import analyze

TINY = Path(__file__).resolve().parent.parent / "examples" / "tiny.ftspec"


def diagnose(tmp_path: Path, body: str, head: str = "") -> list:
    recipe = tmp_path / "r.ftspec"
    recipe.write_text(f'extends "{TINY.as_posix()}"\n{head}\nsweep {{\n  trials = 3\n{body}\n}}\n', encoding="utf-8")
    return [d for d in analyze(recipe).diagnostics if d.is_error]


def codes(diagnostics) -> list[str]:
    return [d.code for d in diagnostics]


def test_grid_over_a_continuous_entry_is_e0308(tmp_path):
    found = diagnose(tmp_path, "  sampler = grid\n  method.rank = choice(4, 8)\n  train.lr = loguniform(1e-4, 1e-2)")
    assert codes(found) == ["E0308"]
    assert "train.lr" in found[0].message and "loguniform" in found[0].message
    assert found[0].span.line == 7


def test_grid_over_choices_only_is_clean(tmp_path):
    assert diagnose(tmp_path, "  sampler = grid\n  method.rank = choice(4, 8)\n  train.lr = choice(1e-3, 2e-3)") == []


def test_entry_the_method_does_not_have_is_e0309(tmp_path):
    found = diagnose(tmp_path, "  method.rank = choice(4, 8)", head="method full {}")
    assert codes(found) == ["E0309"]
    assert found[0].message == "`method.rank` cannot vary under `method full`"
    assert "method lora | qlora" in found[0].help


@pytest.mark.parametrize("entry, hint", [("train.warmup = uniform(10, 100) steps", "int(10, 100) steps"),
                                         ("data.max_length = loguniform(64, 256)", "int(64, 256)")])
def test_fractions_for_whole_numbers_are_e0310(tmp_path, entry, hint):
    found = diagnose(tmp_path, "  " + entry)
    assert codes(found) == ["E0310"]
    assert hint in found[0].help


def test_fractional_ratio_and_whole_draws_are_clean(tmp_path):
    assert diagnose(tmp_path, "  train.warmup = uniform(1%, 10%)\n  data.max_length = int(64, 256)") == []


def test_the_shipped_sweeps_check_clean():
    for name in ("tiny-sweep.ftspec", "llama2-7b-qlora-24gb-sweep.ftspec"):
        assert analyze(TINY.parent / name).ok
