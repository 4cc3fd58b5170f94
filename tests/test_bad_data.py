"""Bad data of every kind, in every file format and every data format (docs/reliability.md): each case is a
located error under `on_bad_rows = error`, and under `on_bad_rows = skip` either the bad rows are counted and left
out (the good ones train) or, when no row can be told from another (an unreadable file), the same located error.

The cases are generated: FILE_FORMATS says how a list of rows is written in each file format, DATA_FORMATS what a
good row of each data format is and which field a bad row breaks, and PROBLEMS how to break it. A new file format,
data format or problem is one entry; a problem returns None where the file or data format cannot express it (the
reason is written in it)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
from plan_cases import data_section

pytest.importorskip("datasets")

from ftc.runtime.data import DataError, prepare  # noqa: E402
from ftc.runtime.data.toy import build_tokenizer  # noqa: E402

BIG = "two " * (17 * 2**20 // 4)  # one field over the 16 MiB limit (each such case costs up to a second)
BAD_UTF8 = "caf\udce9 \udcff"  # surrogate escapes: written as the bytes 0xe9 and 0xff, which are not UTF-8


@dataclass(frozen=True)
class Raw:
    """A row written as these bytes, whatever the file format (a broken JSON line)."""

    data: bytes


# --- data formats: a good row, and the field a bad row breaks --------------------------------------------------


@dataclass(frozen=True)
class DataFormat:
    name: str  # the case id's part
    format: str  # data.format
    good: Callable[[int], dict]  # the i-th good row, as the file holds it
    key: str  # the field the row problems break (missing, null, of another type), as the file names it
    wrong: object  # a value of another type for `key`
    text: Callable[[dict, str], dict]  # the row with its answer (or its only text) replaced
    columns: dict = field(default_factory=dict)  # data.columns
    role: str | None = None  # the key of a message's role, for rows that are conversations

    @property
    def nested(self) -> bool:  # rows hold lists of messages: not in CSV, TSV or text lines
        return self.role is not None


def _with(row: dict, **values) -> dict:
    return {**row, **values}


def _conversation(name: str, role: str, content: str, user: str, assistant: str) -> DataFormat:
    def good(i):
        return {name: [{role: user, content: f"hi {i}"}, {role: assistant, content: f"hello there {i}"}]}

    def text(row, value):
        first, second = row[name]
        return {name: [first, {**second, content: value}]}

    return DataFormat(name="chat" if name == "messages" else "sharegpt", format="chat", good=good, key=name,
                      wrong="hello", text=text, role=role,
                      columns={} if name == "messages" else {"messages": name, "role": role, "content": content})


DATA_FORMATS = [
    DataFormat("text", "text", lambda i: {"text": f"hello world {i}"}, "text", 3,
               lambda r, v: _with(r, text=v)),
    DataFormat("completion", "completion", lambda i: {"prompt": f"two plus {i}?", "completion": f" four {i}"},
               "completion", 3, lambda r, v: _with(r, completion=v)),
    DataFormat("instruction", "instruction",
               lambda i: {"instruction": f"add two and {i}", "input": "two", "output": f"four {i}"},
               "output", 3, lambda r, v: _with(r, output=v)),
    _conversation("messages", "role", "content", "user", "assistant"),
    _conversation("conversations", "from", "value", "human", "gpt"),
    DataFormat("preference", "preference",
               lambda i: {"prompt": f"two plus {i}?", "chosen": f"four {i}", "rejected": f"five {i}"},
               "rejected", 3, lambda r, v: _with(r, rejected=v)),
    DataFormat("unpaired", "unpaired_preference",
               lambda i: {"prompt": f"two plus {i}?", "completion": f"four {i}", "label": i % 2 == 1},
               "label", "yes", lambda r, v: _with(r, completion=v)),
]


# --- file formats: how a list of rows is written ----------------------------------------------------------------


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _json(row) -> bytes:
    return row.data if isinstance(row, Raw) else _bytes(json.dumps(row, ensure_ascii=False))


def write_jsonl(path: Path, rows: list, sample: dict) -> None:
    path.write_bytes(b"".join(_json(r) + b"\n" for r in rows) or b"\n\n")  # no rows: blank lines


def write_json(path: Path, rows: list, sample: dict) -> None:
    path.write_bytes(b"[\n" + b",\n".join(_json(r) for r in rows) + b"\n]")  # row i on line i + 1


def _cell(value) -> bytes:
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, (int, float)):
        return str(value).encode()
    return b'"' + _bytes(value).replace(b'"', b'""') + b'"'


def _delimited(delimiter: str):
    def write(path: Path, rows: list, sample: dict) -> None:
        sep = delimiter.encode()
        header = rows[0] if rows and isinstance(rows[0], dict) else sample
        lines = [sep.join(_cell(k) for k in header)]  # a row's own values, in its order: a row
        lines += [r.data if isinstance(r, Raw) else sep.join(_cell(v) for v in r.values())
                  for r in rows]  # with a field more or less is ragged
        path.write_bytes(b"".join(line + b"\n" for line in lines))
    return write


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
        return True
    except UnicodeEncodeError:  # surrogate escapes: bytes that are not UTF-8
        return False


def _table(rows: list, sample: dict):
    import pyarrow as pa

    if not rows:
        return pa.Table.from_pylist([sample]).slice(0, 0)
    columns = {k: [r.get(k) for r in rows] for k in {k: None for r in rows for k in r}}
    for name, values in columns.items():  # a column with invalid UTF-8 in one value is a column of bytes
        if any(isinstance(v, str) and not _is_text(v) for v in values):
            columns[name] = [_bytes(v) if isinstance(v, str) else v for v in values]
    return pa.table({k: pa.array(v) for k, v in columns.items()})


def write_parquet(path: Path, rows: list, sample: dict) -> None:
    import pyarrow.parquet as pq

    pq.write_table(_table(rows, sample), path)


def write_saved(path: Path, rows: list, sample: dict) -> None:
    import datasets
    from datasets.table import InMemoryTable

    datasets.disable_progress_bars()
    datasets.Dataset(InMemoryTable(_table(rows, sample))).save_to_disk(str(path))


def write_txt(path: Path, rows: list, sample: dict) -> None:
    path.write_bytes(b"".join((r.data if isinstance(r, Raw) else _bytes(r["text"])) + b"\n" for r in rows)
                     or b"\n\n")


@dataclass(frozen=True)
class FileFormat:
    name: str
    suffix: str  # "" for a folder
    write: Callable[[Path, list, dict], None]
    typed: bool = False  # a column holds one type: a value of another type needs a file of its own
    nested: bool = True  # holds lists of messages
    text_only: bool = False  # holds only `text` rows
    json: bool = False  # rows are JSON values (any value, broken JSON)


FILE_FORMATS = [
    FileFormat("jsonl", ".jsonl", write_jsonl, json=True),
    FileFormat("json", ".json", write_json, json=True),
    FileFormat("csv", ".csv", _delimited(","), nested=False),
    FileFormat("tsv", ".tsv", _delimited("\t"), nested=False),
    FileFormat("parquet", ".parquet", write_parquet, typed=True),
    FileFormat("saved", "_saved", write_saved, typed=True),  # datasets.Dataset.save_to_disk
    FileFormat("txt", ".txt", write_txt, nested=False, text_only=True),
]
BYTES = ("jsonl", "json", "csv", "tsv", "txt")  # text files: BOMs, line endings, invalid UTF-8


def fits(ff: FileFormat, df: DataFormat) -> bool:
    return (ff.nested or not df.nested) and (not ff.text_only or df.format == "text")


# --- problems: how to break a row, and what the error says ------------------------------------------------------


@dataclass(frozen=True)
class Case:
    kind: str
    ff: FileFormat
    df: DataFormat
    files: dict  # stem -> rows, or the file's bytes
    where: tuple  # (stem, row): the error's file and row (None for a problem of the whole file)
    message: str  # part of the error's message, and of the skipped row's problem
    skipped: tuple | None  # under skip: (good rows, bad rows), or None when skip gives the same error
    after: Callable[[Path], None] | None = None  # a change to each written file the writer cannot make

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.ff.name}-{self.df.name}"

    def name(self, stem: str) -> str:
        return stem + self.ff.suffix

    def write(self, folder: Path) -> list[str]:
        sample = self.df.good(0)
        for stem, rows in self.files.items():
            if isinstance(rows, bytes):
                (folder / self.name(stem)).write_bytes(rows)
            else:
                self.ff.write(folder / self.name(stem), rows, sample)
            if self.after:
                self.after(folder / self.name(stem))
        return [self.name(stem) for stem in self.files]


def in_a_row(bad, message: str):
    """The second of three rows is bad: located at row 2, and under skip the other two train."""
    return lambda ff, df: ({"a": [df.good(1), bad(df), df.good(2)]}, ("a", 2), message.format(key=df.key), (2, 1))


def in_a_file(bad, message: str):
    """A second file holds the bad row (its column has the bad type): located at row 1 of b, the two rows of a
    train under skip."""
    return lambda ff, df: ({"a": [df.good(1), df.good(2)], "b": [bad(df)]}, ("b", 1), message.format(key=df.key),
                           (2, 1))


def _without(row: dict, key: str) -> dict:
    return {k: v for k, v in row.items() if k != key}


def _renamed(row: dict, key: str) -> dict:
    return {(f"{k}_old" if k == key else k): v for k, v in row.items()}


def _turns(df: DataFormat, change: Callable[[list, str], list]) -> dict:
    """A conversation whose turns are `change(turns, the key of a message's role)`."""
    return {df.key: change(df.good(5)[df.key], df.role)}


def missing_field(ff, df):
    if ff.json:
        return in_a_row(lambda df: _without(df.good(5), df.key), "missing `{key}`")(ff, df)
    if ff.name in ("csv", "tsv") and len(df.good(0)) > 1:
        # a row with a field less is ragged: its columns are unknown (a one-column row without it is a blank line)
        return ({"a": [df.good(1), _without(df.good(5), df.key), df.good(2)]}, ("a", None),
                "field(s), the header has", None)
    return None  # Parquet and saved data sets: a value missing from one row is a null (below); text lines: no fields


def null(ff, df):
    if ff.json or ff.typed:  # CSV, TSV and text lines have no null: an empty field is an empty string
        return in_a_row(lambda df: _with(df.good(5), **{df.key: None}), "missing `{key}`")(ff, df)
    return None


def wrong_type(ff, df):
    message = "`{key}` must be"
    bad = lambda df: _with(df.good(5), **{df.key: df.wrong})  # noqa: E731
    if ff.json:
        return in_a_row(bad, message)(ff, df)
    if ff.typed:
        return in_a_file(bad, message)(ff, df)
    if ff.name in ("csv", "tsv") and isinstance(df.wrong, str):  # CSV has no types: only a label can be wrong
        return in_a_row(bad, message)(ff, df)
    return None


def not_an_object(ff, df):
    return in_a_row(lambda df: [1, 2], "expected a JSON object")(ff, df) if ff.json else None


def unknown_role(ff, df):
    if not df.nested:
        return None
    return in_a_row(lambda df: _turns(df, lambda t, role: [{**t[0], role: "robot"}, t[1]]),
                    "unknown role 'robot'")(ff, df)


def no_assistant_turn(ff, df):
    return in_a_row(lambda df: _turns(df, lambda t, role: t[:1]), "no assistant message")(ff, df) \
        if df.nested else None


def empty_conversation(ff, df):
    return in_a_row(lambda df: {df.key: []}, "`{key}` is empty")(ff, df) if df.nested else None


BIG_CASES = {("parquet", "text"), ("jsonl", "chat"), ("jsonl", "preference")}  # up to a second each


def over_16_mib(ff, df):
    if (ff.name, df.name) not in BIG_CASES:
        return None
    return in_a_row(lambda df: df.text(df.good(5), BIG), "more than 16 MiB")(ff, df)


def invalid_utf8(ff, df):
    # Parquet and saved data sets: a column of bytes (one type per column), so only a top-level text field
    if ff.name in BYTES or ff.typed and not df.nested:
        return in_a_row(lambda df: df.text(df.good(5), BAD_UTF8), "not UTF-8")(ff, df)
    return None


def half_surrogate(ff, df):
    # JSON's `\\ud800` escape is half of a surrogate pair, which is no text; other files hold text as bytes
    bad = lambda df: Raw(json.dumps(df.text(df.good(5), "x \ud800")).encode())  # noqa: E731
    return in_a_row(bad, "half of a surrogate pair")(ff, df) if ff.json else None


DEEP = b"[" * 100_000 + b"]" * 100_000  # deeper than Python's parser goes


def nested_too_deeply(ff, df):
    bad = lambda df: Raw(b'{"%s": %s}' % (df.key.encode(), DEEP))  # noqa: E731
    if ff.name == "jsonl":
        return in_a_row(bad, "nested too deeply")(ff, df)
    if ff.name == "json":  # the document does not parse: no row can be told from another
        return {"a": [df.good(1), bad(df), df.good(2)]}, ("a", None), "nested too deeply", None
    return None


def malformed_json(ff, df):
    broken = lambda df: Raw(_json(df.good(5)).replace(b":", b"", 1))  # noqa: E731
    if ff.name == "jsonl":
        return in_a_row(broken, "invalid JSON")(ff, df)
    if ff.name == "json":  # a document that does not parse has no rows: located at the line it breaks on
        return {"a": [df.good(1), broken(df), df.good(2)]}, ("a", 3), "invalid JSON", None
    return None


def empty_file(ff, df):
    if ff.typed and ff.suffix == "_saved":  # a saved data set is a folder: its emptiest is no rows (below)
        return None
    message = {"csv": "Empty CSV", "tsv": "Empty CSV", "parquet": "cannot read Parquet"}.get(ff.name, "no training")
    return {"a": b""}, ("a", None), message, None


def no_rows(ff, df):
    # blank lines, `[]`, a CSV header, a Parquet schema, a saved data set of no rows
    return {"a": []}, ("a", None), "no training", None


def ragged_row(ff, df):
    if ff.name not in ("csv", "tsv"):
        return None
    return ({"a": [df.good(1), _with(df.good(5), extra="x"), df.good(2)]}, ("a", None),
            "field(s), the header has", None)


def _twin(key: str):
    """Name the column `twin` as `key` too (no row can hold two fields of one name)."""
    def rename(path: Path) -> None:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
            pq.write_table(table.rename_columns([key if n == "twin" else n for n in table.column_names]), path)
        else:
            path.write_bytes(path.read_bytes().replace(b'"twin"', b'"%s"' % key.encode(), 1))
    return rename


def duplicate_column(ff, df):
    # JSON: a repeated key holds the last value (JSON's rule); a saved data set cannot hold two columns of one name
    if ff.name not in ("csv", "tsv", "parquet"):
        return None
    rows = [_with(df.good(1), twin=df.good(1)[df.key]), _with(df.good(2), twin=df.good(2)[df.key])]
    return {"a": rows}, ("a", None), f"more than one column is named `{df.key}`", None, _twin(df.key)


def schema_differs(ff, df):
    if ff.text_only:  # text lines have no columns
        return None
    return ({"a": [df.good(1), df.good(2)], "b": [_renamed(df.good(5), df.key)]}, ("b", None),
            f"needs column `{df.key}`", None)


PROBLEMS = {
    "missing-field": missing_field,
    "null": null,
    "wrong-type": wrong_type,
    "not-an-object": not_an_object,
    "unknown-role": unknown_role,
    "no-assistant-turn": no_assistant_turn,
    "empty-conversation": empty_conversation,
    "over-16-mib": over_16_mib,
    "invalid-utf8": invalid_utf8,
    "half-surrogate": half_surrogate,
    "nested-too-deeply": nested_too_deeply,
    "malformed-json": malformed_json,
    "empty-file": empty_file,
    "no-rows": no_rows,
    "ragged-row": ragged_row,
    "duplicate-column": duplicate_column,
    "schema-differs": schema_differs,
}
# Not tried, because the data cannot hold them: lists of messages in CSV, TSV or text lines; a null or a typed
# value in CSV, TSV or text lines (every field is text; an empty field is the empty string); one value of another
# type inside a Parquet column (a second file holds it); a missing field in Parquet (a null) or in a text line.
# Identical `chosen` and `rejected` are not a bad row: the pair is dropped and counted (test_preference_data.py).

CASES = [Case(kind, ff, df, *made) for kind, problem in PROBLEMS.items() for ff in FILE_FORMATS
         for df in DATA_FORMATS if fits(ff, df) and (made := problem(ff, df)) is not None]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return build_tokenizer(["hello world, two plus two is four"] * 20, tmp_path_factory.mktemp("tok"), vocab_size=300)


def _prepare(tmp_path, tok, names: list[str], df: DataFormat, mode: str):
    spec = data_section(format=df.format, columns=df.columns, max_length=256, on_bad_rows=mode, seed=1, train=names)
    return prepare(spec, tok, base_dir=tmp_path, cache_dir=tmp_path / f"cache-{mode}")


def _assert_located(err: DataError, case: Case) -> None:
    stem, row = case.where
    assert err.file and err.file.endswith(case.name(stem)), (case.id, str(err))
    assert err.row == row and case.message in err.message, (case.id, str(err))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_data_is_a_located_error_or_a_counted_skip(tmp_path, tok, case):
    names = case.write(tmp_path)
    with pytest.raises(DataError) as info:
        _prepare(tmp_path, tok, names, case.df, "error")
    _assert_located(info.value, case)
    if case.skipped is None:
        with pytest.raises(DataError) as again:
            _prepare(tmp_path, tok, names, case.df, "skip")
        _assert_located(again.value, case)
        return
    report = _prepare(tmp_path, tok, names, case.df, "skip").report
    assert (report.train.rows, report.bad_rows) == case.skipped, case.id
    first = report.bad_row_examples[0]
    assert first.file.endswith(case.name(case.where[0])) and first.row == case.where[1], (case.id, first)
    assert case.message in first.problem, (case.id, first)


# --- read as they are: a BOM, CRLF line endings, extra columns give the plain file's examples -----------------


def _bom(path: Path) -> None:
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())


def _crlf(path: Path) -> None:
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))


FINE_CHANGES = {"bom": (BYTES, _bom), "crlf": (BYTES, _crlf),
                "extra-columns": (("jsonl", "json", "csv", "tsv", "parquet", "saved"), None)}
FINE = [(change, ff, df) for change, (formats, _) in FINE_CHANGES.items() for ff in FILE_FORMATS
        for df in DATA_FORMATS if ff.name in formats and fits(ff, df)]


@pytest.mark.parametrize("change, ff, df", FINE, ids=[f"{c}-{ff.name}-{df.name}" for c, ff, df in FINE])
def test_boms_line_endings_and_extra_columns_read_as_plain_files(tmp_path, tok, change, ff, df):
    rows = [df.good(i) for i in (1, 2, 3)]
    ff.write(tmp_path / f"plain{ff.suffix}", rows, rows[0])
    plain = _prepare(tmp_path, tok, [f"plain{ff.suffix}"], df, "error")
    name = f"a{ff.suffix}"
    if change == "extra-columns":
        rows = [_with(r, extra=i) for i, r in enumerate(rows)]
    ff.write(tmp_path / name, rows, rows[0])
    if FINE_CHANGES[change][1]:
        FINE_CHANGES[change][1](tmp_path / name)
    got = _prepare(tmp_path, tok, [name], df, "error")
    assert (got.report.train.rows, got.report.bad_rows) == (3, 0), (change, ff.name, df.name)
    assert got.report.train.tokens == plain.report.train.tokens, (change, ff.name, df.name)
    assert got.train[:] == plain.train[:], (change, ff.name, df.name)
