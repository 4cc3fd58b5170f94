"""What the schema says about a place in a recipe: the block spec of an open-block path, the field a
statement names, the values a field takes. Read by hover and completion."""

from __future__ import annotations

from ftc.compiler.schema import BLOCKS, BOOL, ENUM, MODULES, NAMES, BlockSpec, FieldSpec


def block_at(path: tuple[str, ...]) -> BlockSpec | None:
    """The spec of the innermost block of `path` (`("data", "columns")` -> the nested `columns`)."""
    if not path:
        return None
    spec = BLOCKS.get(path[0])
    for kind in path[1:]:
        if spec is None:
            return None
        spec = next((n for n in spec.nested if n.name == kind), None)
    return spec


def field_at(path: tuple[str, ...], name: str) -> tuple[str, FieldSpec] | None:
    """(settings key, spec) of the field `name` written in the block `path`. A sweep entry
    (`train.lr = ...`) names the field it searches."""
    spec = block_at(path)
    if spec is None or not name:
        return None
    if spec.dotted_entries and "." in name:
        kind, _, field_name = name.rpartition(".")
        target = block_at(tuple(kind.split(".")))
        found = target.field(field_name) if target is not None else None
        return (name, found) if found is not None else None
    found = spec.field(name)
    return (".".join(path + (name,)), found) if found is not None else None


def values_of(field: FieldSpec) -> list[str]:
    """The words a field's value may be (enums, booleans, `auto`, closed name lists)."""
    values: list[str] = []
    if field.kind == ENUM or (field.kind == NAMES and field.choices):
        values += list(field.choices)
    if field.kind == BOOL:
        values += ["true", "false"]
    if field.kind == MODULES:
        values.append("all_linear")
    if field.allow_auto:
        values.append("auto")
    return values
