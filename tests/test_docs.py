"""docs/language.md is generated from the schema: it fails here when a field is undocumented."""

from __future__ import annotations

from pathlib import Path

from ftc.compiler.docgen import render_reference, splice
from ftc.compiler.schema import BLOCKS

DOC = Path(__file__).resolve().parent.parent / "docs" / "language.md"


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
