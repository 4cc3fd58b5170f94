"""Helpers shared by the subcommands: recipe arguments and diagnostic output (of a compile, a build or an
analysis: anything with `diagnostics`, `registry` and `ok`)."""

from __future__ import annotations

import json
import sys

from ftc.compiler.render import render_all_text, render_github, summary_line, to_json_obj

FORMATS = ("text", "json", "github")


def add_set_argument(parser, help: str = "override a field, e.g. --set train.lr=1e-4 (validated like the file)"
                     ) -> None:
    """`--set KEY=VALUE`, repeatable, declared here only; every command that takes overrides uses this."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help)


def add_format_argument(parser) -> None:
    parser.add_argument("--format", choices=FORMATS, default="text", help="diagnostics format (default: text)")


def print_diagnostics(analysis, fmt: str = "text", stream=None) -> None:
    """Text goes to stderr; json and github go to stdout (they are meant for machines)."""
    diagnostics = list(analysis.diagnostics)
    if fmt == "json":
        return  # collected by the caller into one document
    if fmt == "github":
        for d in diagnostics:
            print(render_github(d), file=stream or sys.stdout)
        return
    if diagnostics:
        out = stream or sys.stderr
        print(render_all_text(diagnostics, analysis.registry), file=out)
        print(file=out)


def json_report(path: str, analysis) -> dict:
    return {"file": path, "ok": analysis.ok, "diagnostics": [to_json_obj(d) for d in analysis.diagnostics]}


def dump_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def summary(analysis) -> str:
    return summary_line(list(analysis.diagnostics))
