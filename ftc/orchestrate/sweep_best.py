"""The best trial as a recipe of its own: `best.ftspec` in the sweep folder, complete (the `extends` chain
merged, the sweep's `--set` and the trial's values written in), formatted, without the `sweep` block.

Compiled into the same folder, it gives the best trial's plan (only `recipe.source`/`sources` and the
provenance of each field differ: everything is now written in one file). Paths are rewritten relative to
the new file, so the model, data and runs folder are the trial's own.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from ftc.compiler import ast
from ftc.compiler.ast import render_value

from ftc.runtime.sweep.errors import SweepError

BEST_RECIPE = "best.ftspec"
PATH_KEYS = ("model.tokenizer", "data.train", "data.eval", "data.cache_dir", "output.runs_dir")


def best_recipe_text(recipe: str | os.PathLike, overrides: tuple[str, ...], out_file: Path,
                     header: tuple[str, ...] = ()) -> str:
    """The merged recipe with `overrides` applied, as formatted text for `out_file`."""
    from ftc.compiler.diagnostics import DiagnosticSink
    from ftc.compiler.fmt import format_recipe
    from ftc.compiler.load import SourceRegistry, load_chain
    from ftc.compiler.merge import OVERRIDE, Entry, merge_chain
    from ftc.compiler.overrides import apply_overrides
    from ftc.compiler.parse import parse_text
    from ftc.compiler.schema import BLOCKS

    sink, registry = DiagnosticSink(), SourceRegistry()
    chain = load_chain(Path(recipe), sink, registry)
    if chain.root is None or chain.broken:
        raise SweepError(f"cannot read {recipe} to write the best trial's recipe")
    merged = merge_chain(chain, sink)
    apply_overrides(merged, tuple(overrides), sink, registry)
    if sink.has_errors:
        raise SweepError(f"the best trial's values do not apply to {recipe}")
    files = {f.display: f.path.parent for f in chain.files}
    base = chain.root.path.parent
    where = lambda provenance, span: Path.cwd() if provenance == OVERRIDE else files.get(span.file, base)  # noqa
    target = Path(out_file).resolve().parent
    output = merged.blocks.get("output")
    if output is None or "runs_dir" not in output.entries:  # the default `runs` is relative to the recipe
        from ftc.compiler.merge import MergedBlock

        output = merged.blocks.setdefault("output", MergedBlock("output", chain.root.recipe.items[0].span))
        span = chain.root.recipe.items[0].span
        output.entries["runs_dir"] = Entry(ast.String(BLOCKS["output"].field("runs_dir").default, span), "explicit",
                                           span)
    name = merged.name.value if isinstance(merged.name, ast.String) else \
        merged.name.name if isinstance(merged.name, ast.Word) else Path(recipe).stem
    lines = [*(f"# {h}" for h in header), f"recipe {render_value(ast.String(name, chain.root.recipe.items[0].span))}"]
    for kind in BLOCKS:
        if kind == "sweep" or kind not in merged.blocks:
            continue
        lines.append("")
        lines += _block(merged.blocks[kind], kind, 0, where, target)
    text = "\n".join(lines) + "\n"
    tree, errors = parse_text(text, str(out_file))
    if tree is None:
        raise SweepError(f"the best trial's recipe does not parse: {errors[0].message if errors else ''}")
    return format_recipe(tree, text)


def _block(block, prefix: str, depth: int, where, target: Path) -> list[str]:
    pad = "  " * depth
    head = block.kind
    if block.label is not None:
        label = block.label
        if prefix == "model" and isinstance(label, ast.String) and _local_model(label.value, where(
                block.label_provenance, label.span)):
            label = _rebase(label, where(block.label_provenance, label.span), target)
        head += f" {render_value(label)}"
    lines = [f"{pad}{head} {{"]
    for key, entry in block.entries.items():
        value = entry.value
        if f"{prefix}.{key}" in PATH_KEYS:
            value = _rebase(value, where(entry.provenance, entry.span), target)
        lines.append(f"{pad}  {key} = {render_value(value)}")
    for name, nested in block.nested.items():
        lines += _block(nested, f"{prefix}.{name}", depth + 1, where, target)
    lines.append(f"{pad}}}")
    return lines


def _local_model(text: str, origin: Path) -> bool:
    return text.startswith((".", "/", "~")) or (origin / text).is_dir()


def _rebase(value, origin: Path, target: Path):
    """A relative path (or list of them) re-expressed relative to `target`; hub ids (`hf:`) unchanged."""
    if isinstance(value, ast.ListValue):
        return replace(value, items=tuple(_rebase(v, origin, target) for v in value.items))
    if not isinstance(value, ast.String) or value.value.startswith("hf:"):
        return value
    path = Path(os.path.expanduser(value.value))
    if path.is_absolute():
        return value
    moved = os.path.relpath(os.path.abspath(origin / path), target)
    return replace(value, value=Path(moved).as_posix())


def write_best_recipe(recipe: str, user_overrides: tuple[str, ...], best, folder: Path, header: tuple[str, ...]
                      ) -> Path:
    path = Path(folder) / BEST_RECIPE
    text = best_recipe_text(recipe, (*user_overrides, *best.overrides), path, header)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
