"""`ftc check RECIPE...`: everything `ftc compile` checks (the fields, the cross-field rules, the hardware
budget and what only lowering can tell: steps, autos), without writing anything."""

from __future__ import annotations

import sys

from ftc.commands.common import (add_format_argument, add_set_argument, dump_json, json_report, print_diagnostics,
                                 summary)


def add_arguments(parser) -> None:
    parser.add_argument("recipes", nargs="+", metavar="RECIPE", help=".ftspec files")
    add_set_argument(parser)
    add_format_argument(parser)


def run(args) -> int:
    from ftc.orchestrate.build import build

    failed = False
    reports = []
    for path in args.recipes:
        analysis = build(path, tuple(args.overrides), files=False)
        failed |= not analysis.ok
        if args.format == "json":
            reports.append(json_report(path, analysis))
            continue
        print_diagnostics(analysis, args.format)
        if args.format == "text":
            status = "ok" if analysis.ok else "failed"
            extra = summary(analysis)
            print(f"{path}: {status}" + (f" ({extra})" if extra else ""), file=sys.stderr)
    if args.format == "json":
        dump_json(reports if len(reports) != 1 else reports[0])
    return 1 if failed else 0
