"""Long explanations of the diagnostic codes, for `ftc explain CODE`.

One markdown file per code in `compiler/explanations/` (what triggers it, an example, how to fix it), beside
the modules that emit the codes; a code added in a new module needs only a new file, so explanations never
conflict. tests/test_explain.py fails when a code emitted anywhere in the sources has no file.
"""

from __future__ import annotations

import re
from pathlib import Path

FOLDER = Path(__file__).resolve().parent / "explanations"
CODE = re.compile(r"[EW]\d{4}\Z")


def normalize(code: str) -> str:
    """`e102`, `E0102`, `0102` -> `E0102` where that is unambiguous (errors by default)."""
    text = code.strip().upper()
    if text[:1] not in "EW":
        text = "E" + text
    letter, digits = text[0], text[1:]
    return letter + digits.zfill(4) if digits.isdigit() else text


def known_codes() -> list[str]:
    return sorted(p.stem for p in FOLDER.glob("*.md") if CODE.match(p.stem))


def explanation(code: str) -> str | None:
    path = FOLDER / f"{normalize(code)}.md"
    return path.read_text(encoding="utf-8") if CODE.match(path.stem) and path.is_file() else None


def title(code: str) -> str:
    text = explanation(code) or ""
    first = text.splitlines()[0] if text else ""
    return first.partition(": ")[2] or first.lstrip("# ")
