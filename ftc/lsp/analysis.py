"""Compile an editor's buffers and turn the compiler's Diagnostic values into LSP diagnostics.

The compile path is the one `ftc check` runs (budget check and lowering included); the buffers are read
through `compiler.load.OVERLAY`, so unsaved text and unsaved parents are what is checked.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from lsprotocol import types

from ftc.compiler.diagnostics import Diagnostic, Severity

SEVERITY = {Severity.ERROR: types.DiagnosticSeverity.Error, Severity.WARNING: types.DiagnosticSeverity.Warning,
            Severity.NOTE: types.DiagnosticSeverity.Information}


def compile_buffers(path: Path, buffers: Mapping[Path, str]):
    """`compile_recipe` of `path` with the open buffers in place of their files (a `Compiled`)."""
    from ftc.compiler.load import OVERLAY
    from ftc.compiler.pipeline import compile_recipe

    token = OVERLAY.set({p.resolve(): text.encode("utf-8") for p, text in buffers.items()})
    try:
        return compile_recipe(path)
    finally:
        OVERLAY.reset(token)


def file_of(display: str) -> Path:
    """The absolute path of a diagnostic's file (display paths are relative to the working directory)."""
    return Path(os.path.abspath(display))


def to_range(span) -> types.Range:
    if span is None:
        return types.Range(types.Position(0, 0), types.Position(0, 0))
    return types.Range(types.Position(span.line - 1, span.column - 1),
                       types.Position(span.end_line - 1, span.end_column - 1))


def to_lsp(d: Diagnostic) -> types.Diagnostic:
    """The CLI's diagnostic with the same code and span; label, notes and help go into the message."""
    lines = [d.message]
    if d.label:
        lines.append(d.label)
    lines += [f"note: {note}" for note in d.notes]
    if d.help:
        lines.append(f"help: {d.help}")
    return types.Diagnostic(range=to_range(d.span), message="\n".join(lines), severity=SEVERITY[d.severity],
                            code=d.code, source="ftc")


def by_file(root: Path, diagnostics) -> dict[Path, list[types.Diagnostic]]:
    """Diagnostics grouped by the file they point into; those without a span go to the root file."""
    grouped: dict[Path, list[types.Diagnostic]] = {root: []}
    for d in diagnostics:
        target = file_of(d.span.file) if d.span is not None else root
        grouped.setdefault(target, []).append(to_lsp(d))
    return grouped
