"""Resolve a chain of parsed files into one typed recipe.

Order: merge the `extends` chain (child over parent), apply `--set` overrides, type every value
against the schema, apply defaults. Every value keeps its provenance:
explicit | inherited | override | default | derived.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Iterator, Mapping

from ftc.compiler import ast
from ftc.compiler.coerce import INVALID, coerce
from ftc.compiler.diagnostics import DiagnosticSink, Span, did_you_mean
from ftc.compiler.load import LoadedChain, SourceRegistry
from ftc.compiler.merge import (DEFAULT, DERIVED, EXPLICIT, INHERITED, OVERRIDE, Entry, Merged,  # noqa: F401
                                MergedBlock, merge_chain)
from ftc.compiler.merge import label_text as label_of
from ftc.compiler.models.resolve import resolve_model
from ftc.compiler.overrides import SET_FILE, apply_overrides
from ftc.compiler.schema import BLOCKS, ENUM, FOREIGN_NAMES, REQUIRED_BLOCKS, BlockSpec, block_opening


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
    invalid: frozenset[str] = frozenset()  # fields written with a value already reported as wrong

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

    def unknown(self, *keys: str) -> bool:
        """Any of `keys` written with a wrong value (reported): rules that need it neither pass nor fail,
        so one mistake is not reported again as a missing field."""
        return any(key in self.invalid for key in keys)

    def is_set(self, key: str) -> bool:
        """Written by the user (in this file, a parent, or --set), not a default."""
        s = self.settings.get(key)
        return s is not None and s.provenance in (EXPLICIT, INHERITED, OVERRIDE)

    def block_span(self, kind: str) -> Span | None:
        return self.blocks.get(kind)

    @cached_property
    def resolved_model(self):
        """`model` resolved to its architecture (local folder, Hugging Face cache or catalog; never the
        network): a ResolvedModel, a ModelNotFound, or None without a model name. Read once per recipe,
        for the budget check, lowering and the auto passes alike."""
        name = self.value("model")
        if not isinstance(name, str):
            return None
        return resolve_model(name, self.location("model"), self.value("model.revision"))

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
        return (self.location(key) / Path(text).expanduser()).resolve()

    def local_path(self, key: str, text: str) -> Path | None:
        """Where a data path of `key` lives on this machine; None for a hub id (`hf:`) or a glob."""
        if text.startswith("hf:") or any(ch in text for ch in "*?["):
            return None
        return self.resolve_path(key, text)

    def world_size(self) -> int:
        """Ranks that each see different data: every strategy here is data parallel over all ranks."""
        return int(self.value("hardware.gpus_per_node", 1)) * int(self.value("hardware.nodes", 1))

    def strategy(self) -> str:
        """The distributed strategy the run uses: `distributed auto` is `none` on one rank, DeepSpeed for
        full fine-tuning and DDP for adapters on several, or FSDP for adapters when the replicated weights
        do not fit the GPU budget (`auto_strategy`); `ddp` on one rank is `none` (lowering records why)."""
        strategy = self.value("distributed", "auto")
        world = self.world_size()
        if strategy == "auto":
            if world == 1:
                return "none"
            if self.value("method") == "full":
                return "deepspeed"
            return self.auto_strategy[0] if self.auto_strategy else "ddp"
        return "none" if strategy == "ddp" and world == 1 else strategy

    @cached_property
    def auto_strategy(self) -> tuple[str, str] | None:
        """(strategy, reason) when the memory estimate decides `distributed auto` for adapters on several
        ranks; None where it cannot (no GPU budget, unknown model) and the rule above applies."""
        if self.value("distributed", "auto") != "auto" or self.world_size() == 1 or \
                self.value("method") not in ("lora", "qlora"):
            return None
        from ftc.compiler.memory.auto import choose_strategy  # the estimator is a later stage

        return choose_strategy(self)

    def compute_dtype_field(self) -> str:
        """The field that sets the compute dtype: QLoRA's `compute_dtype` (its weights are 4-bit), else the
        model's `dtype`."""
        return "method.compute_dtype" if self.value("method") == "qlora" else "model.dtype"

    def has_block(self, kind: str) -> bool:
        return kind in self.blocks

    def items(self, prefix: str = "") -> Iterator[tuple[str, Setting]]:
        for key in sorted(self.settings):
            if key.startswith(prefix):
                yield key, self.settings[key]


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


