"""The four row formats: which columns they need, how a row is checked, and its content for hashing.

Rows are normalised to canonical column names (`columns` in the spec maps them) and canonical
Arrow types; checks run vectorised over whole columns with pyarrow compute, and produce one
problem string per bad row (null when the row is fine).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import DataError
from .sources import PROBLEM, ReadResult, Source

FIELDS = {
    "text": ("text",),
    "completion": ("prompt", "completion"),
    "instruction": ("instruction", "input", "output"),
    "chat": ("messages",),
}
OPTIONAL = {"input"}
ROLES = ("system", "user", "assistant", "tool")
ROLE_ALIASES = {"human": "user", "gpt": "assistant", "bot": "assistant", "model": "assistant"}
MESSAGE_TYPE = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))


@dataclass(frozen=True)
class FormatSpec:
    """A format with the user's column names resolved."""

    name: str
    column_map: dict
    train_on: str = "completions"
    role_names: dict = field(default_factory=dict)  # the data's name for a role -> the role (`roles` block)

    @property
    def aliases(self) -> dict[str, str]:
        return {**ROLE_ALIASES, **self.role_names}

    def column(self, field: str) -> str:
        return self.column_map.get(field, field)

    @property
    def role_key(self) -> str:
        return self.column_map.get("role", "role")

    @property
    def content_key(self) -> str:
        return self.column_map.get("content", "content")

    def schema(self) -> pa.Schema:
        return pa.schema([(f, MESSAGE_TYPE if f == "messages" else pa.string()) for f in FIELDS[self.name]])


class _Fallback(Exception):
    """The Arrow column does not have the expected type: check row by row for a precise message."""


def _missing_columns(fmt: FormatSpec, names: list[str], source: Source) -> None:
    missing = {f: fmt.column(f) for f in FIELDS[fmt.name] if f not in OPTIONAL and fmt.column(f) not in names}
    if missing:
        raise missing_columns(fmt.name, missing, names, source)


def missing_columns(fmt_name: str, missing: dict[str, str], names, source: Source) -> DataError:
    """A file without columns its format needs (field -> the column looked for): no row of it can be read,
    so it is an error of the file in both `on_bad_rows` modes; the hint maps the columns."""
    wanted = ", ".join(f"`{c}`" for c in missing.values())
    found = ", ".join(f"`{n}`" for n in names if not n.startswith("__")) or "none"
    example = "; ".join(f'{f} = "..."' for f in missing)
    return DataError(f"format {fmt_name} needs column {wanted}; the file has {found}", file=source.display,
                     help=f"map your column names in the data block: `columns {{ {example} }}`")


