"""`ftc data RECIPE` / `ftc data --plan DIR`: prepare the data set and report on it, no training.

Prints the report (rows, bad rows, duplicates, split sizes, tokens, truncation, packing, a length
histogram) and writes the histogram as a PNG. Data problems are printed as located messages
(`file:line: problem`) with exit code 1, never as a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("recipe", nargs="?", metavar="RECIPE", help=".ftspec file (compiled in memory)")
    parser.add_argument("--plan", metavar="DIR", help="a compiled folder holding plan.json, instead of a recipe")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe field, e.g. --set data.max_length=1024")
    parser.add_argument("--cache-dir", metavar="DIR", help="prepared-data cache (default: from the plan)")
    parser.add_argument("--png", metavar="PATH", help="write the length histogram here "
                        "(default: data_report.png in the cache entry)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def _plan_from_recipe(args) -> tuple[dict, Path] | int:
    from ftc.commands.common import print_diagnostics
    from ftc.compiler.pipeline import compile_recipe

    compiled = compile_recipe(args.recipe, tuple(args.overrides))
    print_diagnostics(compiled, "text")
    if not compiled.ok:
        print(f"{args.recipe}: failed", file=sys.stderr)
        return 1
    return compiled.plan, Path(compiled.out_dir)


def _plan_from_dir(folder: str) -> tuple[dict, Path] | int:
    path = Path(folder) / "plan.json"
    if not path.is_file():
        print(f"ftc data: {path} does not exist (compile first: ftc compile RECIPE -o {folder})", file=sys.stderr)
        return 2
    try:
        return json.loads(path.read_text(encoding="utf-8")), Path(folder)
    except ValueError as exc:
        print(f"ftc data: {path}: not valid JSON ({exc})", file=sys.stderr)
        return 2


def load_tokenizer(plan: dict, plan_dir: Path):
    """The tokenizer named by the plan (model.tokenizer, else the model), local folders relative to the plan."""
    import os

    from transformers import AutoTokenizer

    from ftc.runtime.data import DataError

    model = plan.get("model") or {}
    name = model.get("tokenizer") or model.get("name_or_path")
    if not name:
        raise DataError("the plan names no model or tokenizer to tokenize with")
    local = Path(os.path.normpath(plan_dir / name))
    target = str(local) if local.exists() else name
    try:
        tokenizer = AutoTokenizer.from_pretrained(target, revision=model.get("revision") or None,
                                                  trust_remote_code=bool(model.get("trust_remote_code")))
    except Exception as exc:  # offline hub, missing files: a user-facing message
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"cannot load the tokenizer {name!r}: {first}",
                        help="a local folder is relative to the plan's folder; hub ids need network access "
                             "or a filled hub cache") from None
    from ftc.runtime.train.tokens import apply_to_tokenizer  # the run's pad/eos, added tokens, chat template

    apply_to_tokenizer(tokenizer, model, plan.get("data") or {}, plan_dir)
    return tokenizer


def run(args) -> int:
    if bool(args.recipe) == bool(args.plan):
        print("ftc data: give a RECIPE or --plan DIR (one of them)", file=sys.stderr)
        return 2
    got = _plan_from_recipe(args) if args.recipe else _plan_from_dir(args.plan)
    if isinstance(got, int):
        return got
    plan, plan_dir = got

    import os

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    from ftc.runtime.data import DataError, default_cache_dir, prepare, render_text, save_png

    try:
        tokenizer = load_tokenizer(plan, plan_dir)
        cache_dir = Path(args.cache_dir) if args.cache_dir else default_cache_dir(plan, plan_dir)
        prepared = prepare(plan["data"], tokenizer, base_dir=plan_dir, cache_dir=cache_dir)
    except DataError as exc:
        print(f"error: {exc.located()}", file=sys.stderr)
        return 1
    report = prepared.report
    from ftc.runtime.data.preference_report import preference_warnings

    for warning in preference_warnings(report.preference):
        print(warning, file=sys.stderr)
    png = Path(args.png) if args.png else prepared.cache_path / "data_report.png"
    try:
        save_png(report, png)
    except OSError as exc:
        print(f"ftc data: cannot write {png}: {exc.strerror or exc}", file=sys.stderr)
        png = None
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, sort_keys=True))
    else:
        print(render_text(report))
        if png is not None:
            print(f"  histogram            {png}")
    return 0
