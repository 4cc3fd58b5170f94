"""Where rows come from: files, folders, globs, saved data sets and hub ids, read into Arrow.

Every row keeps its origin (`__src` = index into the file list, `__row` = 1-based line or row
number) so that any later stage can name the file and line of a bad row.
Files are read with pyarrow's vectorised readers; a file those readers reject (broken JSON,
mixed types) is re-read line by line, so the error can say exactly which line is wrong.
"""

from __future__ import annotations

import glob as _glob
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from .errors import DataError

SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "csv",
            ".parquet": "parquet", ".txt": "txt"}
UNIT = {"jsonl": "line", "json": "row", "csv": "row", "parquet": "row", "txt": "line", "disk": "row", "hub": "row"}
SRC, ROW, PROBLEM = "__src", "__row", "__problem"


@dataclass(frozen=True)
class Source:
    """One resolved input: a file, a saved data set folder, or a hub id."""

    kind: str  # jsonl | json | csv | parquet | txt | disk | hub
    path: str  # absolute path, or the hub spec
    display: str  # what error messages show

    @property
    def unit(self) -> str:
        return UNIT[self.kind]


@dataclass(frozen=True)
class RawTable:
    """Rows of one split as Arrow, with origin columns; `sources[i]` explains `__src == i`."""

    table: pa.Table
    sources: tuple[Source, ...]


def _display(path: Path) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return rel if not rel.startswith("../../..") else str(path)


def _is_saved_dataset(folder: Path) -> bool:
    return any((folder / n).exists() for n in ("dataset_info.json", "state.json", "dataset_dict.json"))


def resolve(entries: tuple[str, ...], base_dir: Path, *, what: str = "train") -> tuple[Source, ...]:
    """Expand globs and folders into an ordered, duplicate-free list of sources."""
    out: list[Source] = []
    for entry in entries:
        if entry.startswith("hf:"):
            out.append(Source("hub", entry, entry))
            continue
        # normalised lexically: the plan's folder may not exist yet (`ftc data RECIPE` compiles in memory)
        pattern = Path(os.path.normpath(entry if Path(entry).is_absolute() else base_dir / entry))
        if any(ch in entry for ch in "*?["):
            matches = sorted(Path(p) for p in _glob.glob(str(pattern), recursive=True))
            matches = [m for m in matches if m.is_dir() and _is_saved_dataset(m) or m.suffix.lower() in SUFFIXES]
            if not matches:
                raise DataError(f"data.{what}: the pattern {entry!r} matches no data file",
                                help=f"patterns are relative to {_display(base_dir)}")
            paths = matches
        else:
            if not pattern.exists():
                raise DataError(f"data.{what}: {entry!r} does not exist", file=_display(pattern),
                                help=f"paths are relative to {_display(base_dir)}")
            paths = [pattern]
        for p in paths:
            p = p.resolve()
            if p.is_dir():
                if _is_saved_dataset(p):
                    out.append(Source("disk", str(p), _display(p)))
                    continue
                files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SUFFIXES)
                if not files:
                    raise DataError(f"data.{what}: the folder holds no data file "
                                    f"({', '.join(sorted(SUFFIXES))})", file=_display(p))
                out.extend(Source(SUFFIXES[f.suffix.lower()], str(f.resolve()), _display(f)) for f in files)
            else:
                kind = SUFFIXES.get(p.suffix.lower())
                if kind is None:
                    raise DataError(f"unsupported file type {p.suffix!r} "
                                    f"(use {', '.join(sorted(SUFFIXES))} or a saved data set folder)",
                                    file=_display(p))
                out.append(Source(kind, str(p), _display(p)))
    seen, unique = set(), []
    for s in out:
        if s.path not in seen:
            seen.add(s.path)
            unique.append(s)
    return tuple(unique)


# --- readers: each returns (table without origin columns, row numbers, problems or None) -------------


