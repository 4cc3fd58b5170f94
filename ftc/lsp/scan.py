"""Where the cursor is, read from the text alone: the enclosing blocks and the statement under it.

Hover and completion must work while the user is typing, when the file does not parse; so this is a
small scanner (strings, comments, brackets, braces) rather than the parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_WORD = re.compile(r"[A-Za-z0-9_.\-]+")


@dataclass(frozen=True)
class Context:
    blocks: tuple[tuple[str, str | None], ...]  # open blocks, outermost first: (kind, label)
    before: str  # the statement's text up to the cursor
    statement: str  # the whole statement (up to `{`, `;`, `}` or the end of its line)
    word: str  # the word under the cursor ("" between words)
    in_string: bool = False
    in_comment: bool = False

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(kind for kind, _ in self.blocks)

    @property
    def name(self) -> str:
        """The field a `name = value` statement sets ("" for other statements)."""
        head, eq, _ = self.statement.partition("=")
        return head.strip() if eq else ""

    @property
    def first_word(self) -> str:
        match = _WORD.match(self.statement.strip())
        return match.group(0) if match else ""


def offset_of(text: str, line: int, character: int) -> int:
    """The string offset of an LSP position (0-based line and UTF-16 character; the same for BMP text)."""
    lines = text.split("\n")
    if line >= len(lines):
        return len(text)
    start = sum(len(item) + 1 for item in lines[:line])
    return start + min(character, len(lines[line]))


def _header(text: str) -> tuple[str, str | None]:
    """`method lora`, `model "org/x"`: the block kind and its label, unquoted."""
    kind, _, rest = text.strip().partition(" ")
    label = rest.strip().strip('"') or None
    return kind, label


def context_at(text: str, offset: int) -> Context:
    """The scanner's state at `offset`, and the statement around it."""
    stack: list[tuple[str, str | None]] = []
    start, depth, i = 0, 0, 0
    in_string = in_comment = False
    while i < offset:
        ch = text[i]
        if in_comment:
            if ch == "\n":
                in_comment, start = False, i + 1
        elif in_string:
            if ch == "\\":
                i += 1
            elif ch == '"' or ch == "\n":
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch == "#":
            in_comment = True
        elif ch in "[(":
            depth += 1
        elif ch in ")]":
            depth = max(0, depth - 1)
        elif ch == "{":
            stack.append(_header(text[start:i]))
            start, depth = i + 1, 0
        elif ch == "}":
            if stack:
                stack.pop()
            start, depth = i + 1, 0
        elif ch in ";\n" and depth == 0:
            start = i + 1
        i += 1
    end = _statement_end(text, offset, depth)
    left = re.search(r"[A-Za-z0-9_.\-]*\Z", text[:offset]).group(0)
    right = re.match(r"[A-Za-z0-9_.\-]*", text[offset:]).group(0)
    return Context(tuple(stack), text[start:offset], text[start:end], left + right, in_string, in_comment)


def _statement_end(text: str, offset: int, depth: int) -> int:
    i, in_string = offset, False
    while i < len(text):
        ch = text[i]
        if in_string:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch == "#" or (ch in ";{}\n" and depth == 0):
            return i
        elif ch in "[(":
            depth += 1
        elif ch in ")]":
            depth -= 1
        i += 1
    return len(text)
