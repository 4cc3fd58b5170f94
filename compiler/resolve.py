"""Resolve a chain of parsed files into one typed recipe.

Order: merge the `extends` chain (child over parent), apply `--set` overrides, type every value
against the schema, apply defaults. Every value keeps its provenance:
explicit | inherited | override | default | derived.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from ftc.compiler import ast
from ftc.compiler.coerce import INVALID, coerce, describe
from ftc.compiler.diagnostics import DiagnosticSink, Span, did_you_mean
from ftc.compiler.load import LoadedChain, SourceRegistry
from ftc.compiler.parse import parse_text
from ftc.compiler.schema import (BLOCKS, DIRECTIVES, ENUM, FOREIGN_NAMES, REQUIRED_BLOCKS, SEARCH_FUNCTIONS,
                                 BlockSpec, FieldSpec)

EXPLICIT, INHERITED, OVERRIDE, DEFAULT, DERIVED = "explicit", "inherited", "override", "default", "derived"


@dataclass(frozen=True)
class Setting:
    value: Any
    provenance: str
    span: Span | None = None


@dataclass(frozen=True)
class SweepParam:
    """One search dimension: `train.lr = loguniform(1e-6, 1e-4)`."""

    target: str  # dotted field, e.g. "train.lr"
    distribution: str  # loguniform | uniform | int | choice
    args: tuple  # typed bounds or choices (canonical units)
    span: Span


@dataclass(frozen=True)
class ResolvedRecipe:
    """The typed recipe: every field of every block, with provenance. Input of the checks and lowering."""

    name: str
    path: str  # display path of the root file
    base_dir: Path  # folder of the root file; relative paths in the recipe are relative to it
    files: tuple[str, ...]  # display paths of the chain, ancestors first
    file_paths: tuple[Path, ...]
    settings: Mapping[str, Setting]
    blocks: Mapping[str, Span]  # block kind -> span of its keyword in the (most derived) definition
    sweep: tuple[SweepParam, ...] = ()
    name_span: Span | None = None

    def setting(self, key: str) -> Setting | None:
        return self.settings.get(key)

    def value(self, key: str, default: Any = None) -> Any:
        s = self.settings.get(key)
        return default if s is None or s.value is None else s.value

    def span(self, key: str) -> Span | None:
        s = self.settings.get(key)
        if s is not None and s.span is not None:
            return s.span
        return self.block_span(key.split(".")[0])

    def provenance(self, key: str) -> str | None:
        s = self.settings.get(key)
        return None if s is None else s.provenance

    def is_set(self, key: str) -> bool:
        """Written by the user (in this file, a parent, or --set), not a default."""
        s = self.settings.get(key)
        return s is not None and s.provenance in (EXPLICIT, INHERITED, OVERRIDE)

    def block_span(self, kind: str) -> Span | None:
        return self.blocks.get(kind)

    def location(self, key: str) -> Path:
        """The folder that relative paths in this setting are relative to: the file that wrote it
        (a parent recipe's paths stay relative to the parent), the working directory for --set."""
        s = self.settings.get(key)
        if s is None or s.span is None:
            return self.base_dir
        if s.provenance == OVERRIDE:
            return Path.cwd()
        for display, path in zip(self.files, self.file_paths):
            if display == s.span.file:
                return path.parent
        return self.base_dir

    def resolve_path(self, key: str, text: str) -> Path:
        return (self.location(key) / text).resolve()

    def has_block(self, kind: str) -> bool:
        return kind in self.blocks

    def items(self, prefix: str = "") -> Iterator[tuple[str, Setting]]:
        for key in sorted(self.settings):
            if key.startswith(prefix):
                yield key, self.settings[key]


# ---------------------------------------------------------------- merge


@dataclass
class _Entry:
    value: ast.Value
    provenance: str
    span: Span  # the attribute's span (key and value)


@dataclass
class _MergedBlock:
    kind: str
    span: Span
    kind_span: Span | None = None
    label: ast.Value | None = None
    label_provenance: str = EXPLICIT
    entries: dict[str, _Entry] = field(default_factory=dict)
    nested: dict[str, "_MergedBlock"] = field(default_factory=dict)


@dataclass
class _Merged:
    blocks: dict[str, _MergedBlock] = field(default_factory=dict)
    name: ast.Value | None = None
    name_provenance: str = EXPLICIT


_VARIANT_BLOCKS = ("method", "distributed")  # the label selects which fields exist: a new label replaces the block


def _merge_block(target: _MergedBlock | None, block: ast.Block, provenance: str, sink: DiagnosticSink,
                 top: bool) -> _MergedBlock:
    label = block.label
    if target is not None and top and block.kind in _VARIANT_BLOCKS and label is not None and \
            target.label is not None and _label_text(target.label) != _label_text(label):
        target = None  # `method lora` in a child replaces a parent's `method qlora`
    if target is None:
        target = _MergedBlock(block.kind, block.span)
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
            target.entries[key] = _Entry(item.value, provenance, item.span)
        else:
            if item.kind in seen_blocks:
                sink.error("E0105", f"block `{item.kind}` appears twice in `{block.kind}`", item.kind_span,
                           label="second definition", notes=(f"first defined at line {seen_blocks[item.kind].span.line}",),
                           help="merge the two blocks into one")
                continue
            seen_blocks[item.kind] = item
            target.nested[item.kind] = _merge_block(target.nested.get(item.kind), item, provenance, sink, False)
    return target


def _label_text(label: ast.Value) -> str:
    if isinstance(label, ast.String):
        return label.value
    if isinstance(label, ast.Word):
        return label.name
    return ast.render_value(label)


def _merge_chain(chain: LoadedChain, sink: DiagnosticSink) -> _Merged:
    merged = _Merged()
    for source in chain.files:
        recipe = source.recipe
        if recipe is None:
            continue
        provenance = EXPLICIT if source is chain.root else INHERITED
        seen: dict[str, ast.Block] = {}
        seen_directives: dict[str, ast.Directive] = {}
        for item in recipe.items:
            if isinstance(item, ast.Directive):
                if item.name not in DIRECTIVES:
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


# ---------------------------------------------------------------- --set overrides

_SET_FILE = "--set"


def apply_overrides(merged: _Merged, overrides: tuple[str, ...], sink: DiagnosticSink,
                    registry: SourceRegistry) -> None:
    """`--set train.lr=1e-4`: typed and validated exactly like a value in the file."""
    for index, text in enumerate(overrides, 1):
        display = f"{_SET_FILE} #{index}"
        registry.add(display, text)
        key, eq, raw = text.partition("=")
        key = key.strip()
        if not eq or not key or not raw.strip():
            sink.error("E0120", f"`--set {text}` is not `key=value`", Span(display, 1, 1, 1, len(text) + 1),
                       help="write e.g. `--set train.lr=1e-4`")
            continue
        if "\n" in raw or "\r" in raw:
            sink.error("E0120", "an override value must be on one line", Span(display, 1, 1, 1, len(text) + 1))
            continue
        offset = len(text) - len(raw.lstrip())  # column of the value start, 0-based
        prefix = "__set {\n  v = "
        recipe, diagnostics = parse_text(prefix + raw.strip() + "\n}\n", display)
        if recipe is None:
            for d in diagnostics:
                sink.add(_shift(d, display, offset - len("  v = ")))
            continue
        attribute = recipe.blocks[0].items[0]
        value = _shift_value(attribute.value, display, offset - len("  v = "))
        key_span = Span(display, 1, 1, 1, len(key) + 1)
        parts = key.split(".")
        kind = parts[0]
        if kind not in BLOCKS:
            guess = did_you_mean(kind, BLOCKS)
            sink.error("E0101", f"unknown block `{kind}` in --set", key_span, label="not a block",
                       help=f"did you mean `{guess}`?" if guess else "blocks are: " + ", ".join(BLOCKS))
            continue
        block = merged.blocks.get(kind)
        if block is None:
            block = merged.blocks[kind] = _MergedBlock(kind, key_span)
        if len(parts) == 1:  # `--set method=qlora`, `--set model="path"`
            if BLOCKS[kind].label == "none":
                sink.error("E0121", f"block `{kind}` has no label to set", key_span,
                           help=f"set a field instead, e.g. `--set {kind}.FIELD=VALUE`")
                continue
            if kind in _VARIANT_BLOCKS and block.label is not None and _label_text(block.label) != _label_text(value):
                block.entries.clear()
            block.label, block.label_provenance = value, OVERRIDE
            continue
        target = block
        for nested in parts[1:-1]:
            if kind != "sweep" and not any(n.name == nested for n in BLOCKS[kind].nested):
                break
            target = target.nested.setdefault(nested, _MergedBlock(nested, key_span))
        name = parts[-1] if target is not block else ".".join(parts[1:])
        target.entries[name] = _Entry(value, OVERRIDE, Span(display, 1, 1, 1, len(text) + 1))


def _shift(d, display: str, delta: int):
    from dataclasses import replace

    if d.span is None:
        return d
    line_delta = 1 - d.span.line
    span = Span(display, 1, max(1, d.span.column + delta), 1,
                max(2, d.span.end_column + delta) if d.span.end_line == d.span.line else max(2, d.span.column + delta + 1))
    return replace(d, span=span if line_delta <= 0 else Span(display, 1, 1, 1, 2))


def _shift_span(span: Span, display: str, delta: int) -> Span:
    return Span(display, 1, span.column + delta, 1, span.end_column + delta)


def _shift_value(value: ast.Value, display: str, delta: int) -> ast.Value:
    from dataclasses import fields, replace

    changes = {}
    for f in fields(value):
        current = getattr(value, f.name)
        if isinstance(current, Span):
            changes[f.name] = _shift_span(current, display, delta)
        elif isinstance(current, ast.Number):
            changes[f.name] = _shift_value(current, display, delta)
        elif isinstance(current, tuple):
            changes[f.name] = tuple(_shift_value(v, display, delta) if not isinstance(v, (str, int, float)) else v
                                    for v in current)
    return replace(value, **changes)


# ---------------------------------------------------------------- typing and defaults


def _unknown_field(spec: BlockSpec, label: str | None, name: str, span: Span, sink: DiagnosticSink) -> str | None:
    """Report an unknown field; returns the field it suggested, if any."""
    foreign = FOREIGN_NAMES.get(name)
    allowed = spec.fields_for(label)
    guess = None
    if foreign and "." not in foreign and foreign in allowed:
        guess = foreign
        help = f"did you mean `{foreign}`?"
    elif foreign and "." in foreign:
        help = f"did you mean `{foreign}` (in block `{foreign.split('.')[0]}`)?"
    else:
        guess = did_you_mean(name, allowed)
        if guess:
            help = f"did you mean `{guess}`?"
        elif name in spec.field_names and label is not None:
            help = None
        else:
            help = "fields of `" + spec.name + "`: " + ", ".join(allowed) if allowed else None
    if name in spec.field_names and name not in allowed:
        owners = [lbl for lbl, names in spec.variant_fields.items() if name in names]
        sink.error("E0108", f"`{name}` does not apply to `{spec.name} {label}`", span,
                   label=f"not a field of `{spec.name} {label}`",
                   help=f"it belongs to `{spec.name} {' | '.join(owners)}`" if owners else None)
        return None
    block_name = spec.name
    sink.error("E0102", f"unknown field `{name}` in block `{block_name}`", span,
               label=f"not a field of `{block_name}`", help=help)
    return guess


def _type_block(spec: BlockSpec, block: _MergedBlock | None, prefix: str, settings: dict[str, Setting],
                sink: DiagnosticSink, sweep: list[SweepParam]) -> None:
    if block is None and not spec.defaults_when_absent:
        return
    label_text = None
    if spec.label != "none":
        if block is not None and block.label is not None:
            label_value = block.label
            if spec.label_kind == ENUM:
                text = _label_text(label_value)
                if not isinstance(label_value, ast.Word) and not (isinstance(label_value, ast.Number)):
                    sink.error("E0201", f"`{spec.name}` expects one of {', '.join(spec.label_choices)}",
                               label_value.span, help="write the kind without quotes")
                elif text not in spec.label_choices:
                    guess = did_you_mean(text, spec.label_choices)
                    sink.error("E0203", f"unknown {spec.name} `{text}`", label_value.span,
                               label=f"not a {spec.name}",
                               help=f"did you mean `{guess}`?" if guess else "expected one of: " + ", ".join(spec.label_choices))
                else:
                    label_text = text
            else:
                if not isinstance(label_value, (ast.String, ast.Word)):
                    sink.error("E0201", f"`{spec.name}` expects a string label", label_value.span)
                else:
                    label_text = _label_text(label_value)
                    if not label_text:
                        sink.error("E0208", f"`{spec.name}` label is empty", label_value.span)
                        label_text = None
            if label_text is not None:
                settings[prefix] = Setting(label_text, block.label_provenance, label_value.span)
        elif block is not None:
            sink.error("E0107", f"block `{spec.name}` needs a label", block.kind_span or block.span,
                       label="no label", help=f"write `{spec.name} {spec.label_doc.split(' | ')[0]} {{ ... }}`"
                       if spec.label_kind == ENUM else f'write `{spec.name} "{spec.label_doc}" {{ ... }}`')
        elif spec.label_default is not None:
            label_text = spec.label_default
            settings[prefix] = Setting(label_text, DEFAULT, None)
    allowed = spec.fields_for(label_text)
    entries = block.entries if block is not None else {}
    suggested: set[str] = set()
    for name, entry in entries.items():
        if spec.dotted_entries and "." in name:
            _type_sweep_entry(name, entry, sink, sweep)
            continue
        field_spec = spec.field(name)
        key_span = Span(entry.span.file, entry.span.line, entry.span.column, entry.span.line,
                        entry.span.column + len(name)) if entry.span.file and not entry.span.file.startswith(_SET_FILE) \
            else entry.span
        if field_spec is None or (name not in allowed and label_text is not None) or \
                (name not in allowed and spec.label == "none"):
            if field_spec is None and spec.dotted_entries and "." not in name:
                pass
            suggestion = _unknown_field(spec, label_text, name, key_span, sink)
            if suggestion:
                suggested.add(suggestion)
            continue
        value = coerce(field_spec, entry.value, f"{prefix}.{name}", sink)
        if value is INVALID:
            continue
        settings[f"{prefix}.{name}"] = Setting(value, entry.provenance, entry.value.span)
    for field_spec in spec.fields:
        key = f"{prefix}.{field_spec.name}"
        if key in settings or field_spec.name not in allowed:
            continue
        if field_spec.name in entries:
            continue  # present but invalid: already reported
        if field_spec.default is not None:
            settings[key] = Setting(field_spec.default, DEFAULT, None)
        elif field_spec.required and block is not None and (spec.label == "none" or label_text is not None):
            if field_spec.name in suggested:
                continue  # an unknown field already suggested this one
            sink.error("E0202", f"missing required field `{field_spec.name}` in block `{spec.name}`",
                       block.kind_span or block.span,
                       label=f"`{spec.name}` needs `{field_spec.name}`", help=f"add `{field_spec.name} = ...`")
    nested = block.nested if block is not None else {}
    for name, nested_block in nested.items():
        nested_spec = next((n for n in spec.nested if n.name == name), None)
        if nested_spec is None:
            guess = did_you_mean(name, [n.name for n in spec.nested] + list(spec.field_names))
            sink.error("E0101", f"unknown block `{name}` in `{spec.name}`", nested_block.span,
                       label="not a block here", help=f"did you mean `{guess}`?" if guess else None)
            continue
        _type_block(nested_spec, nested_block, f"{prefix}.{name}", settings, sink, sweep)


def _type_sweep_entry(name: str, entry: _Entry, sink: DiagnosticSink, sweep: list[SweepParam]) -> None:
    from ftc.compiler.sweep import type_search_entry

    param = type_search_entry(name, entry.value, entry.span, sink)
    if param is not None:
        sweep.append(param)


def resolve(chain: LoadedChain, overrides: tuple[str, ...], sink: DiagnosticSink,
            registry: SourceRegistry) -> ResolvedRecipe | None:
    if chain.root is None or chain.root.recipe is None:
        return None
    merged = _merge_chain(chain, sink)
    apply_overrides(merged, overrides, sink, registry)
    settings: dict[str, Setting] = {}
    sweep: list[SweepParam] = []
    root_span = Span.point(chain.root.display)
    for kind in REQUIRED_BLOCKS:
        if kind not in merged.blocks:
            sink.error("E0109", f"missing block `{kind}`", root_span, label=f"this recipe has no `{kind}` block",
                       help=f"add `{kind} {{ ... }}`" if BLOCKS[kind].label == "none"
                       else f"add `{kind} {BLOCKS[kind].label_doc.split(' | ')[0]} {{ ... }}`")
    for kind, spec in BLOCKS.items():
        _type_block(spec, merged.blocks.get(kind), kind, settings, sink, sweep)
    _derive_defaults(settings, merged)
    name_value = merged.name
    if name_value is not None:
        name = _label_text(name_value)
        name_span = name_value.span
    else:
        name = Path(chain.root.display).stem
        name_span = None
    return ResolvedRecipe(
        name=name,
        path=chain.root.display,
        base_dir=chain.root.path.parent,
        files=tuple(f.display for f in chain.files),
        file_paths=tuple(f.path for f in chain.files),
        settings=dict(sorted(settings.items())),
        blocks={kind: block.kind_span or block.span for kind, block in merged.blocks.items()},
        sweep=tuple(sweep),
        name_span=name_span,
    )


def _derive_defaults(settings: dict[str, Setting], merged: _Merged) -> None:
    """Defaults that depend on other values."""
    if "data.train_on" not in settings and "data.format" in settings:
        fmt = settings["data.format"].value
        settings["data.train_on"] = Setting("all" if fmt == "text" else "completions", DERIVED, None)
    if "distributed" not in settings:
        settings["distributed"] = Setting("auto", DEFAULT, None)
        for f in BLOCKS["distributed"].fields:  # defaults of the fields `auto` may need
            if f.default is not None:
                settings.setdefault(f"distributed.{f.name}", Setting(f.default, DEFAULT, None))
    if "train.epochs" not in settings and "train.max_steps" not in settings and "train" in merged.blocks:
        from ftc.compiler.units import Amount

        settings["train.epochs"] = Setting(Amount(1, "epochs"), DEFAULT, None)
