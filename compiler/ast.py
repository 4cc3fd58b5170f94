"""The syntax tree of a recipe: frozen dataclasses, every node with its Span.

Values are kept as written (a `Quantity` keeps its unit text); meaning is given later by the schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from ftc.compiler.diagnostics import Span


@dataclass(frozen=True)
class Number:
    value: int | float
    text: str
    span: Span


@dataclass(frozen=True)
class String:
    value: str
    span: Span


@dataclass(frozen=True)
class Word:
    """A bare identifier: an enum value, `true`/`on`, `auto`, a unit or a metric name."""

    name: str
    span: Span


@dataclass(frozen=True)
class Quantity:
    """A number followed by a unit: `500 steps`, `24 GiB`, `80GB`, `10%`."""

    number: Number
    unit: str
    unit_span: Span
    span: Span

    @property
    def value(self) -> int | float:
        return self.number.value


@dataclass(frozen=True)
class ListValue:
    items: tuple["Value", ...]
    span: Span


@dataclass(frozen=True)
class Call:
    """A search-space call: `loguniform(1e-6, 1e-4)`, `choice(8, 16)`."""

    name: str
    name_span: Span
    args: tuple["Value", ...]
    span: Span


@dataclass(frozen=True)
class Phrase:
    """Several atoms that are not a plain quantity: `minimize eval_loss`, `int(100, 1000) steps`."""

    parts: tuple["Value", ...]
    span: Span


Value = Union[Number, String, Word, Quantity, ListValue, Call, Phrase]


@dataclass(frozen=True)
class Attribute:
    key: tuple[str, ...]
    key_span: Span
    value: Value
    span: Span

    @property
    def dotted(self) -> str:
        return ".".join(self.key)


@dataclass(frozen=True)
class Block:
    kind: str
    kind_span: Span
    label: String | Word | None
    items: tuple[Union[Attribute, "Block"], ...]
    span: Span

    @property
    def attributes(self) -> tuple[Attribute, ...]:
        return tuple(i for i in self.items if isinstance(i, Attribute))

    @property
    def blocks(self) -> tuple["Block", ...]:
        return tuple(i for i in self.items if isinstance(i, Block))

    @property
    def label_text(self) -> str | None:
        if self.label is None:
            return None
        return self.label.value if isinstance(self.label, String) else self.label.name


@dataclass(frozen=True)
class Directive:
    """A top-level statement `NAME value`: `recipe "x"`, `extends "base.ftspec"`."""

    name: str
    name_span: Span
    value: Value
    span: Span


@dataclass(frozen=True)
class Comment:
    text: str  # including the leading '#'
    line: int
    column: int


@dataclass(frozen=True)
class Recipe:
    """One parsed file (before `extends` is followed)."""

    file: str
    items: tuple[Directive | Block, ...]
    comments: tuple[Comment, ...] = ()

    @property
    def directives(self) -> tuple[Directive, ...]:
        return tuple(i for i in self.items if isinstance(i, Directive))

    @property
    def blocks(self) -> tuple[Block, ...]:
        return tuple(i for i in self.items if isinstance(i, Block))


def value_span(value: Value) -> Span:
    return value.span


def render_value(value: Value) -> str:
    """The canonical source text of a value (used by `ftc fmt` and in messages)."""
    if isinstance(value, Number):
        return value.text
    if isinstance(value, String):
        return quote_string(value.value)
    if isinstance(value, Word):
        return value.name
    if isinstance(value, Quantity):
        if value.unit == "%":
            return f"{value.number.text}%"
        return f"{value.number.text} {value.unit}"
    if isinstance(value, ListValue):
        return "[" + ", ".join(render_value(v) for v in value.items) + "]"
    if isinstance(value, Call):
        return f"{value.name}(" + ", ".join(render_value(v) for v in value.args) + ")"
    if isinstance(value, Phrase):
        return " ".join(render_value(v) for v in value.parts)
    raise TypeError(type(value))


def quote_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return '"' + escaped + '"'
