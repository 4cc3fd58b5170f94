"""Give a written value its meaning under a field's spec: type, unit, enum and range.

Each function returns the typed value, or `INVALID` after adding a located diagnostic.
"""

from __future__ import annotations

import math

from ftc.compiler import ast
from ftc.compiler.ast import render_value
from ftc.compiler.diagnostics import DiagnosticSink, did_you_mean
from ftc.compiler.schema import (AUTO, BOOL, BOOL_WORDS, ENUM, FLOAT, INT, METRIC, MODULES, NAMES, OBJECTIVE, PATHS,
                                 QUANTITY, STRING, FieldSpec)
from ftc.compiler.units import DIMENSION_NAMES, EXAMPLE_UNIT, UNITS, Amount, unit_suggestion


class _Invalid:
    def __repr__(self) -> str:
        return "INVALID"


INVALID = _Invalid()

_KIND_WORDS = {
    INT: "an integer", FLOAT: "a number", BOOL: "`true` or `false`", STRING: "a string",
    ENUM: "a name", NAMES: "a list of names", PATHS: "a string or a list of strings",
    QUANTITY: "a quantity", METRIC: "a metric name", OBJECTIVE: "`minimize METRIC` or `maximize METRIC`",
    MODULES: "a list of module names or `all_linear`",
}


def describe(value: ast.Value) -> str:
    if isinstance(value, ast.Number):
        return f"the number `{value.text}`"
    if isinstance(value, ast.String):
        return "a string"
    if isinstance(value, ast.Word):
        return f"`{value.name}`"
    if isinstance(value, ast.Quantity):
        return f"`{render_value(value)}`"
    if isinstance(value, ast.ListValue):
        return "a list"
    if isinstance(value, ast.Call):
        return f"a call to `{value.name}`"
    return f"`{_short(render_value(value))}`"


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def coerce(spec: FieldSpec, value: ast.Value, where: str, sink: DiagnosticSink):
    """`where` is the dotted field name used in messages, e.g. `train.lr`."""
    if spec.allow_auto and isinstance(value, ast.Word) and value.name == "auto":
        return AUTO
    handler = _HANDLERS[spec.kind]
    result = handler(spec, value, where, sink)
    if result is INVALID:
        return result
    return _check_range(spec, result, value, where, sink)


def _type_error(spec: FieldSpec, value: ast.Value, where: str, sink: DiagnosticSink, help: str | None = None):
    expected = _KIND_WORDS[spec.kind]
    if spec.kind == ENUM:
        expected = "one of " + ", ".join(f"`{c}`" for c in spec.choices)
    if spec.allow_auto:
        expected += " or `auto`"
    if help is None and isinstance(value, ast.String) and spec.kind in (ENUM, BOOL, INT, FLOAT):
        help = f"write it without quotes: `{value.value}`" if value.value else None
    sink.error("E0201", f"`{where}` expects {expected}, found {describe(value)}", value.span,
               label=f"expected {expected}", help=help)
    return INVALID


def _int(spec, value, where, sink):
    if isinstance(value, ast.Number):
        if isinstance(value.value, int):
            return value.value
        if math.isfinite(value.value) and float(value.value).is_integer():
            return int(value.value)
        return _type_error(spec, value, where, sink, help=f"use a whole number, e.g. `{round(value.value)}`"
                           if math.isfinite(value.value) else None)
    return _type_error(spec, value, where, sink)


def _float(spec, value, where, sink):
    if isinstance(value, ast.Number):
        if not math.isfinite(value.value):
            return _type_error(spec, value, where, sink)
        return float(value.value)
    if isinstance(value, ast.Quantity) and value.unit == "%":
        return _type_error(spec, value, where, sink, help=f"write a plain number, e.g. `{value.value / 100:g}`")
    return _type_error(spec, value, where, sink)


def _bool(spec, value, where, sink):
    if isinstance(value, ast.Word) and value.name in BOOL_WORDS:
        return BOOL_WORDS[value.name]
    if isinstance(value, ast.Word):
        guess = did_you_mean(value.name, BOOL_WORDS)
        return _type_error(spec, value, where, sink, help=f"did you mean `{guess}`?" if guess else None)
    if isinstance(value, ast.Number) and value.value in (0, 1):
        return _type_error(spec, value, where, sink, help=f"write `{'true' if value.value else 'false'}`")
    return _type_error(spec, value, where, sink)


