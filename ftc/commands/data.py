"""`ftc data RECIPE` / `ftc data --plan DIR`: prepare the data set and report on it, no training.

Prints the report (rows, bad rows, duplicates, split sizes, tokens, truncation, packing, a length
histogram) and writes the histogram as a PNG. Data problems are printed as located messages
(`file:line: problem`) with exit code 1, never as a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ftc.commands.common import add_set_argument


def add_arguments(parser) -> None:
    parser.add_argument("recipe", nargs="?", metavar="RECIPE", help=".ftspec file (compiled in memory)")
    parser.add_argument("--plan", metavar="DIR", help="a compiled folder holding plan.json, instead of a recipe")
    add_set_argument(parser, help="override a recipe field, e.g. --set data.max_length=1024")
    parser.add_argument("--cache-dir", metavar="DIR", help="prepared-data cache (default: from the plan)")
    parser.add_argument("--png", metavar="PATH", help="write the length histogram here "
                        "(default: data_report.png in the cache entry)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def _plan_from_recipe(args):
    """The recipe compiled in memory (nothing written), as the plan the runtime would read; or an exit code."""
    from ftc.commands.common import print_diagnostics
    from ftc.orchestrate.build import build
    from ftc.plan import plan_from_json

    built = build(args.recipe, tuple(args.overrides), files=False)
    print_diagnostics(built, "text")
    if not built.ok:
        print(f"{args.recipe}: failed", file=sys.stderr)
        return 1
    return plan_from_json(built.plan, built.out_dir)


def _plan_from_dir(folder: str):
    """The compiled folder's plan through `load_plan`, or exit code 2 (an input that cannot be read)."""
    from ftc.plan import PlanError, load_plan

    if not (Path(folder) / "plan.json").is_file():
        print(f"ftc data: {Path(folder) / 'plan.json'} does not exist (compile first: ftc compile RECIPE -o {folder})",
              file=sys.stderr)
        return 2
    try:
        return load_plan(folder)
    except PlanError as exc:
        print(f"ftc data: {exc}", file=sys.stderr)
        return 2


def load_tokenizer(plan):
    """The tokenizer named by the plan (model.tokenizer, else the model), local folders relative to the plan."""
    import os

    from transformers import AutoTokenizer

    from ftc.runtime.data import DataError

    model = plan.model
    name = model.tokenizer or model.name_or_path
    local = Path(os.path.normpath(plan.folder / name))
    target = str(local) if local.exists() else name
    try:
        tokenizer = AutoTokenizer.from_pretrained(target, revision=model.revision,
                                                  trust_remote_code=model.trust_remote_code)
    except Exception as exc:  # offline hub, missing files: a user-facing message
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"cannot load the tokenizer {name!r}: {first}",
                        help="a local folder is relative to the plan's folder; hub ids need network access "
                             "or a filled hub cache") from None
    from ftc.runtime.train.tokens import apply_to_tokenizer  # the run's pad/eos, added tokens, chat template

    apply_to_tokenizer(tokenizer, model, plan.data, plan.folder)
    return tokenizer


def run(args) -> int:
    if bool(args.recipe) == bool(args.plan):
        print("ftc data: give a RECIPE or --plan DIR (one of them)", file=sys.stderr)
        return 2
    plan = _plan_from_recipe(args) if args.recipe else _plan_from_dir(args.plan)
    if isinstance(plan, int):
        return plan

    import os

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    from ftc.runtime.data import DataError, default_cache_dir, prepare, render_text, save_png

    try:
        tokenizer = load_tokenizer(plan)
        cache_dir = Path(args.cache_dir) if args.cache_dir else \
            default_cache_dir(plan.data.cache_dir, plan.output.runs_dir, plan.folder)
        prepared = prepare(plan.raw["data"], tokenizer, base_dir=plan.folder, cache_dir=cache_dir)
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
