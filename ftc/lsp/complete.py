"""Completion: block names at the top level, a block kind's labels after its name (`method l`), field
names inside a block (the label's own: `method lora {` offers rank, alpha, targets...), and a field's
values after `=` (enums, booleans, `auto`)."""

from __future__ import annotations

from lsprotocol import types

from ftc.compiler.schema import BLOCKS, DIRECTIVES, ENUM
from ftc.lsp.scan import Context
from ftc.lsp.vocabulary import block_at, field_at, values_of

Kind = types.CompletionItemKind


def completions(ctx: Context) -> list[types.CompletionItem]:
    if ctx.in_comment or ctx.in_string:
        return []
    before = ctx.before.lstrip()
    if "=" in before:
        found = field_at(ctx.path, before.partition("=")[0].strip())
        return [types.CompletionItem(label=v, kind=Kind.EnumMember) for v in values_of(found[1])] if found else []
    words = before.split()
    if len(words) >= 1 and (len(words) == 2 or before.endswith(" ")):
        return _labels(ctx, words[0])
    if not ctx.blocks:
        items = [types.CompletionItem(label=name, kind=Kind.Module, detail="block", documentation=spec.doc)
                 for name, spec in BLOCKS.items()]
        return items + [types.CompletionItem(label=name, kind=Kind.Keyword, documentation=doc)
                        for name, doc in DIRECTIVES.items()]
    return _fields(ctx)


def _labels(ctx: Context, kind: str) -> list[types.CompletionItem]:
    spec = block_at(ctx.path + (kind,))
    if spec is None or spec.label_kind != ENUM:
        return []
    return [types.CompletionItem(label=choice, kind=Kind.EnumMember, detail=f"{kind} {choice}")
            for choice in spec.label_choices]


def _fields(ctx: Context) -> list[types.CompletionItem]:
    spec = block_at(ctx.path)
    if spec is None:
        return []
    label = ctx.blocks[-1][1]
    allowed = spec.fields_for(label)
    items = [types.CompletionItem(label=f.name, kind=Kind.Field, detail=f.describe_type(), documentation=f.doc,
                                  insert_text=f"{f.name} = ")
             for f in spec.fields if f.name in allowed]
    items += [types.CompletionItem(label=n.name, kind=Kind.Module, detail="block", documentation=n.doc)
              for n in spec.nested]
    if spec.dotted_entries:  # sweep: `block.field = distribution` for each tunable field
        items += [types.CompletionItem(label=f"{b.name}.{f.name}", kind=Kind.Field, detail=f.describe_type(),
                                       documentation=f.doc, insert_text=f"{b.name}.{f.name} = ")
                  for b in BLOCKS.values() if b is not spec for f in b.fields if f.tunable]
    return items