def _string(spec, value, where, sink):
    if isinstance(value, ast.String):
        return value.value
    if isinstance(value, ast.Word):
        return value.name
    return _type_error(spec, value, where, sink)


def _enum(spec, value, where, sink):
    if isinstance(value, ast.Word) and value.name in spec.choices:
        return value.name
    if isinstance(value, ast.Number) and str(value.value) in spec.choices:
        return str(value.value)
    if isinstance(value, ast.Word):
        guess = did_you_mean(value.name, spec.choices)
        help = f"did you mean `{guess}`?" if guess else "expected one of: " + ", ".join(spec.choices)
        sink.error("E0203", f"unknown value `{value.name}` for `{where}`", value.span,
                   label="not a known value", help=help)
        return INVALID
    return _type_error(spec, value, where, sink)


def _names(spec, value, where, sink):
    items = value.items if isinstance(value, ast.ListValue) else (value,)
    out = []
    ok = True
    for item in items:
        if isinstance(item, (ast.Word, ast.String)):
            name = item.name if isinstance(item, ast.Word) else item.value
            if spec.choices and name not in spec.choices:
                guess = did_you_mean(name, spec.choices)
                sink.error("E0203", f"unknown value `{name}` in `{where}`", item.span, label="not a known value",
                           help=f"did you mean `{guess}`?" if guess else "expected: " + ", ".join(spec.choices))
                ok = False
            out.append(name)
        else:
            _type_error(spec, item, where, sink)
            ok = False
    return tuple(out) if ok else INVALID


def _modules(spec, value, where, sink):
    if isinstance(value, ast.Word) and value.name == "all_linear":
        return "all_linear"
    if isinstance(value, ast.ListValue) and not value.items:
        sink.error("E0208", f"`{where}` is empty", value.span, label="no modules",
                   help="name at least one module, or write `all_linear`")
        return INVALID
    if isinstance(value, (ast.ListValue, ast.Word, ast.String)):
        names = _names(spec, value, where, sink)
        if names is not INVALID and "all_linear" in names and len(names) > 1:
            sink.error("E0209", "`all_linear` cannot be combined with module names", value.span,
                       help="write `targets = all_linear` alone")
            return INVALID
        return names
    return _type_error(spec, value, where, sink)


def _paths(spec, value, where, sink):
    if isinstance(value, ast.String):
        if not value.value:
            sink.error("E0208", f"`{where}` is empty", value.span, label="empty path")
            return INVALID
        return (value.value,)
    if isinstance(value, ast.ListValue) and value.items and all(isinstance(i, ast.String) for i in value.items):
        return tuple(i.value for i in value.items)
    if isinstance(value, ast.Word):
        return _type_error(spec, value, where, sink, help=f'paths are quoted: `"{value.name}"`')
    return _type_error(spec, value, where, sink)


def _metric(spec, value, where, sink):
    if isinstance(value, (ast.Word, ast.String)):
        return value.name if isinstance(value, ast.Word) else value.value
    return _type_error(spec, value, where, sink)


def _objective(spec, value, where, sink):
    if (isinstance(value, ast.Phrase) and len(value.parts) == 2 and isinstance(value.parts[0], ast.Word)
            and isinstance(value.parts[1], ast.Word)):
        direction, metric = value.parts
        if direction.name in ("minimize", "maximize"):
            return (direction.name, metric.name)
        guess = did_you_mean(direction.name, ("minimize", "maximize"))
        sink.error("E0203", f"unknown direction `{direction.name}` in `{where}`", direction.span,
                   label="expected `minimize` or `maximize`", help=f"did you mean `{guess}`?" if guess else None)
        return INVALID
    if isinstance(value, ast.Word):
        return _type_error(spec, value, where, sink, help=f"write `minimize {value.name}` or `maximize {value.name}`")
    return _type_error(spec, value, where, sink)


