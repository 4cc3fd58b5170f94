"""Render the language reference from the schema, so docs/language.md cannot drift from it.

`python -m ftc.compiler.docgen docs/language.md` rewrites the part between the markers;
a test fails when the file differs from what the schema says.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ftc.compiler.schema import AUTO, BLOCKS, DIRECTIVES, SEARCH_FUNCTIONS, BlockSpec, FieldSpec
from ftc.compiler.units import UNITS

BEGIN = "<!-- BEGIN GENERATED REFERENCE (python -m ftc.compiler.docgen docs/language.md) -->"
END = "<!-- END GENERATED REFERENCE -->"


def _default(f: FieldSpec) -> str:
    if f.default is None:
        return "required" if f.required else "—"
    value = f.default
    if value is AUTO:
        return "`auto`"
    if isinstance(value, bool):
        return f"`{'true' if value else 'false'}`"
    if isinstance(value, tuple):
        if f.name == "objective":
            return f"`{' '.join(value)}`"
        return "`[" + ", ".join(value) + "]`"
    return f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _block_section(spec: BlockSpec, heading: str = "###") -> list[str]:
    out = [f"{heading} `{spec.name}`", "", spec.doc, ""]
    if spec.label != "none":
        out += [f"Label ({spec.label}): {spec.label_doc.replace(' | ', ', ')}.", ""]
    out += ["| field | type | default | meaning |", "|---|---|---|---|"]
    for f in spec.fields:
        kinds = ""
        if spec.variant_fields:
            owners = [label for label, names in spec.variant_fields.items() if f.name in names]
            kinds = f" ({', '.join(owners)})" if owners else ""
        meaning = f.doc + (" Tunable in `sweep`." if f.tunable else "")
        out.append(f"| `{f.name}`{kinds} | {_cell(f.describe_type())} | {_cell(_default(f))} | {_cell(meaning)} |")
    out.append("")
    for nested in spec.nested:
        out += _block_section(nested, heading + "#")
    return out


def render_reference() -> str:
    out = [BEGIN, "", "## Top-level statements", "", "| statement | meaning |", "|---|---|"]
    out += [f"| `{name}` | {doc} |" for name, doc in DIRECTIVES.items()]
    out += ["", "## Blocks", ""]
    for spec in BLOCKS.values():
        out += _block_section(spec)
    out += ["## Units", "", "| unit | dimension | factor |", "|---|---|---|"]
    out += [f"| `{unit}` | {dim} | {factor:g} |" for unit, (dim, factor) in UNITS.items()]
    out += ["", "## Search spaces (in `sweep`)", "", "| call | draws |", "|---|---|"]
    out += [f"| `{name}(...)` | {doc} |" for name, doc in SEARCH_FUNCTIONS.items()]
    out += ["", END]
    return "\n".join(out) + "\n"


def splice(document: str) -> str:
    """The document with its generated part replaced by the current reference."""
    start = document.index(BEGIN)
    end = document.index(END) + len(END) + 1
    return document[:start] + render_reference() + document[end:]


def main(argv: list[str]) -> int:
    path = Path(argv[0] if argv else "docs/language.md")
    path.write_text(splice(path.read_text(encoding="utf-8")), encoding="utf-8", newline="\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
