"""Canonical formatting of `.ftspec` files, like `terraform fmt`.

Rules: 2-space indent; one attribute per line; `=` aligned within a group of consecutive attributes;
attributes before nested blocks; one blank line between top-level blocks; blank lines between
attribute groups kept (at most one); values in canonical spelling (`[a, b]`, `10%`, `24 GiB`).
Every comment is kept: a comment on an item's line stays at its end, other comments stay before the
item they precede (a comment inside a multi-line value moves before that attribute).
"""

from __future__ import annotations

from ftc.compiler import ast
from ftc.compiler.ast import render_value

INDENT = "  "


class _Comments:
    def __init__(self, comments: tuple[ast.Comment, ...]):
        self.pending = sorted(comments, key=lambda c: (c.line, c.column))

    def before(self, line: int) -> list[ast.Comment]:
        taken = [c for c in self.pending if c.line < line]
        self.pending = [c for c in self.pending if c.line >= line]
        return taken

    def within(self, first: int, last: int) -> list[ast.Comment]:
        """Comments on lines first..last-1 (inside a multi-line value)."""
        taken = [c for c in self.pending if first <= c.line < last]
        self.pending = [c for c in self.pending if not first <= c.line < last]
        return taken

    def on_line(self, line: int) -> ast.Comment | None:
        for c in self.pending:
            if c.line == line:
                self.pending.remove(c)
                return c
        return None

    def rest(self) -> list[ast.Comment]:
        taken, self.pending = self.pending, []
        return taken


def format_recipe(recipe: ast.Recipe, source: str) -> str:
    lines = source.splitlines()
    comments = _Comments(recipe.comments)
    out: list[str] = []
    previous_end = 0
    previous_kind = None
    for item in recipe.items:
        leading = comments.before(item.span.line)
        first_line = leading[0].line if leading else item.span.line
        kind = "block" if isinstance(item, ast.Block) else "directive"
        if out:
            if kind == "block" or previous_kind == "block" or _blank_between(lines, previous_end, first_line):
                out.append("")
        out.extend(c.text.rstrip() for c in leading)
        if isinstance(item, ast.Block):
            out.extend(_format_block(item, 0, comments, lines))
        else:
            inner = comments.within(item.span.line, item.span.end_line)
            out[len(out):len(out)] = [c.text.rstrip() for c in inner]
            text = f"{item.name} {render_value(item.value)}"
            out.append(_with_trailing(text, comments.on_line(item.span.end_line)))
        previous_end = item.span.end_line
        previous_kind = kind
    rest = comments.rest()
    if rest:
        if out and _blank_between(lines, previous_end, rest[0].line):
            out.append("")
        out.extend(c.text.rstrip() for c in rest)
    return "\n".join(out) + "\n" if out else ""


def _blank_between(lines: list[str], after: int, before: int) -> bool:
    """Whether the source has an empty line strictly between lines `after` and `before` (1-based)."""
    return any(not lines[i - 1].strip() for i in range(after + 1, before) if 0 < i <= len(lines))


def _with_trailing(text: str, comment: ast.Comment | None) -> str:
    return f"{text}  {comment.text.rstrip()}" if comment else text


def _format_block(block: ast.Block, depth: int, comments: _Comments, lines: list[str]) -> list[str]:
    pad = INDENT * depth
    header = block.kind + (f" {render_value(block.label)}" if block.label is not None else "")
    header_comment = comments.on_line(block.kind_span.line)
    attributes = [i for i in block.items if isinstance(i, ast.Attribute)]
    nested = [i for i in block.items if isinstance(i, ast.Block)]
    closing_line = block.span.end_line
    has_inner_comments = any(block.span.line < c.line < closing_line for c in comments.pending)
    if not block.items and not has_inner_comments:
        closing_comment = comments.on_line(closing_line) if closing_line != block.kind_span.line else None
        text = f"{pad}{header} {{}}"
        return [_with_trailing(text, header_comment or closing_comment)] if not (header_comment and closing_comment) \
            else [_with_trailing(text, header_comment), f"{pad}{closing_comment.text.rstrip()}"]
    out = [_with_trailing(f"{pad}{header} {{", header_comment)]
    inner = pad + INDENT
    rendered: list[tuple[str, list[str], str, ast.Comment | None, bool]] = []  # key, leading, value, trailing, blank
    previous_end = block.kind_span.line
    for attribute in attributes:
        leading = comments.before(attribute.span.line)
        first_line = leading[0].line if leading else attribute.span.line
        leading += comments.within(attribute.span.line, attribute.span.end_line)
        blank = bool(rendered) and _blank_between(lines, previous_end, first_line)
        trailing = comments.on_line(attribute.span.end_line)
        rendered.append((attribute.dotted, [c.text.rstrip() for c in leading], render_value(attribute.value),
                         trailing, blank))
        previous_end = attribute.span.end_line
    groups: list[list[int]] = []
    for index, (_, _, _, _, blank) in enumerate(rendered):
        if blank or not groups:
            groups.append([])
        groups[-1].append(index)
    for group in groups:
        width = max(len(rendered[i][0]) for i in group)
        for i in group:
            key, leading, value, trailing, blank = rendered[i]
            if blank:
                out.append("")
            out.extend(f"{inner}{c}" for c in leading)
            out.append(_with_trailing(f"{inner}{key.ljust(width)} = {value}", trailing))
    for index, child in enumerate(nested):
        leading = comments.before(child.span.line)
        if rendered or index:
            out.append("")
        out.extend(f"{inner}{c.text.rstrip()}" for c in leading)
        out.extend(_format_block(child, depth + 1, comments, lines))
    tail = comments.before(closing_line)
    out.extend(f"{inner}{c.text.rstrip()}" for c in tail)
    out.append(_with_trailing(f"{pad}}}", comments.on_line(closing_line)))
    return out


def normalized(recipe: ast.Recipe):
    """The tree without spans, with attributes before nested blocks: what formatting must preserve."""

    def value(v):
        if isinstance(v, ast.Number):
            return ("n", v.value if v.value == v.value else "nan", v.text)
        if isinstance(v, ast.String):
            return ("s", v.value)
        if isinstance(v, ast.Word):
            return ("w", v.name)
        if isinstance(v, ast.Quantity):
            return ("q", value(v.number), v.unit)
        if isinstance(v, ast.ListValue):
            return ("l", tuple(value(i) for i in v.items))
        if isinstance(v, ast.Call):
            return ("c", v.name, tuple(value(i) for i in v.args))
        if isinstance(v, ast.Phrase):
            return ("p", tuple(value(i) for i in v.parts))
        raise TypeError(type(v))

    def block(b: ast.Block):
        return ("block", b.kind, value(b.label) if b.label is not None else None,
                tuple((a.key, value(a.value)) for a in b.attributes), tuple(block(c) for c in b.blocks))

    return tuple(block(i) if isinstance(i, ast.Block) else ("directive", i.name, value(i.value))
                 for i in recipe.items)