def _quantity(spec, value, where, sink):
    dims = spec.dims
    expected = " or ".join(DIMENSION_NAMES[d] for d in dims)
    if isinstance(value, ast.Number):
        if spec.bare is None:
            examples = " or ".join(f"`{value.text} {EXAMPLE_UNIT[d]}`" if d != "ratio" else "`3%`" for d in dims)
            sink.error("E0205", f"`{where}` needs a unit", value.span, label="a number without a unit",
                       help=f"write {examples}")
            return INVALID
        if not math.isfinite(value.value):
            return _type_error(spec, value, where, sink)
        return _canonical(spec.bare, value.value, 1, value, where, sink)
    if isinstance(value, ast.Quantity):
        unit = UNITS.get(value.unit)
        if unit is None:
            sink.error("E0206", f"unknown unit `{value.unit}`", value.unit_span, label="not a unit",
                       help=unit_suggestion(value.unit) or f"`{where}` expects {expected}")
            return INVALID
        dimension, factor = unit
        if dimension not in dims:
            help = None
            if where.endswith(".epochs") and dimension == "steps":
                help = f"to run a number of steps, write `max_steps = {render_value(value)}`"
            elif where.endswith(".max_steps") and dimension == "epochs":
                help = f"to run a number of epochs, write `epochs = {value.number.text}`"
            sink.error("E0207", f"`{where}` expects {expected}, found {DIMENSION_NAMES[dimension]}",
                       value.span, label=f"`{value.unit}` is {dimension}", help=help)
            return INVALID
        if not math.isfinite(value.value):
            return _type_error(spec, value, where, sink)
        return _canonical(dimension, value.value, factor, value, where, sink)
    return _type_error(spec, value, where, sink, help=f"`{where}` expects {expected}")


def _canonical(dimension: str, number, factor, node, where, sink):
    if dimension == "bytes":
        return int(round(number * factor))
    if dimension == "tokens":
        if not float(number).is_integer():
            sink.error("E0201", f"`{where}` expects a whole number of tokens", node.span)
            return INVALID
        return int(number)
    if dimension in ("steps", "rows"):
        if not float(number).is_integer():
            sink.error("E0201", f"`{where}` expects a whole number of {dimension}", node.span,
                       help=f"use `{round(number)} {dimension}`")
            return INVALID
        return Amount(int(number), dimension)
    if dimension == "ratio":
        return Amount(number * factor, "ratio")
    if dimension == "duration":
        return Amount(number * factor, "seconds")
    return Amount(number, dimension)


def _check_range(spec: FieldSpec, result, node: ast.Value, where: str, sink: DiagnosticSink):
    if spec.minimum is None and spec.maximum is None:
        return result
    number = result.value if isinstance(result, Amount) else result
    if spec.range_dims and isinstance(result, Amount) and result.unit not in spec.range_dims:
        return result if number >= 0 else _negative(result, node, where, sink)
    if not isinstance(number, (int, float)) or isinstance(number, bool):
        return result
    shown = render_value(node)
    ratio = isinstance(result, Amount) and result.unit == "ratio"

    def fmt(bound):
        if ratio:
            return f"{bound * 100:g}%"
        return f"{bound:g}" if isinstance(bound, float) and not bound.is_integer() else f"{int(bound)}"

    if spec.minimum is not None and (number < spec.minimum or (spec.exclusive_min and number == spec.minimum)):
        relation = "greater than" if spec.exclusive_min else "at least"
        sink.error("E0204", f"`{where}` must be {relation} {fmt(spec.minimum)}, found `{shown}`", node.span,
                   label="out of range")
        return INVALID
    if spec.maximum is not None and (number > spec.maximum or (spec.exclusive_max and number == spec.maximum)):
        relation = "less than" if spec.exclusive_max else "at most"
        sink.error("E0204", f"`{where}` must be {relation} {fmt(spec.maximum)}, found `{shown}`", node.span,
                   label="out of range")
        return INVALID
    return result


def _negative(result, node: ast.Value, where: str, sink: DiagnosticSink):
    sink.error("E0204", f"`{where}` must be at least 0, found `{render_value(node)}`", node.span, label="out of range")
    return INVALID


_HANDLERS = {
    INT: _int, FLOAT: _float, BOOL: _bool, STRING: _string, ENUM: _enum, NAMES: _names, PATHS: _paths,
    QUANTITY: _quantity, METRIC: _metric, OBJECTIVE: _objective, MODULES: _modules,
}
