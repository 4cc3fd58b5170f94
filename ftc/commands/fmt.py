"""`ftc fmt RECIPE... [--check] [--diff]`: canonical formatting; comments kept; idempotent."""

from __future__ import annotations

import difflib
import os
import sys
import tempfile
from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("recipes", nargs="+", metavar="RECIPE", help=".ftspec files")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a file is not formatted")
    parser.add_argument("--diff", action="store_true", help="write nothing; print what would change")


def format_file(path: Path):
    """(original text, formatted text) or (None, diagnostics) when the file cannot be parsed."""
    from ftc.compiler.load import SourceRegistry, read_source
    from ftc.compiler.diagnostics import DiagnosticSink
    from ftc.compiler.fmt import format_recipe

    sink = DiagnosticSink()
    registry = SourceRegistry()
    source = read_source(path, sink, registry, display=path.as_posix())
    if source is None or source.recipe is None or sink.has_errors:
        return None, sink, registry
    return source.text, format_recipe(source.recipe, source.text), registry


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run(args) -> int:
    from ftc.compiler.render import render_all_text

    unformatted = []
    errors = False
    for name in args.recipes:
        path = Path(name)
        original, result, registry = format_file(path)
        if original is None:
            errors = True
            print(render_all_text(result.sorted(), registry), file=sys.stderr)
            print(file=sys.stderr)
            continue
        if original == result:
            continue
        unformatted.append(name)
        if args.diff:
            sys.stdout.writelines(difflib.unified_diff(
                original.splitlines(keepends=True), result.splitlines(keepends=True), f"a/{name}", f"b/{name}"))
        elif args.check:
            print(f"{name}: not formatted", file=sys.stderr)
        else:
            _write_atomically(path, result)
            print(f"formatted {name}", file=sys.stderr)
    if errors:
        return 1
    if (args.check or args.diff) and unformatted:
        print(f"{len(unformatted)} file{'s' if len(unformatted) != 1 else ''} would be reformatted; "
              "run `ftc fmt` to fix", file=sys.stderr)
        return 1
    return 0
