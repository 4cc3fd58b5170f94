"""Read a recipe and the chain of files it `extends`, in merge order.

Paths are relative to the file that names them. A missing file, a cycle or an unreadable file is a
located diagnostic at the `extends` that named it.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from ftc.compiler import ast
from ftc.compiler.diagnostics import DiagnosticSink, Span
from ftc.compiler.parse import parse_bytes

MAX_FILE_BYTES = 16 * 2**20

# Unsaved editor buffers by resolved path: `ftc lsp` checks what the user sees, not what is on disk.
OVERLAY: ContextVar[Mapping[Path, bytes]] = ContextVar("ftc_source_overlay", default={})


@dataclass(frozen=True)
class SourceFile:
    """One file of the chain: its display path, where it lives, its text and its tree."""

    display: str  # as shown in diagnostics (relative to the working directory when possible)
    path: Path  # absolute, resolved
    text: str
    data: bytes
    recipe: ast.Recipe | None


@dataclass(frozen=True)
class LoadedChain:
    """Files in merge order: ancestors first, the root last. `root` is the file the user named.
    `broken` is true when a file named by `extends` could not be read or parsed, or the chain has a
    cycle: what the recipe would contain is unknown, so it is not resolved (no follow-on errors about
    blocks and fields the missing file may well provide)."""

    files: tuple[SourceFile, ...]
    root: SourceFile | None
    broken: bool = False


class SourceRegistry:
    """Texts by display name, for rendering source lines under diagnostics."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}

    def add(self, name: str, text: str) -> None:
        self.texts[name] = text

    def line(self, name: str, number: int) -> str | None:
        text = self.texts.get(name)
        if text is None:
            return None
        lines = text.splitlines()
        if 1 <= number <= len(lines):
            return lines[number - 1]
        return None


def display_path(path: Path) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return path.as_posix()
    return Path(rel).as_posix()


def read_source(path: Path, sink: DiagnosticSink, registry: SourceRegistry, *, named_at: Span | None = None,
                display: str | None = None) -> SourceFile | None:
    shown = display or display_path(path)
    data = OVERLAY.get().get(path.resolve()) if OVERLAY.get() else None
    try:
        if data is None and path.is_dir():
            sink.error("E0110", f"`{shown}` is a folder, not a recipe file", named_at, label="not a file",
                       help="name a .ftspec file")
            return None
        size = len(data) if data is not None else path.stat().st_size
        if size > MAX_FILE_BYTES:
            sink.error("E0111", f"`{shown}` is too large for a recipe ({size} bytes)", named_at,
                       help=f"recipes are at most {MAX_FILE_BYTES // 2**20} MiB")
            return None
        data = path.read_bytes() if data is None else data
    except FileNotFoundError:
        sink.error("E0112", f"recipe file `{shown}` not found", named_at, label="no such file",
                   help="paths in `extends` are relative to the file that contains them" if named_at else None)
        return None
    except OSError as exc:
        sink.error("E0113", f"cannot read `{shown}`: {exc.strerror or exc}", named_at)
        return None
    recipe, diagnostics = parse_bytes(data, shown)
    text = data.decode("utf-8-sig", errors="replace")
    registry.add(shown, text)
    sink.extend(diagnostics)
    return SourceFile(shown, path, text, data, recipe)


def load_chain(path: Path, sink: DiagnosticSink, registry: SourceRegistry) -> LoadedChain:
    """Load `path` and, depth first, every file it extends. Each file appears once."""
    files: list[SourceFile] = []
    seen: set[Path] = set()
    broken = False

    def visit(file_path: Path, stack: tuple[Path, ...], named_at: Span | None) -> SourceFile | None:
        nonlocal broken
        resolved = file_path.resolve()
        if resolved in stack:
            cycle = " -> ".join(display_path(p) for p in (*stack[stack.index(resolved):], resolved))
            sink.error("E0114", "`extends` forms a cycle", named_at, label="extends a file that extends this one",
                       notes=(f"cycle: {cycle}",), help="remove one of the `extends` in the cycle")
            broken = True
            return None
        if resolved in seen:
            return None  # a diamond: the shared ancestor is merged once, first
        source = read_source(resolved, sink, registry, named_at=named_at,
                             display=Path(file_path).as_posix() if named_at is None else None)
        if source is None or source.recipe is None:
            broken = broken or named_at is not None
            return source
        for directive in source.recipe.directives:
            if directive.name != "extends":
                continue
            if not isinstance(directive.value, ast.String):
                sink.error("E0115", "`extends` takes a quoted path", directive.value.span,
                           label="expected a string", help='write `extends "base.ftspec"`')
                continue
            parent = (resolved.parent / directive.value.value)
            visit(parent, stack + (resolved,), directive.value.span)
        seen.add(resolved)
        files.append(source)
        return source

    root = visit(path, (), None)
    return LoadedChain(tuple(files), root, broken)