def _nonblank_lines(block: bytes, first: int):
    """Numbers of the non-blank lines of `block`, whose first line is line `first` of the file."""
    import numpy as np

    lines = block.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    blanks = [i for i, line in enumerate(lines) if not line or line.isspace()]
    numbers = np.arange(first, first + len(lines), dtype=np.int64)
    return (np.delete(numbers, blanks) if blanks else numbers), first + len(lines)


JSONL_BLOCK = 4 << 20  # bytes parsed at once: bounds the parser's working memory


@dataclass(frozen=True)
class ReadResult:
    """A source's rows: an Arrow table (fast path) or Python rows with per-row problems (slow path)."""

    numbers: list
    table: pa.Table | None = None
    rows: list | None = None
    problems: list | None = None


def _rows_from_python(rows: list, numbers: list[int], problems: list) -> ReadResult:
    return ReadResult(numbers=numbers, rows=rows, problems=problems)


def _json_problem(exc: Exception) -> str:
    """json's message with the column it stopped at ("Expecting value at column 1")."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    msg, column = getattr(exc, "msg", None), getattr(exc, "colno", None)
    if msg is None or column is None:
        return str(exc)
    return f"{msg} column {column}" if msg.endswith(" at") else f"{msg} at column {column}"


def _read_jsonl_slow(data: bytes, first: int = 1) -> ReadResult:
    rows, numbers, problems = [], [], []
    for i, line in enumerate(data.split(b"\n"), start=first):
        if not line.strip():
            continue
        numbers.append(i)
        try:
            value = json.loads(line)
        except UnicodeDecodeError as exc:
            rows.append(None)
            problems.append(f"not UTF-8 text ({exc.reason} at byte {exc.start})")
            continue
        except (ValueError, RecursionError) as exc:
            rows.append(None)
            problems.append(f"invalid JSON: {_json_problem(exc)}")
            continue
        if not isinstance(value, dict):
            rows.append(None)
            problems.append(f"expected a JSON object, found {type(value).__name__}")
            continue
        problem = _not_utf8(value) if _escapes_surrogates(line) else None
        rows.append(None if problem else value)
        problems.append(problem)
    return _rows_from_python(rows, numbers, problems)


def _read_jsonl(source: Source):
    """JSON lines, parsed block by block (whole lines per block) with pyarrow; a block the vectorised
    parser rejects is re-read line by line to locate the problem."""
    import pyarrow.json as pajson

    first = 1
    with open(source.path, "rb") as f:
        while True:
            block = f.read(JSONL_BLOCK)
            if not block:
                return
            block += f.readline()
            numbers, next_first = _nonblank_lines(block, first)
            if len(numbers):
                try:
                    table = pajson.read_json(pa.BufferReader(block),
                                             read_options=pajson.ReadOptions(block_size=len(block) + 1))
                    table.validate(full=True)  # the parser lets invalid UTF-8 inside strings through
                    ok = table.num_rows == len(numbers)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    ok = False
                yield ReadResult(numbers=numbers, table=table) if ok else _read_jsonl_slow(block, first)
            first = next_first


BOM = b"\xef\xbb\xbf"


def _escapes_surrogates(data: bytes) -> bool:
    """Whether JSON text may escape half of a surrogate pair (`\\ud800`), which is no text."""
    return b"\\ud" in data or b"\\uD" in data


def _not_utf8(value) -> str | None:
    """Why a parsed JSON value holds no valid text: bytes that were not UTF-8 (read as surrogate escapes), or
    an escaped half of a surrogate pair; None when it holds none."""
    stack = [value]
    while stack:  # not recursive: the value may nest as deep as the parser allows
        v = stack.pop()
        if isinstance(v, str):
            try:
                v.encode("utf-8", "surrogateescape").decode("utf-8")
            except UnicodeEncodeError as exc:
                half = f"\\u{ord(v[exc.start]):04x}"
                return f"not UTF-8 text (half of a surrogate pair, {half}, at character {exc.start})"
            except UnicodeDecodeError as exc:
                return f"not UTF-8 text ({exc.reason} at byte {exc.start})"
        elif isinstance(v, dict):
            stack += [*v, *v.values()]
        elif isinstance(v, list):
            stack += v
    return None


def _parse_json(data: bytes):
    """The document's value, and whether some of its text may not be text (bytes that are not UTF-8, an escaped
    half of a surrogate pair): then each row is checked, and those holding such text are bad."""
    try:
        try:
            return json.loads(data), _escapes_surrogates(data)
        except UnicodeDecodeError:
            return json.loads(data.removeprefix(BOM).decode("utf-8", "surrogateescape")), True
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _read_json(source: Source):
    data = Path(source.path).read_bytes()
    try:
        value, check_text = _parse_json(data)
    except ValueError as exc:
        if data.removeprefix(BOM).lstrip().startswith(b"["):  # a document that does not parse has no rows
            raise DataError(f"invalid JSON: {_json_problem(exc)}", file=source.display,
                            row=getattr(exc, "lineno", None), unit="line") from None
        return list(_read_jsonl(source))  # a .json file that holds JSON lines
    if isinstance(value, dict):
        lists = [v for v in value.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise DataError("expected a JSON array of objects (or an object holding one array)", file=source.display)
        value = lists[0]
    if not isinstance(value, list):
        raise DataError("expected a JSON array of objects", file=source.display)
    problems = [f"expected a JSON object, found {type(r).__name__}" if not isinstance(r, dict)
                else _not_utf8(r) if check_text else None for r in value]
    return _rows_from_python([r if p is None else None for r, p in zip(value, problems)],
                             list(range(1, len(value) + 1)), problems)


def _read_csv(source: Source):
    import pyarrow.csv as pacsv

    ragged = []  # rows with another number of fields than the header: the reader cannot number them

    def on_ragged(row):
        ragged.append(row)
        return "skip"

    parse = pacsv.ParseOptions(delimiter="\t" if source.path.lower().endswith(".tsv") else ",",
                               newlines_in_values=True, invalid_row_handler=on_ragged)
    try:
        table = pacsv.read_csv(source.path, parse_options=parse,
                               convert_options=pacsv.ConvertOptions(strings_can_be_null=False))
    except pa.ArrowInvalid as exc:
        raise DataError(f"cannot read CSV: {exc}", file=source.display) from None
    if ragged:
        row = ragged[0]
        raise DataError(f"the row {row.text[:80]!r} has {row.actual_columns} field(s), the header has "
                        f"{row.expected_columns} ({len(ragged)} such row(s))", file=source.display,
                        help="quote values that hold the delimiter; on_bad_rows cannot skip a row whose "
                             "columns are unknown")
    return ReadResult(numbers=list(range(1, table.num_rows + 1)), table=table)


def _read_parquet(source: Source):
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(source.path)
    except (pa.ArrowInvalid, OSError) as exc:
        try:
            _unique_columns(pq.read_schema(source.path).names, source)  # pyarrow's refusal names no column
        except (pa.ArrowInvalid, OSError):
            pass
        raise DataError(f"cannot read Parquet: {exc}", file=source.display) from None
    return ReadResult(numbers=list(range(1, table.num_rows + 1)), table=table)


def _read_txt(source: Source):
    data = Path(source.path).read_bytes().removeprefix(BOM)
    numbers, lines, problems = [], [], []
    for i, line in enumerate(data.split(b"\n"), start=1):
        if line.strip():
            numbers.append(i)
            try:
                lines.append(line.rstrip(b"\r").decode("utf-8"))
                problems.append(None)
            except UnicodeDecodeError as exc:  # this line is bad, not the file
                lines.append(None)
                problems.append(f"not UTF-8 text ({exc.reason} at byte {exc.start})")
    if any(problems):
        return _rows_from_python([{"text": t} if t is not None else None for t in lines], numbers, problems)
    return ReadResult(numbers=numbers, table=pa.table({"text": pa.array(lines, pa.string())}))


def _empty_saved(folder: Path) -> pa.Table | None:
    """A saved data set of no rows, as an empty table: datasets writes no data file for it and cannot load it."""
    import datasets

    try:
        if json.loads((folder / "state.json").read_text())["_data_files"]:
            return None
        features = json.loads((folder / "dataset_info.json").read_text())["features"]
        return datasets.Features.from_dict(features).arrow_schema.empty_table()
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _read_disk(source: Source, what: str):
    import datasets

    try:
        ds = datasets.load_from_disk(source.path)
    except Exception as exc:  # datasets raises several types here
        empty = _empty_saved(Path(source.path))
        if empty is not None:
            return ReadResult(numbers=[], table=empty)
        raise DataError(f"cannot load the saved data set: {exc}", file=source.display) from None
    if isinstance(ds, datasets.DatasetDict):
        names = [what] + (["validation", "test"] if what == "eval" else [])
        split = next((n for n in names if n in ds), None)
        if split is None:
            raise DataError(f"the saved data set has splits {sorted(ds)}, none named {what!r}", file=source.display)
        ds = ds[split]
    table = ds.with_format("arrow")[:]  # honours any indices mapping
    return ReadResult(numbers=list(range(1, table.num_rows + 1)), table=table)


def parse_hub_spec(spec: str) -> tuple[str, str | None, str]:
    """`hf:org/name`, `hf:org/name@split`, `hf:org/name:config@split` -> (name, config, split)."""
    body = spec[3:]
    split = "train"
    if "@" in body:
        body, split = body.rsplit("@", 1)
    config = None
    if ":" in body:
        body, config = body.split(":", 1)
    if not body:
        raise DataError(f"{spec!r} names no data set (write hf:org/name[:config][@split])")
    return body, config, split


def _read_hub(source: Source, what: str):
    import datasets

    name, config, split = parse_hub_spec(source.path)
    try:
        ds = datasets.load_dataset(name, config, split=split)
    except Exception as exc:  # offline, unknown id, gated, bad split: all user-facing
        offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1"
        hint = ("the hub is not reachable here (HF_HUB_OFFLINE=1); download the data set once with network "
                "access, or export it to a local file and point data.train at it") if offline else \
            "check the id, the config and the split, and that the network reaches huggingface.co"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot load hub data set {name!r} (split {split!r}): {first}", file=source.display,
                        help=hint) from None
    table = ds.with_format("arrow")[:]
    return ReadResult(numbers=list(range(1, table.num_rows + 1)), table=table)


def read_source(source: Source, what: str):
    """Read one source as blocks of rows (origin columns are added by the caller)."""
    for read in _read_source(source, what):
        _unique_columns(read.table.column_names if read.table is not None else [], source)
        yield read


def _unique_columns(names: list[str], source: Source) -> None:
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:  # which one holds a row's value cannot be told
        raise DataError(f"more than one column is named {', '.join(f'`{n}`' for n in twice)}",
                        file=source.display, help="rename or remove the extra columns")


def _read_source(source: Source, what: str):
    try:
        if source.kind == "jsonl":
            yield from _read_jsonl(source)
            return
        if source.kind == "json":
            result = _read_json(source)
            yield from (result if isinstance(result, list) else [result])
            return
        reader = {"csv": _read_csv, "parquet": _read_parquet, "txt": _read_txt}.get(source.kind)
        if reader is not None:
            yield reader(source)
        elif source.kind == "disk":
            yield _read_disk(source, what)
        else:
            yield _read_hub(source, what)
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", file=source.display) from None
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror or exc}", file=source.display) from None


def file_fingerprint(source: Source) -> str:
    """Content hash of a source, for the cache key: bytes for files, every file of a folder, the id for hubs."""
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    h.update(source.kind.encode())
    if source.kind == "hub":
        h.update(source.path.encode())
        return h.hexdigest()
    root = Path(source.path)
    files = [root] if root.is_file() else sorted(f for f in root.rglob("*") if f.is_file())
    for f in files:
        h.update(str(f.relative_to(root) if f != root else f.name).encode())
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 24):
                h.update(chunk)
    return h.hexdigest()
