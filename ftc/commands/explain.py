"""`ftc explain CODE`: the long explanation of a diagnostic code (what triggers it, an example, how to fix it).
Without a code, the list of codes with their one-line titles."""

from __future__ import annotations

import sys


def add_arguments(parser) -> None:
    parser.add_argument("code", nargs="?", metavar="CODE", help="a diagnostic code, e.g. E0102 (case-insensitive)")


def run(args) -> int:
    from ftc.compiler.diagnostics import did_you_mean
    from ftc.compiler.explain import explanation, known_codes, normalize, title

    if args.code is None:
        for code in known_codes():
            print(f"{code}  {title(code)}")
        return 0
    text = explanation(args.code)
    if text is None:
        guess = did_you_mean(normalize(args.code), known_codes(), max_distance=1)
        hint = f"; did you mean `{guess}`?" if guess else "; `ftc explain` lists them"
        print(f"ftc explain: no diagnostic code `{args.code}`{hint}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0
