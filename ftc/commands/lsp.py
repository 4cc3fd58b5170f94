"""`ftc lsp`: the language server on stdio (diagnostics, hover, completion, formatting, go-to-definition).
Needs the `lsp` extra (pygls); it runs the compile path only, never the training stack."""

from __future__ import annotations

import sys


def add_arguments(parser) -> None:
    parser.add_argument("--stdio", action="store_true", help="talk over stdin/stdout (the default and only mode)")


def run(args) -> int:
    try:
        from ftc.lsp.server import serve
    except ModuleNotFoundError as exc:
        if exc.name not in ("pygls", "lsprotocol", "cattrs"):
            raise
        print(f"ftc lsp: needs {exc.name}; install the extra: pip install 'ftspec[lsp]'", file=sys.stderr)
        return 2
    serve()
    return 0
