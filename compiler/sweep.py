"""Typing of sweep entries: `train.lr = loguniform(1e-6, 1e-4)`, `train.warmup = int(100, 1000) steps`."""

from __future__ import annotations

from dataclasses import dataclass

from ftc.compiler import ast
from ftc.compiler.coerce import INVALID, coerce, describe
from ftc.compiler.diagnostics import DiagnosticSink, Span, did_you_mean
from ftc.compiler.schema import BLOCKS, ENUM, FLOAT, INT, QUANTITY, SEARCH_FUNCTIONS

_ARITY = {"loguniform": 2, "uniform": 2, "int": 2}


@dataclass(frozen=True)
class SweepParam:
    """One search dimension: `train.lr = loguniform(1e-6, 1e-4)`."""

    target: str  # dotted field, e.g. "train.lr"
    distribution: str  # loguniform | uniform | int | choice
    args: tuple  # typed bounds or choices (canonical units)
    span: Span


def type_search_entry(name: str, value: ast.Value, span: Span, sink: DiagnosticSink):
    key_span = Span(span.file, span.line, span.column, span.line, span.column + len(name))
    kind, _, field_name = name.partition(".")
    spec = BLOCKS.get(kind)
    if spec is None or kind == "sweep":
        guess = did_you_mean(kind, [b for b in BLOCKS if b != "sweep"])
        sink.error("E0301", f"sweep entry `{name}` names no block", key_span, label="not a block",
                   help=f"did you mean `{guess}.{field_name}`?" if guess else "entries look like `train.lr = ...`")
        return None
    field_spec = spec.field(field_name)
    if field_spec is None:
        tunables = [f.name for f in spec.fields if f.tunable]
        guess = did_you_mean(field_name, [f.name for f in spec.fields])
        sink.error("E0301", f"sweep entry `{name}`: `{kind}` has no field `{field_name}`", key_span,
                   label="unknown field", help=f"did you mean `{kind}.{guess}`?" if guess else
                   (f"tunable fields of `{kind}`: " + ", ".join(tunables) if tunables else None))
        return None
    if not field_spec.tunable:
        sink.error("E0302", f"`{name}` cannot be swept", key_span, label="not tunable",
                   help="tunable fields: " + ", ".join(
                       f"{b.name}.{f.name}" for b in BLOCKS.values() for f in b.fields if f.tunable))
        return None
    call, unit = value, None
    if isinstance(value, ast.Phrase) and len(value.parts) == 2 and isinstance(value.parts[0], ast.Call) \
            and isinstance(value.parts[1], ast.Word):
        call, unit = value.parts
    if not isinstance(call, ast.Call):
        sink.error("E0303", f"sweep entry `{name}` expects a search space, found {describe(value)}", value.span,
                   label="expected a call", help="write e.g. `loguniform(1e-6, 1e-4)`, `int(8, 64)` or `choice(8, 16)`")
        return None
    if call.name not in SEARCH_FUNCTIONS:
        guess = did_you_mean(call.name, SEARCH_FUNCTIONS)
        sink.error("E0304", f"unknown search space `{call.name}`", call.name_span, label="not a search space",
                   help=f"did you mean `{guess}`?" if guess else "use one of: " + ", ".join(SEARCH_FUNCTIONS))
        return None
    arity = _ARITY.get(call.name)
    if arity is not None and len(call.args) != arity:
        sink.error("E0305", f"`{call.name}` takes {arity} bounds, found {len(call.args)}", call.span,
                   label="wrong number of arguments", help=f"write `{call.name}(LOW, HIGH)`")
        return None
    if call.name == "choice" and not call.args:
        sink.error("E0305", "`choice` needs at least one value", call.span)
        return None
    if call.name in ("loguniform", "uniform") and field_spec.kind not in (FLOAT, QUANTITY):
        sink.error("E0306", f"`{call.name}` draws floats but `{name}` takes {field_spec.describe_type()}",
                   call.name_span, help="use `int(LOW, HIGH)` or `choice(...)`")
        return None
    if call.name == "int" and field_spec.kind not in (INT, QUANTITY, FLOAT):
        sink.error("E0306", f"`int` draws integers but `{name}` takes {field_spec.describe_type()}", call.name_span,
                   help="use `choice(...)`")
        return None
    typed = []
    for arg in call.args:
        node = arg
        if unit is not None and isinstance(arg, ast.Number):
            node = ast.Quantity(arg, unit.name, unit.span, arg.span.to(unit.span))
        if field_spec.kind == ENUM and call.name != "choice":
            return None
        result = coerce(field_spec, node, name, sink)
        if result is INVALID:
            return None
        typed.append(result)
    if call.name in _ARITY:
        low, high = (_number(t) for t in typed)
        if call.name == "int" and not all(float(x).is_integer() for x in (low, high)):
            sink.error("E0307", "`int` bounds must be whole numbers", call.span)
            return None
        if not low < high:
            sink.error("E0307", f"empty search range: low {low:g} is not below high {high:g}", call.span,
                       label="low must be less than high")
            return None
        if call.name == "loguniform" and low <= 0:
            sink.error("E0307", "`loguniform` needs a positive lower bound", call.args[0].span,
                       label="must be > 0", help="use `uniform` for ranges that include zero")
            return None
    return SweepParam(name, call.name, tuple(typed), value.span)


def _number(value) -> float:
    return float(getattr(value, "value", value))
