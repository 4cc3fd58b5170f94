"""`ftc diff OLD NEW`: what changes in the plan and the generated files, terraform-plan style.

OLD and NEW are recipes (compiled in memory, nothing written) or compiled folders. Structured files are compared
key by key (`~ train.lr: 0.0002 -> 0.0001`, `~ ds_config.zero_optimization.stage: 2 -> 3`, `+`/`-` for keys added
or removed); shell files and the hostfile line by line. Left out as noise: the recipe's own file names and hashes
(`recipe.source`, `recipe.sources`), `provenance`, and `ftc.lock` (hashes of what is shown anyway).

Exit codes: 0 equal, 1 different, 2 an input that cannot be read or compiled (diagnostics printed).
"""

from __future__ import annotations

import difflib
import json
import sys
from pathlib import Path

from ftc.commands.common import add_set_argument, print_diagnostics

STRUCTURED = {"plan.json": "", "ds_config.json": "ds_config.", "accelerate.yaml": "accelerate."}
TEXT_FILES = ("launch.sh", "hostfile", "slurm.sbatch")
IGNORED_PLAN_KEYS = ("recipe.source", "recipe.sources", "provenance")


def add_arguments(parser) -> None:
    parser.epilog = "exit status: 0 no changes, 1 changes, 2 an input that cannot be read or compiled"
    parser.add_argument("old", metavar="OLD", help="recipe (.ftspec) or compiled folder")
    parser.add_argument("new", metavar="NEW", help="recipe (.ftspec) or compiled folder")
    add_set_argument(parser, help="override a field of NEW when it is a recipe (OLD stays as written)")
    parser.add_argument("--format", choices=("text", "markdown", "github"), default="text",
                        help="output format: text, markdown (a pull-request comment), github (workflow annotations)")


def run(args) -> int:
    # A recipe compared with a compiled folder is compiled for that folder, so that relative paths agree.
    folder = next((p for p in (args.old, args.new) if Path(p).is_dir()), None)
    old = load_side(args.old, (), folder, args.format)
    new = load_side(args.new, tuple(args.overrides), folder, args.format)
    if old is None or new is None:
        return 2
    try:
        changes = diff_files(old, new)
    except ValueError as exc:  # a hand-edited folder whose JSON/YAML no longer parses
        print(f"ftc diff: cannot parse a generated file: {exc}", file=sys.stderr)
        return 2
    render = {"markdown": render_markdown, "github": render_github}.get(args.format, render_text)
    out = render(args.old, args.new, changes)
    sys.stdout.write(out)
    return 1 if any(items for _, items in changes) else 0


def load_side(path: str, overrides: tuple[str, ...], out_dir: str | None = None,
              fmt: str = "text") -> dict[str, bytes] | None:
    """The generated files of a recipe or a compiled folder, by name."""
    from ftc.orchestrate.build import build, read_folder

    p = Path(path)
    if p.is_dir():
        try:
            files = read_folder(p)
        except OSError as exc:
            print(f"ftc diff: {path}: {exc.strerror or exc}", file=sys.stderr)
            return None
        if "plan.json" not in files:
            print(f"ftc diff: {path} is neither a recipe nor a compiled folder (no plan.json)", file=sys.stderr)
            return None
        return files
    if not p.is_file():
        print(f"ftc diff: {path}: no such file or folder", file=sys.stderr)
        return None
    built = build(p, overrides, out_dir=out_dir)
    print_diagnostics(built, "github" if fmt == "github" else "text")
    if not built.ok:
        print(f"ftc diff: {path} does not compile", file=sys.stderr)
        return None
    return dict(built.files)


def flatten(value, prefix: str = "") -> dict[str, object]:
    """Dotted keys to leaves. Lists of scalars are leaves (shown whole); lists of objects are keyed by their
    `field`/`path` entry (`auto[train.micro_batch].value`), else by position."""
    if isinstance(value, dict) and value:
        out: dict[str, object] = {}
        for key in sorted(value):
            out.update(flatten(value[key], f"{prefix}{key}."))
        return out
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        out = {}
        for index, item in enumerate(value):
            ident = item.get("field", item.get("path", index))
            out.update(flatten(item, f"{prefix[:-1]}[{ident}]."))
        return out
    return {prefix[:-1]: value}


def _parse(name: str, data: bytes):
    text = data.decode("utf-8", errors="replace")
    if name.endswith(".json"):
        return json.loads(text)
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{name}: {exc}") from exc


