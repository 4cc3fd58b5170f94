"""docs/language.md is generated from the schema: it fails here when a field is undocumented."""

from __future__ import annotations

from pathlib import Path

from ftc.compiler.docgen import render_reference, splice
from ftc.compiler.schema import BLOCKS

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "language.md"


def test_generated_reference_is_current():
    text = DOC.read_text(encoding="utf-8")
    assert splice(text) == text, "docs/language.md is stale: run `python -m ftc.compiler.docgen docs/language.md`"


def test_every_schema_field_is_documented():
    reference = render_reference()
    text = DOC.read_text(encoding="utf-8")
    for spec in BLOCKS.values():
        assert f"### `{spec.name}`" in text
        for field in spec.fields:
            assert f"| `{field.name}`" in reference
            assert f"| `{field.name}`" in text, f"{spec.name}.{field.name} is not in docs/language.md"


def test_every_syntax_code_is_documented_once():
    """Each E00xx the parser and merger emit is in the syntax-code list of docs/language.md, named once."""
    import re

    emitted = set()
    for source in (REPO / "compiler").glob("*.py"):
        emitted |= set(re.findall(r'"(E00\d\d)"', source.read_text(encoding="utf-8")))
    listing = DOC.read_text(encoding="utf-8").split("Syntax-error codes:", 1)[1].split("\n\n", 1)[0]
    listed = re.findall(r"\b(E00\d\d)\b", listing)
    assert emitted and emitted == set(listed), sorted(emitted ^ set(listed))
    assert len(listed) == len(set(listed)), listed