def _string_column(col: pa.ChunkedArray, allow_cast: bool) -> pa.ChunkedArray:
    t = col.type
    if pa.types.is_string(t) or pa.types.is_null(t):
        return col.cast(pa.string())
    if pa.types.is_large_string(t):
        return col.cast(pa.string())
    if allow_cast and (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
        return col.cast(pa.string())
    raise _Fallback


def _messages_column(col: pa.ChunkedArray, fmt: FormatSpec) -> pa.Array:
    t = col.type
    if not (pa.types.is_list(t) or pa.types.is_large_list(t)) or not pa.types.is_struct(t.value_type):
        raise _Fallback
    struct_t = t.value_type
    names = [struct_t.field(i).name for i in range(struct_t.num_fields)]
    if fmt.role_key not in names or fmt.content_key not in names:
        raise _Fallback
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if isinstance(arr, pa.ChunkedArray):
        arr = pa.concat_arrays(arr.chunks) if arr.num_chunks else pa.array([], t)
    offsets = arr.offsets
    base = offsets[0].as_py() if len(offsets) else 0
    values = arr.values.slice(base, offsets[-1].as_py() - base) if len(offsets) else arr.values
    role = values.field(names.index(fmt.role_key))
    content = values.field(names.index(fmt.content_key))
    if not pa.types.is_string(role.type) and not pa.types.is_large_string(role.type):
        raise _Fallback
    if not (pa.types.is_string(content.type) or pa.types.is_large_string(content.type) or pa.types.is_null(content.type)):
        raise _Fallback
    role = role.cast(pa.string())
    content = content.cast(pa.string())
    aliases = fmt.aliases  # one pass: a role name is never mapped twice
    mapped = pc.take(pa.array(list(aliases.values()), pa.string()),
                     pc.index_in(role, value_set=pa.array(list(aliases), pa.string())))
    role = pc.coalesce(mapped, role)
    role = pc.utf8_lower(role) if len(role) else role
    struct = pa.StructArray.from_arrays([role, content], names=["role", "content"])
    offsets = pc.subtract(offsets, base).cast(pa.int32()) if base else offsets.cast(pa.int32())
    return pa.ListArray.from_arrays(offsets, struct, mask=arr.is_null() if arr.null_count else None)


def normalize(read: ReadResult, fmt: FormatSpec, source: Source) -> tuple[pa.Table, pa.Array]:
    """Canonical table for one source and its per-row problems (null = fine)."""
    if read.table is not None:
        names = read.table.column_names
        _missing_columns(fmt, names, source)
        try:
            cols = {}
            for f in FIELDS[fmt.name]:
                name = fmt.column(f)
                if name not in names:
                    cols[f] = pa.nulls(read.table.num_rows, pa.string())
                elif f == "messages":
                    cols[f] = _messages_column(read.table.column(name), fmt)
                else:
                    cols[f] = _string_column(read.table.column(name), allow_cast=source.kind in ("csv", "txt"))
            table = pa.table(cols, schema=fmt.schema())
            return table, pa.nulls(table.num_rows, pa.string())
        except _Fallback:
            rows = read.table.to_pylist()
            return _normalize_python(rows, [None] * len(rows), fmt, source)
    return _normalize_python(read.rows, read.problems, fmt, source)


def _kind(value) -> str:
    return {dict: "object", list: "list", int: "number", float: "number", bool: "boolean"}.get(type(value), type(value).__name__)


def _normalize_python(rows: list, problems: list, fmt: FormatSpec, source: Source) -> tuple[pa.Table, pa.Array]:
    """Row-by-row typing for data the vectorised path could not take; every problem is precise."""
    names: set[str] = set()
    for r in rows[:1000]:
        if isinstance(r, dict):
            names.update(r)
    if names:
        _missing_columns(fmt, sorted(names), source)
    fields = FIELDS[fmt.name]
    cols: dict[str, list] = {f: [] for f in fields}
    out_problems = []
    for row, problem in zip(rows, problems):
        values = {}
        if problem is None:
            for f in fields:
                name = fmt.column(f)
                v = row.get(name)
                if f == "messages":
                    if v is None:
                        problem = f"missing `{name}`"
                        break
                    if not isinstance(v, list):
                        problem = f"`{name}` must be a list of messages, found {_kind(v)}"
                        break
                    msgs = []
                    for i, m in enumerate(v, start=1):
                        if not isinstance(m, dict):
                            problem = f"message {i} must be an object with `{fmt.role_key}` and `{fmt.content_key}`"
                            break
                        role, content = m.get(fmt.role_key), m.get(fmt.content_key)
                        if not isinstance(role, str):
                            problem = f"message {i} has no `{fmt.role_key}`"
                            break
                        if content is not None and not isinstance(content, str):
                            problem = f"message {i}: `{fmt.content_key}` must be a string, found {_kind(content)}"
                            break
                        role = fmt.aliases.get(role, role).lower()
                        msgs.append({"role": role, "content": content})
                    values[f] = msgs
                else:
                    if isinstance(v, bytes):  # a CSV or Parquet column that is not all valid UTF-8
                        try:
                            v = v.decode("utf-8")
                        except UnicodeDecodeError as exc:
                            problem = f"`{name}` is not UTF-8 text ({exc.reason} at byte {exc.start})"
                            break
                    if v is not None and not isinstance(v, str):
                        problem = f"`{name}` must be a string, found {_kind(v)}"
                        break
                    values[f] = v
                if problem:
                    break
        out_problems.append(problem)
        for f in fields:
            cols[f].append(None if problem else values.get(f))
    table = pa.table({f: pa.array(cols[f], type=fmt.schema().field(f).type) for f in fields}, schema=fmt.schema())
    return table, pa.array(out_problems, pa.string())


# --- vectorised checks ---------------------------------------------------------------------------


def _set(problem: pa.Array, cond, text: str) -> pa.Array:
    cond = pc.fill_null(cond, False)
    return pc.if_else(pc.and_(cond, pc.is_null(problem)), pa.scalar(text, pa.string()), problem)


def check(table: pa.Table, problems: pa.Array, fmt: FormatSpec) -> pa.Array:
    """Add the problems of typed rows: missing or empty fields, unknown roles, nothing to train on."""
    problem = problems
    n = table.num_rows
    if n == 0:
        return problem
    for f in FIELDS[fmt.name]:
        col = table.column(f).combine_chunks()
        name = fmt.column(f)
        if f == "messages":
            problem = _check_messages(col, problem, fmt)
            continue
        if f in OPTIONAL:
            continue
        problem = _set(problem, pc.is_null(col), f"missing `{name}`")
        problem = _set(problem, pc.greater(pc.binary_length(col), MAX_ROW_BYTES), too_big(name))
        empty = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(col)), 0)
        problem = _set(problem, empty, f"`{name}` is empty")
    return problem