def _structured_changes(name: str, old: bytes | None, new: bytes | None) -> list[tuple[str, str, object, object]]:
    prefix = STRUCTURED[name]
    before = flatten(_parse(name, old)) if old is not None else {}
    after = flatten(_parse(name, new)) if new is not None else {}
    if name == "plan.json":
        for data in (before, after):
            for key in list(data):
                if any(key == k or key.startswith((k + ".", k + "[")) for k in IGNORED_PLAN_KEYS):
                    del data[key]
    changes = []
    for key in sorted(set(before) | set(after)):
        if key not in after:
            changes.append(("-", prefix + key, before[key], None))
        elif key not in before:
            changes.append(("+", prefix + key, None, after[key]))
        elif before[key] != after[key] or type(before[key]) is not type(after[key]):
            changes.append(("~", prefix + key, before[key], after[key]))
    return changes


def _body(data: bytes | None) -> list[str]:
    if data is None:
        return []
    lines = data.decode("utf-8", errors="replace").splitlines()
    return [line for line in lines if "Code generated by ftc from" not in line]


def diff_files(old: dict[str, bytes], new: dict[str, bytes]) -> list[tuple[str, list]]:
    """Per file: ("plan.json", [(sign, key, old, new), ...]) or ("launch.sh", [unified diff lines])."""
    result = []
    for name in STRUCTURED:
        if name in old or name in new:
            result.append((name, _structured_changes(name, old.get(name), new.get(name))))
    for name in TEXT_FILES:
        if name in old or name in new:
            lines = list(difflib.unified_diff(_body(old.get(name)), _body(new.get(name)), lineterm="", n=1))
            result.append((name, lines[2:]))  # drop the ---/+++ header: the file name is the heading
    return result


def _show(value) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def render_text(old_name: str, new_name: str, changes) -> str:
    out = [f"ftc diff {old_name} -> {new_name}"]
    count = 0
    for name, items in changes:
        if not items:
            continue
        out.append("")
        out.append(f"# {name}")
        for item in items:
            if isinstance(item, tuple):
                sign, key, before, after = item
                count += 1
                if sign == "~":
                    out.append(f"  ~ {key}: {_show(before)} -> {_show(after)}")
                elif sign == "+":
                    out.append(f"  + {key}: {_show(after)}")
                else:
                    out.append(f"  - {key}: {_show(before)}")
            else:
                if not item.startswith("@@"):
                    count += item[:1] in "+-"
                out.append(f"  {item}")
    out.append("")
    files = sum(1 for _, items in changes if items)
    out.append("No changes." if not count else f"{count} change(s) in {files} file(s).")
    return "\n".join(out) + "\n"


def _cell(value) -> str:
    text = "" if value is None else _show(value)
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`" if text else ""


def render_markdown(old_name: str, new_name: str, changes) -> str:
    out = [f"### ftc diff `{old_name}` → `{new_name}`", ""]
    any_change = False
    for name, items in changes:
        if not items:
            continue
        any_change = True
        out.append(f"**{name}**")
        out.append("")
        if isinstance(items[0], tuple):
            out.append("| | key | old | new |")
            out.append("|---|---|---|---|")
            for sign, key, before, after in items:
                out.append(f"| {sign} | `{key}` | {_cell(before) if sign != '+' else ''} | "
                           f"{_cell(after) if sign != '-' else ''} |")
        else:
            out.append("```diff")
            out.extend(items)
            out.append("```")
        out.append("")
    if not any_change:
        out.append("No changes.")
        out.append("")
    return "\n".join(out)


def render_github(old_name: str, new_name: str, changes) -> str:
    """One workflow `::notice` per generated file that changes, on the NEW recipe (or folder), listing its
    changes as the text form does: a pull request shows what a recipe edit does to the plan beside the edit."""
    from ftc.compiler.render import _escape_data, _escape_property

    out = []
    for name, items in changes:
        if not items:
            continue
        body = render_text(old_name, new_name, [(name, items)]).splitlines()[3:-2]
        title = f"ftc diff: {name} changes ({len(items)})"
        target = f"file={_escape_property(new_name)}," if Path(new_name).is_file() else ""
        out.append(f"::notice {target}title={_escape_property(title)}::" + _escape_data("\n".join(
            line.strip() for line in body)))
    return "\n".join(out) + ("\n" if out else "")
