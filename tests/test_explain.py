"""`ftc explain`: every diagnostic code emitted anywhere in the sources has a long explanation (what triggers
it, an example, how to fix it), and each `ftspec` example really produces its code."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from ftc.compiler.explain import FOLDER, explanation, known_codes

REPO = Path(__file__).resolve().parent.parent
SOURCES = ("compiler", "runtime", "ftc")
SECTIONS = ("## What triggers it", "## Example", "## How to fix it")

# A complete recipe the examples are checked against when they are fragments (`extends` merges them over it).
BASE = """recipe "base"
model "meta-llama/Llama-2-7b-hf" {}
method lora {}
data { train = "train.jsonl" }
train { lr = 2e-4; global_batch = 16; max_steps = 100 steps }
hardware { gpu = a100-80gb }
"""


def emitted_codes() -> set[str]:
    """The source of truth: every code literal (`"E0102"`) in the compiler, the runtime and the CLI."""
    codes: set[str] = set()
    for folder in SOURCES:
        for path in (REPO / folder).rglob("*.py"):
            codes |= set(re.findall(r"""["']([EW]\d{4})["']""", path.read_text(encoding="utf-8")))
    return codes


def test_every_code_has_an_explanation():
    missing = sorted(emitted_codes() - set(known_codes()))
    assert not missing, f"codes without an explanation in {FOLDER.relative_to(REPO)}/: {missing}"


def test_every_explanation_is_of_an_emitted_code():
    stale = sorted(set(known_codes()) - emitted_codes())
    assert not stale, f"explanations of codes nothing emits any more: {stale}"


@pytest.mark.parametrize("code", known_codes())
def test_explanation_has_its_parts(code):
    text = explanation(code)
    assert text.startswith(f"# {code}: ")
    positions = [text.find(section) for section in SECTIONS]
    assert -1 not in positions and positions == sorted(positions), f"{code}: sections {SECTIONS} in order"
    assert re.search(r"## Example\n\n```\w+\n.+?\n```", text, re.S), f"{code}: a fenced example"
    assert len(text.split("## How to fix it", 1)[1].strip()) > 10


def _examples() -> list[tuple[str, str]]:
    out = []
    for code in known_codes():
        match = re.search(r"```ftspec\n(.*?)\n```", explanation(code), re.S)
        if match:  # examples that need files, bytes or the command line are fenced as text or shell
            out.append((code, match.group(1)))
    return out


def test_ftspec_examples_produce_their_code(tmp_path):
    from ftc.compiler.pipeline import compile_recipe

    (tmp_path / "base.ftspec").write_text(BASE)
    (tmp_path / "train.jsonl").write_text('{"text": "hello"}\n')
    wrong = []
    for code, example in _examples():
        alone = tmp_path / f"{code}.ftspec"
        alone.write_text(example + "\n")
        codes = {d.code for d in compile_recipe(alone).diagnostics}
        if code not in codes:  # a fragment: checked over a complete recipe
            alone.write_text('extends "base.ftspec"\n' + example + "\n")
            codes = {d.code for d in compile_recipe(alone).diagnostics}
        if code not in codes:
            wrong.append((code, sorted(codes)))
    assert not wrong, f"examples that do not produce their code: {wrong}"


def test_cli_explain():
    def ftc(*argv):
        return subprocess.run([sys.executable, "-m", "ftc", "explain", *argv], capture_output=True, text=True,
                              timeout=60)

    shown = ftc("e102")
    assert shown.returncode == 0 and shown.stdout == explanation("E0102")
    listing = ftc()
    assert listing.returncode == 0 and "E0102  unknown field" in listing.stdout
    unknown = ftc("E9102")
    assert unknown.returncode == 2 and "did you mean `E0102`" in unknown.stderr
