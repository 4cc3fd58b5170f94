"""Render diagnostics: Rust-style text, JSON, and GitHub workflow annotations.

Detection happens in the stages; this module only formats what they found.
"""

from __future__ import annotations

import json

from ftc.compiler.diagnostics import Diagnostic
from ftc.compiler.load import SourceRegistry

MAX_SHOWN_LINE = 160  # a long line is shown as a window around the caret


def render_text(diagnostic: Diagnostic, registry: SourceRegistry) -> str:
    d = diagnostic
    out = [f"{d.severity.value}[{d.code}]: {d.message}"]
    span = d.span
    source_line = registry.line(span.file, span.line) if span is not None else None
    gutter = len(str(span.line)) if span is not None else 1
    pad = " " * gutter
    if span is not None:
        out.append(f"{pad}--> {span.file}:{span.line}:{span.column}")
    if span is not None and source_line is not None:
        shown, start, width = _caret_window(source_line, span)
        out.append(f"{pad} |")
        out.append(f"{span.line} | {shown}".rstrip())
        label = f" {d.label}" if d.label else ""
        out.append(f"{pad} | {' ' * start}{'^' * width}{label}".rstrip())
    for note in d.notes:
        out.append(f"{pad} = note: {note}")
    if d.help:
        out.append(f"{pad} = help: {d.help}")
    return "\n".join(out)


def _caret_window(line: str, span) -> tuple[str, int, int]:
    """The displayed source (tabs expanded, long lines windowed), caret start and caret width."""
    start = max(0, span.column - 1)
    if span.end_line == span.line:
        end = max(start + 1, span.end_column - 1)
    else:
        end = max(start + 1, len(line))
    left = 0
    if len(line) > MAX_SHOWN_LINE:
        left = max(0, start - MAX_SHOWN_LINE // 2)
        right = left + MAX_SHOWN_LINE
        line_shown = ("…" if left else "") + line[left:right] + ("…" if right < len(line) else "")
        prefix_extra = 1 if left else 0
        end = min(end, right)
    else:
        line_shown = line
        prefix_extra = 0
    before = line[left:start].expandtabs(4)
    marked = line[start:end].expandtabs(4)
    shown = _printable(line_shown.expandtabs(4))
    return shown, len(before) + prefix_extra, max(1, len(marked))


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() or ch == " " else "\ufffd" for ch in text)


def render_all_text(diagnostics: list[Diagnostic], registry: SourceRegistry) -> str:
    return "\n\n".join(render_text(d, registry) for d in diagnostics)


def summary_line(diagnostics: list[Diagnostic]) -> str:
    errors = sum(1 for d in diagnostics if d.severity.value == "error")
    warnings = sum(1 for d in diagnostics if d.severity.value == "warning")
    parts = []
    if errors:
        parts.append(f"{errors} error{'s' if errors != 1 else ''}")
    if warnings:
        parts.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
    return ", ".join(parts)


def to_json_obj(d: Diagnostic) -> dict:
    span = d.span
    return {
        "code": d.code,
        "severity": d.severity.value,
        "message": d.message,
        "file": span.file if span else None,
        "line": span.line if span else None,
        "column": span.column if span else None,
        "end_line": span.end_line if span else None,
        "end_column": span.end_column if span else None,
        "label": d.label or None,
        "help": d.help,
        "notes": list(d.notes),
    }


def render_json(diagnostics: list[Diagnostic]) -> str:
    return json.dumps([to_json_obj(d) for d in diagnostics], indent=2, ensure_ascii=False)


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def render_github(d: Diagnostic) -> str:
    """One workflow command: `::error file=F,line=L,col=C,endLine=..,endColumn=..,title=CODE::message`."""
    command = {"error": "error", "warning": "warning", "note": "notice"}[d.severity.value]
    props = []
    if d.span is not None:
        props += [f"file={_escape_property(d.span.file)}", f"line={d.span.line}", f"col={d.span.column}",
                  f"endLine={d.span.end_line}", f"endColumn={d.span.end_column}"]
    props.append(f"title={_escape_property(d.code)}")
    message = d.message
    if d.help:
        message += f"\nhelp: {d.help}"
    return f"::{command} {','.join(props)}::{_escape_data(message)}"
