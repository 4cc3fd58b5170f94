"""Merge a chain of parsed files (ancestors first) into one block table, child over parent.

Duplicates inside one file are diagnostics; a child's `method`/`distributed` with another label
replaces the parent's block, since the label decides which fields exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ftc.compiler import ast
from ftc.compiler.coerce import describe
from ftc.compiler.diagnostics import DiagnosticSink, Span, did_you_mean
from ftc.compiler.load import LoadedChain
from ftc.compiler.parse import block_without_body
from ftc.compiler.schema import BLOCKS, DIRECTIVES

EXPLICIT, INHERITED, OVERRIDE, DEFAULT, DERIVED = "explicit", "inherited", "override", "default", "derived"




@dataclass
class Entry:
    value: ast.Value
    provenance: str
    span: Span  # the attribute's span (key and value)


@dataclass
class MergedBlock:
    kind: str
    span: Span
    kind_span: Span | None = None
    label: ast.Value | None = None
    label_provenance: str = EXPLICIT
    entries: dict[str, Entry] = field(default_factory=dict)
    nested: dict[str, "MergedBlock"] = field(default_factory=dict)


@dataclass
class Merged:
    blocks: dict[str, MergedBlock] = field(default_factory=dict)
    name: ast.Value | None = None
    name_provenance: str = EXPLICIT
    without_braces: set[str] = field(default_factory=set)  # `method lora` written with no `{ }`: reported once


VARIANT_BLOCKS = ("method", "distributed")  # the label selects which fields exist: a new label replaces the block


def _merge_block(target: MergedBlock | None, block: ast.Block, provenance: str, sink: DiagnosticSink,
                 top: bool) -> MergedBlock:
    label = block.label
    if target is not None and top and block.kind in VARIANT_BLOCKS and label is not None and \
            target.label is not None and label_text(target.label) != label_text(label):
        target = None  # `method lora` in a child replaces a parent's `method qlora`
    if target is None:
        target = MergedBlock(block.kind, block.span)
    target.span = block.span
    target.kind_span = block.kind_span
    if label is not None:
        target.label, target.label_provenance = label, provenance
    seen_attrs: dict[str, ast.Attribute] = {}
    seen_blocks: dict[str, ast.Block] = {}
    for item in block.items:
        if isinstance(item, ast.Attribute):
            key = item.dotted
            if key in seen_attrs:
                first = seen_attrs[key]
                sink.error("E0104", f"`{key}` is set twice in block `{block.kind}`", item.key_span,
                           label="set again here", notes=(f"first set at line {first.span.line}",),
                           help="remove one of them")
                continue
            seen_attrs[key] = item
            target.entries[key] = Entry(item.value, provenance, item.span)
        else:
            if item.kind in seen_blocks:
                sink.error("E0105", f"block `{item.kind}` appears twice in `{block.kind}`", item.kind_span,
                           label="second definition", notes=(f"first defined at line {seen_blocks[item.kind].span.line}",),
                           help="merge the two blocks into one")
                continue
            seen_blocks[item.kind] = item
            target.nested[item.kind] = _merge_block(target.nested.get(item.kind), item, provenance, sink, False)
    return target


def label_text(label: ast.Value) -> str:
    if isinstance(label, ast.String):
        return label.value
    if isinstance(label, ast.Word):
        return label.name
    return ast.render_value(label)


def merge_chain(chain: LoadedChain, sink: DiagnosticSink) -> Merged:
    merged = Merged()
    for source in chain.files:
        recipe = source.recipe
        if recipe is None:
            continue
        provenance = EXPLICIT if source is chain.root else INHERITED
        seen: dict[str, ast.Block] = {}
        seen_directives: dict[str, ast.Directive] = {}
        for item in recipe.items:
            if isinstance(item, ast.Directive):
                if item.name in BLOCKS:  # `method lora` with no body: one error, not also a missing block
                    sink.add(block_without_body(item.name, item.span, ast.render_value(item.value)))
                    merged.without_braces.add(item.name)
                elif item.name not in DIRECTIVES:
                    guess = did_you_mean(item.name, list(DIRECTIVES) + list(BLOCKS))
                    help = f"did you mean `{guess}`?" if guess else "top-level statements are `recipe`, `extends` and blocks"
                    if guess in BLOCKS:
                        help = f"did you mean the block `{guess} {{ ... }}`?"
                    sink.error("E0106", f"unknown statement `{item.name}`", item.name_span,
                               label="not a statement", help=help)
                elif item.name == "recipe":
                    if item.name in seen_directives:
                        sink.error("E0104", "`recipe` is named twice", item.name_span,
                                   notes=(f"first named at line {seen_directives[item.name].span.line}",))
                    elif not isinstance(item.value, (ast.String, ast.Word)):
                        sink.error("E0201", f"`recipe` expects a name, found {describe(item.value)}",
                                   item.value.span, help='write `recipe "my-run"`')
                    else:
                        merged.name, merged.name_provenance = item.value, provenance
                seen_directives.setdefault(item.name, item)
                continue
            if item.kind not in BLOCKS:
                guess = did_you_mean(item.kind, BLOCKS)
                sink.error("E0101", f"unknown block `{item.kind}`", item.kind_span, label="not a block",
                           help=f"did you mean `{guess}`?" if guess else "blocks are: " + ", ".join(BLOCKS))
                continue
            if item.kind in seen:
                sink.error("E0105", f"block `{item.kind}` appears twice", item.kind_span, label="second definition",
                           notes=(f"first defined at line {seen[item.kind].span.line}",),
                           help="merge the two blocks into one")
                continue
            seen[item.kind] = item
            merged.blocks[item.kind] = _merge_block(merged.blocks.get(item.kind), item, provenance, sink, True)
    return merged


