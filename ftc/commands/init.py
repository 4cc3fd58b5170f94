"""`ftc init [PATH] [--model ID] [--gpu NAME|cpu] [--gpus N] [--method lora|qlora|full] [--data PATH]`:
write a starter recipe that checks cleanly. Without flags, asks a few questions in a terminal; it refuses to
ask when stdin is not a terminal (a script passes flags instead). The written recipe is checked at once."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from ftc.commands.starter import (CPU, DEFAULT_DATA, DEFAULT_GPU, DEFAULT_MODEL, METHODS, Answers, render,
                                  sniff_format)

FLAGS = ("model", "gpu", "gpus", "method", "data", "name")


def add_arguments(parser) -> None:
    parser.add_argument("path", nargs="?", default="recipe.ftspec", metavar="PATH",
                        help="where to write the recipe (default: recipe.ftspec)")
    parser.add_argument("--model", metavar="ID", help=f"hub id or local folder (default: {DEFAULT_MODEL})")
    parser.add_argument("--gpu", metavar="NAME", help=f"a catalog GPU name, or `cpu` (default: {DEFAULT_GPU})")
    parser.add_argument("--gpus", type=int, metavar="N", help="GPUs per node (default: 1)")
    parser.add_argument("--method", choices=METHODS, help="lora (default), qlora or full")
    parser.add_argument("--data", metavar="PATH", help=f"training data file (default: {DEFAULT_DATA})")
    parser.add_argument("--name", metavar="NAME", help="the recipe's name (default: from PATH)")
    parser.add_argument("--force", action="store_true", help="overwrite PATH if it exists")


def run(args) -> int:
    target = Path(args.path)
    if target.exists() and not args.force:
        print(f"ftc init: {target} exists; choose another PATH or pass --force", file=sys.stderr)
        return 2
    if all(getattr(args, flag) is None for flag in FLAGS):
        if not sys.stdin.isatty():
            print("ftc init: no flags given and stdin is not a terminal, so there is no one to ask; pass "
                  "--model, --gpu, --method and --data (any one of them skips the questions)", file=sys.stderr)
            return 2
        try:
            args = ask(args)
        except EOFError:
            print("\nftc init: no answer; nothing written", file=sys.stderr)
            return 2
    answers = build_answers(args, target)
    if answers.gpus < 1:
        print("ftc init: --gpus must be at least 1", file=sys.stderr)
        return 2
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render(answers), encoding="utf-8")
    return report(target)


def _question(prompt: str, default: str, choices: tuple[str, ...] = ()) -> str:
    shown = f" [{'/'.join(choices) if choices else default}, default {default}]" if choices else f" [{default}]"
    while True:
        sys.stderr.write(f"{prompt}{shown}: ")  # questions on stderr, like the rest of ftc's talk
        sys.stderr.flush()
        reply = input().strip() or default
        if not choices or reply in choices:
            return reply
        print(f"  one of: {', '.join(choices)}", file=sys.stderr)


def ask(args):
    """The few questions a first recipe needs; Enter takes the default."""
    print("A starter recipe: press Enter to take the default in brackets.", file=sys.stderr)
    args.model = _question("Model (hub id or local folder)", DEFAULT_MODEL)
    args.method = _question("Method", "lora", METHODS)
    args.gpu = _question(f"GPU (a name from `ftc catalog gpus`, or `{CPU}`)", DEFAULT_GPU)
    if args.gpu.lower() != CPU:
        count = _question("GPUs per node", "1")
        args.gpus = int(count) if count.isdigit() else 1
    args.data = _question("Training data file", DEFAULT_DATA)
    return args


def _relative_to(path: str, folder: Path) -> str:
    """A data path as the recipe writes it: relative to the recipe's folder (hub ids and absolute paths kept)."""
    if path.startswith("hf:") or os.path.isabs(path):
        return path
    return Path(os.path.relpath(Path(path).resolve(), folder.resolve())).as_posix()


def build_answers(args, target: Path) -> Answers:
    folder = target.parent
    data = args.data or DEFAULT_DATA
    written = _relative_to(data, folder) if args.data else data
    model = args.model or DEFAULT_MODEL
    if Path(model).is_dir() and not os.path.isabs(model):  # a local folder, named from the working directory
        model = _relative_to(model, folder)
    name = args.name or re.sub(r"[^A-Za-z0-9._-]+", "-", target.stem).strip("-") or "my-finetune"
    found = sniff_format(Path(data)) if not data.startswith("hf:") else None
    return Answers(model=model, gpu=(args.gpu or DEFAULT_GPU), gpus=args.gpus or 1,
                   method=args.method or "lora", data=written, data_format=found or "chat", name=name)


def report(target: Path) -> int:
    """Check what was written, as `ftc check` does, and say what to do next."""
    from ftc.commands.common import print_diagnostics, summary
    from ftc.orchestrate.build import build

    analysis = build(target, files=False)
    print_diagnostics(analysis)
    extra = summary(analysis)
    status = "checks cleanly" if analysis.ok else "does not check yet"
    print(f"wrote {target}: it {status}" + (f" ({extra})" if extra else ""), file=sys.stderr)
    if analysis.ok:
        print(f"next: `ftc estimate {target}` for the memory per GPU, `ftc run {target}` to train", file=sys.stderr)
    return 0 if analysis.ok else 1
