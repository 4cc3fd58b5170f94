"""Valid recipes drawn from the schema (tests/recipe_gen.py) through `ftc check` and `ftc compile`, in process:
exit 0, or exit 1 with located diagnostics that are about the combination, never a traceback; every field of
docs/language.md is written by at least one recipe of the run."""

from __future__ import annotations

import contextlib
import io
import json
import re
import time
from pathlib import Path

import pytest

pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402

from ftc.cli import main  # noqa: E402

from recipe_gen import recipes, write_data  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CASES = int(__import__("os").environ.get("FTC_GEN_CASES", "2000"))
# Codes a well-typed recipe must never get: syntax (E00xx), names and blocks (E01xx), value typing (E02xx).
TYPING = re.compile(r"^E0[012]\d\d$")


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def documented_fields() -> set[str]:
    """`block.field` (and `block.nested.field`) for every field row of the generated reference."""
    text = (REPO / "docs" / "language.md").read_text(encoding="utf-8")
    names, path = set(), []
    for line in text.splitlines():
        if line.startswith("## "):
            path = []
        heading = re.match(r"^(#{3,}) `(\w+)`", line)
        if heading:
            depth = len(heading.group(1)) - 3
            path = path[:depth] + [heading.group(2)]
            continue
        row = re.match(r"^\| `(\w+)`", line)
        if row and path and not line.startswith("| `E") and not line.startswith("| `W"):
            names.add(".".join(path + [row.group(1)]))
    return names


@pytest.mark.slow
def test_valid_recipes_check_and_compile(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_data(tmp_path)
    recipe_path = tmp_path / "gen.ftspec"
    covered: set[str] = set()
    outcomes = {0: 0, 1: 0}
    started = time.monotonic()

    @settings(max_examples=CASES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(recipes())
    def case(recipe):
        text = recipe.text()
        recipe_path.write_text(text, encoding="utf-8")
        code, out, _ = _run(["check", "--format", "json", str(recipe_path)])
        assert code in (0, 1), text
        report = json.loads(out)
        errors = [d for d in report["diagnostics"] if d["severity"] == "error"]
        assert (code == 1) == bool(errors), text
        for d in report["diagnostics"]:
            assert d["file"] and d["line"] >= 1, (d, text)  # located
            assert not TYPING.match(d["code"]), (d, text)  # the generator writes only well-typed values
        compiled, _, _ = _run(["compile", str(recipe_path), "-o", str(tmp_path / "out")])
        assert compiled == code, text
        outcomes[code] += 1
        covered.update(recipe.covered())

    case()
    seconds = time.monotonic() - started
    print(f"\n{CASES} generated recipes in {seconds:.1f} s: {outcomes[0]} compiled, {outcomes[1]} refused "
          "with located diagnostics")
    assert outcomes[0] >= CASES // 4, outcomes  # the generator draws mostly valid recipes, not refusals
    missing = documented_fields() - covered
    assert not missing, f"fields of docs/language.md no generated recipe wrote: {sorted(missing)}"


def test_each_nested_block_alone_checks_without_a_traceback(tmp_path):
    """`data { columns { ... } }` once crashed `ftc check` with a TypeError: every nested block of the schema,
    written with every one of its fields, is typed like any block."""
    from ftc.compiler.schema import BLOCKS

    write_data(tmp_path)
    for spec in BLOCKS.values():
        for nested in spec.nested:
            fields = "; ".join(f'{f.name} = "x"' if f.kind == "string" else f"{f.name} = [x]" for f in nested.fields)
            data = 'train = "data/chat.jsonl"; format = chat'
            inner = f"{nested.name} {{ {fields} }}"
            blocks = {"data": data, "train": "lr = 1e-4; global_batch = 8"}
            blocks[spec.name] = (blocks.get(spec.name, "") + "\n  " + inner).strip()
            path = tmp_path / f"{spec.name}-{nested.name}.ftspec"
            path.write_text('model "HuggingFaceTB/SmolLM2-135M" {}\nmethod lora {}\n'
                            + "".join(f"{k} {{\n  {v}\n}}\n" for k, v in blocks.items()))
            code, out, _ = _run(["check", "--format", "json", str(path)])
            report = json.loads(out)
            assert code in (0, 1) and not [d for d in report["diagnostics"] if TYPING.match(d["code"])], report