def _type_block(spec: BlockSpec, block: MergedBlock | None, prefix: str, settings: dict[str, Setting],
                sink: DiagnosticSink, sweep: list[SweepParam], invalid: set[str]) -> None:
    if block is None and not spec.defaults_when_absent:
        return
    label_text = None
    if spec.label != "none":
        if block is not None and block.label is not None:
            label_value = block.label
            if spec.label_kind == ENUM:
                text = label_of(label_value)
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
                    label_text = label_of(label_value)
                    if not label_text:
                        sink.error("E0208", f"`{spec.name}` label is empty", label_value.span)
                        label_text = None
            if label_text is not None:
                settings[prefix] = Setting(label_text, block.label_provenance, label_value.span)
        elif block is not None:
            kind_field = _kind_written_as_field(spec, block)
            if kind_field is not None:
                name, kind = kind_field
                help_text = f"the {spec.name} kind is the block's label: write `{spec.name} {kind} {{ ... }}` " \
                            f"instead of `{name} = {kind}`"
            else:
                help_text = f"write `{block_opening(spec)} {{ ... }}`"
            sink.error("E0107", f"block `{spec.name}` needs a label", block.kind_span or block.span,
                       label="no label", help=help_text)
            if kind_field is not None:
                block = replace(block, entries={k: v for k, v in block.entries.items() if k != kind_field[0]})
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
                        entry.span.column + len(name)) if entry.span.file and not entry.span.file.startswith(SET_FILE) \
            else entry.span
        if field_spec is None or (name not in allowed and label_text is not None) or \
                (name not in allowed and spec.label == "none"):
            suggestion = _unknown_field(spec, label_text, name, key_span, sink)
            if suggestion:
                suggested.add(suggestion)
            continue
        value = coerce(field_spec, entry.value, f"{prefix}.{name}", sink)
        if value is INVALID:
            invalid.add(f"{prefix}.{name}")
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
        _type_block(nested_spec, nested_block, f"{prefix}.{name}", settings, sink, sweep, invalid)


def _kind_written_as_field(spec: BlockSpec, block: MergedBlock) -> tuple[str, str] | None:
    """(field, kind) when a label-less block names its kind in a field, as Axolotl's `adapter: lora` or a
    `strategy = deepspeed` would: the fix is the label, and the field is not reported again as unknown."""
    if spec.label_kind != ENUM:
        return None
    for name, entry in block.entries.items():
        if spec.field(name) is None and isinstance(entry.value, (ast.Word, ast.String)):
            kind = label_of(entry.value)
            if kind in spec.label_choices:
                return name, kind
    return None


def _type_sweep_entry(name: str, entry: Entry, sink: DiagnosticSink, sweep: list[SweepParam]) -> None:
    from ftc.compiler.sweep import type_search_entry

    param = type_search_entry(name, entry.value, entry.span, sink)
    if param is not None:
        sweep.append(param)


def resolve(chain: LoadedChain, overrides: tuple[str, ...], sink: DiagnosticSink,
            registry: SourceRegistry) -> ResolvedRecipe | None:
    if chain.root is None or chain.root.recipe is None:
        return None
    merged = merge_chain(chain, sink)
    apply_overrides(merged, overrides, sink, registry)
    settings: dict[str, Setting] = {}
    sweep: list[SweepParam] = []
    invalid: set[str] = set()
    root_span = Span.point(chain.root.display)
    for kind in REQUIRED_BLOCKS:
        if kind not in merged.blocks and kind not in merged.without_braces:
            sink.error("E0109", f"missing block `{kind}`", root_span, label=f"this recipe has no `{kind}` block",
                       help=f"add `{block_opening(BLOCKS[kind])} {{ ... }}`")
    for kind, spec in BLOCKS.items():
        _type_block(spec, merged.blocks.get(kind), kind, settings, sink, sweep, invalid)
    _derive_defaults(settings, merged)
    name_value = merged.name
    if name_value is not None:
        name = label_of(name_value)
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
        invalid=frozenset(invalid),
    )


def _derive_defaults(settings: dict[str, Setting], merged: Merged) -> None:
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
