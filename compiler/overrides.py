"""`--set block.field=value`: overrides typed and validated exactly like values in a file.

The value is parsed with the real grammar; its spans point into the `--set` text so that errors
render with a caret under the override, like errors in a file.
"""

from __future__ import annotations

from dataclasses import fields, replace

from ftc.compiler import ast
from ftc.compiler.diagnostics import DiagnosticSink, Span, did_you_mean
from ftc.compiler.load import SourceRegistry
from ftc.compiler.merge import OVERRIDE, VARIANT_BLOCKS, Entry, Merged, MergedBlock, label_text
from ftc.compiler.parse import parse_text
from ftc.compiler.schema import BLOCKS


SET_FILE = "--set"
_VALUE_LINE = 2  # the value's line in the text the override is parsed from


def apply_overrides(merged: Merged, overrides: tuple[str, ...], sink: DiagnosticSink,
                    registry: SourceRegistry) -> None:
    """`--set train.lr=1e-4`: typed and validated exactly like a value in the file."""
    for index, text in enumerate(overrides, 1):
        display = f"{SET_FILE} #{index}"
        registry.add(display, text)
        key, eq, raw = text.partition("=")
        key = key.strip()
        if not eq or not key or not raw.strip():
            sink.error("E0120", f"`--set {text}` is not `key=value`", Span(display, 1, 1, 1, len(text) + 1),
                       help="write e.g. `--set train.lr=1e-4`")
            continue
        if "\n" in raw or "\r" in raw:
            sink.error("E0120", "an override value must be on one line", Span(display, 1, 1, 1, len(text) + 1))
            continue
        offset = len(text) - len(raw.lstrip())  # column of the value start, 0-based
        prefix = "__set {\n  v = "
        recipe, diagnostics = parse_text(prefix + raw.strip() + "\n}\n", display)
        if recipe is None:
            for d in diagnostics:
                if d.code == "E0005" and d.span is not None and d.span.line == _VALUE_LINE:
                    d = replace(d, help="close it at the end of the value")  # not before the wrapper's `}`
                sink.add(_shift(d, display, offset - len("  v = "), len(text)))
            continue
        attribute = recipe.blocks[0].items[0]
        value = _shift_value(attribute.value, display, offset - len("  v = "))
        key_span = Span(display, 1, 1, 1, len(key) + 1)
        parts = key.split(".")
        kind = parts[0]
        if kind not in BLOCKS:
            guess = did_you_mean(kind, BLOCKS)
            sink.error("E0101", f"unknown block `{kind}` in --set", key_span, label="not a block",
                       help=f"did you mean `{guess}`?" if guess else "blocks are: " + ", ".join(BLOCKS))
            continue
        block = merged.blocks.get(kind)
        if block is None:
            block = merged.blocks[kind] = MergedBlock(kind, key_span)
        if len(parts) == 1:  # `--set method=qlora`, `--set model="path"`
            if BLOCKS[kind].label == "none":
                sink.error("E0121", f"block `{kind}` has no label to set", key_span,
                           help=f"set a field instead, e.g. `--set {kind}.FIELD=VALUE`")
                continue
            if kind in VARIANT_BLOCKS and block.label is not None and label_text(block.label) != label_text(value):
                block.entries.clear()
            block.label, block.label_provenance = value, OVERRIDE
            continue
        target = block
        for nested in parts[1:-1]:
            if kind != "sweep" and not any(n.name == nested for n in BLOCKS[kind].nested):
                break
            target = target.nested.setdefault(nested, MergedBlock(nested, key_span))
        name = parts[-1] if target is not block else ".".join(parts[1:])
        target.entries[name] = Entry(value, OVERRIDE, Span(display, 1, 1, 1, len(text) + 1))


def _shift(d, display: str, delta: int, length: int):
    """Move a diagnostic from the wrapper text (value on line 2) onto the `--set` text; anything
    not on the value's line points at the whole override."""
    if d.span is None:
        return d
    if d.span.line != _VALUE_LINE:
        return replace(d, span=Span(display, 1, 1, 1, length + 1))
    start = max(1, d.span.column + delta)
    end = (d.span.end_column if d.span.end_line == d.span.line else d.span.column + 1) + delta
    return replace(d, span=Span(display, 1, start, 1, max(start + 1, end)))


def _shift_span(span: Span, display: str, delta: int) -> Span:
    return Span(display, 1, span.column + delta, 1, span.end_column + delta)


def _shift_value(value: ast.Value, display: str, delta: int) -> ast.Value:
    changes = {}
    for f in fields(value):
        current = getattr(value, f.name)
        if isinstance(current, Span):
            changes[f.name] = _shift_span(current, display, delta)
        elif isinstance(current, ast.Number):
            changes[f.name] = _shift_value(current, display, delta)
        elif isinstance(current, tuple):
            changes[f.name] = tuple(_shift_value(v, display, delta) if not isinstance(v, (str, int, float)) else v
                                    for v in current)
    return replace(value, **changes)


