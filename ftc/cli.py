"""The `ftc` command line. Each subcommand lives in `ftc.commands.<name>` with
`add_arguments(parser)` and `run(args) -> int`; modules are imported lazily so that
`ftc check` never pays for the training stack.

Exit codes: 0 success; 1 the recipe has errors; 2 usage error.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ftc import __version__

# name -> (module, one-line help). Order is the order shown in `ftc --help`.
COMMANDS: dict[str, tuple[str, str]] = {
    "check": ("ftc.commands.check", "parse and validate recipes, including the hardware budget"),
    "fmt": ("ftc.commands.fmt", "format recipes canonically (comments kept)"),
    "estimate": ("ftc.commands.estimate", "memory breakdown per GPU"),
    "catalog": ("ftc.commands.catalog", "the model ids and GPU names that resolve without a download"),
    "compile": ("ftc.commands.compile", "write the plan and the generated configs"),
    "diff": ("ftc.commands.diff", "what changes in the compiled plan and configs between two recipes"),
    "data": ("ftc.commands.data", "prepare the data set and report on it, no training"),
    "run": ("ftc.commands.run", "compile, then launch and execute the training"),
    "report": ("ftc.commands.report", "print the summary of a finished run"),
    "init": ("ftc.commands.init", "write a starter recipe (from flags, or by asking in a terminal)"),
    "explain": ("ftc.commands.explain", "the long explanation of a diagnostic code"),
    "lsp": ("ftc.commands.lsp", "a language server on stdio, for editors"),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # usage errors exit 2, as argparse does, but never with a traceback
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser; with `only`, just that subcommand's module is imported (a cold `ftc check`
    should not pay for importing every other command)."""
    parser = _Parser(prog="ftc", description="A compiler for LLM fine-tuning recipes.")
    parser.add_argument("--version", action="version", version=f"ftc {__version__}")
    parser.add_argument("--allow-outside-project", action="store_true",
                        help="let an `extends` leave the recipe's project (its git repository, or its folder)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (module_name, help_text) in COMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=help_text, description=help_text)
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue  # a command not built yet
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command_parser)
        command_parser.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.allow_outside_project:
        import os

        from ftc.compiler.risks import ALLOW_ENV

        os.environ[ALLOW_ENV] = "1"
    if not getattr(args, "_run", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("ftc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def entry() -> None:
    """The `ftc` console command: main(), then leave() (ftc/exit.py)."""
    from ftc.exit import leave

    leave(main())


if __name__ == "__main__":
    entry()
