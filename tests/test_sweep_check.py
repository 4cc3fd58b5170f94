"""Compile-time checks of a sweep that could not run: E0308 (grid over a continuous entry), E0309 (an entry
the method does not have), E0310 (fractions drawn for whole steps or tokens)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftc.compiler.frontend import analyze

TINY = Path(__file__).resolve().parent.parent / "examples" / "tiny.ftspec"


@pytest.fixture(autouse=True)
def _extends_from_a_temporary_folder(monkeypatch):
    """These recipes live in a temporary folder and extend an example of the repository (E0116 otherwise)."""
    monkeypatch.setenv("FTC_ALLOW_OUTSIDE_PROJECT", "1")


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


SWEEP_24GB = Path(__file__).resolve().parent.parent / "examples" / "llama2-7b-qlora-24gb-sweep.ftspec"


def sweep_warnings(tmp_path: Path, entries: str) -> list:
    """The shipped 24 GB QLoRA sweep with `entries` in place of its rank entry."""
    text = SWEEP_24GB.read_text().replace("  method.rank  = choice(8, 16, 32, 64)", entries)
    data = tmp_path / "data" / "support"
    data.mkdir(parents=True)
    for name in ("train.jsonl", "eval.jsonl"):
        (data / name).write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    recipe = tmp_path / "sweep.ftspec"
    recipe.write_text(text)
    diagnostics = analyze(recipe).diagnostics
    assert not [d for d in diagnostics if d.is_error]
    return [d for d in diagnostics if d.code == "W0712"]


def test_sweep_whose_largest_draw_does_not_fit_names_the_entry_and_what_fits(tmp_path):
    from ftc.compiler.memory.estimate import estimate
    from ftc.compiler.memory.auto import resolve_auto
    from ftc.compiler.memory.recipe import setup_from_recipe

    (warning,) = sweep_warnings(tmp_path, "  method.rank  = choice(8, 16)\n  data.max_length = int(1024, 32768) tokens")
    assert "`data.max_length = 32768`" in warning.message and "rank" not in warning.message
    assert warning.span.line == SWEEP_24GB.read_text().splitlines().index("  method.rank  = choice(8, 16, 32, 64)") + 2
    fitting = int(warning.help.split("values up to ")[1].split()[0])
    rm = setup_from_recipe(analyze(tmp_path / "sweep.ftspec").recipe)

    def peak(length: int) -> int:  # as a trial compiled with `--set data.max_length=<length>` resolves it
        trial, _ = resolve_auto(rm.setup.with_(seq_len=length, lora_rank=16), rm.autos, rm.budget_bytes,
                                rm.global_batch, rm.setup.dp_world)
        return estimate(trial).peak_bytes

    assert peak(fitting) <= rm.budget_bytes < peak(fitting + 1)


def test_sweep_that_fits_at_its_largest_draw_is_quiet(tmp_path):
    assert sweep_warnings(tmp_path, "  method.rank  = choice(8, 64)\n  data.max_length = choice(1024, 2048)") == []