MAX_ROW_BYTES = 16 << 20  # one field of one row; larger is refused before any tokenizing (docs/data.md)


def too_big(name: str) -> str:
    return f"`{name}` holds more than {MAX_ROW_BYTES >> 20} MiB of text; split the row or shorten it"


def _check_messages(col: pa.Array, problem: pa.Array, fmt: FormatSpec) -> pa.Array:
    name = fmt.column("messages")
    n = len(col)
    problem = _set(problem, pc.is_null(col), f"missing `{name}`")
    problem = _set(problem, pc.equal(pc.list_value_length(col), 0), f"`{name}` is empty")
    flat = pc.list_flatten(col)
    if len(flat) == 0:
        return problem
    parent = pc.list_parent_indices(col).to_numpy()
    sizes = np.bincount(parent, weights=pc.fill_null(pc.binary_length(flat.field("content")), 0).to_numpy(),
                        minlength=n)
    problem = _set(problem, pa.array(sizes > MAX_ROW_BYTES), too_big(name))
    starts = col.offsets.to_numpy()[:-1] - col.offsets[0].as_py()
    role = flat.field("role")
    content = flat.field("content")
    bad_role = ~pc.fill_null(pc.is_in(role, pa.array(ROLES)), False).to_numpy(zero_copy_only=False)
    no_content = pc.is_null(content).to_numpy(zero_copy_only=False)
    is_asst = pc.fill_null(pc.equal(role, "assistant"), False).to_numpy(zero_copy_only=False)
    empty_asst = is_asst & pc.fill_null(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(content)), 0),
                                        True).to_numpy(zero_copy_only=False)
    texts = np.array(problem.to_pylist(), dtype=object) if (bad_role.any() or no_content.any() or empty_asst.any()) else None
    if texts is not None:
        roles = role.to_pylist()
        for mask, template in ((bad_role, "message {k} has unknown role {r!r} (use {roles})"),
                               (no_content, "message {k} has no `" + fmt.content_key + "`"),
                               (empty_asst, "message {k} (assistant) is empty")):
            pos = np.nonzero(mask)[0]
            rows, first = np.unique(parent[pos], return_index=True)
            for r, p in zip(rows, pos[first]):
                if texts[r] is None:
                    texts[r] = template.format(k=int(p - starts[r] + 1), r=roles[p], roles=", ".join(ROLES))
        problem = pa.array(texts.tolist(), pa.string())
    if fmt.train_on == "completions":
        count = np.bincount(parent[is_asst], minlength=n)
        problem = _set(problem, pa.array(count == 0), "no assistant message to train on")
    return problem


# --- content for hashing -------------------------------------------------------------------------


def content(table: pa.Table, fmt: FormatSpec) -> pa.Array:
    """One normalised string per row (lower case, white space collapsed): what dedup and split hash."""
    sep = "\x1f"
    if fmt.name == "chat":
        col = table.column("messages").combine_chunks()
        flat = pc.list_flatten(col)
        joined = pc.binary_join_element_wise(flat.field("role"), pc.fill_null(flat.field("content"), ""), "\x1e")
        offsets = pc.subtract(col.offsets, col.offsets[0]).cast(pa.int32())
        text = pc.binary_join(pa.ListArray.from_arrays(offsets, joined), sep)
    else:
        parts = [pc.fill_null(table.column(f).combine_chunks(), "") for f in FIELDS[fmt.name]]
        text = parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, sep)
    # split + join collapses white space runs; a regex replace is several times slower on long text
    text = pc.binary_join(pc.utf8_split_whitespace(pc.utf8_lower(text)), " ")
    return pc.utf8_trim_whitespace(text)
