"""Bad data of every kind, in every file format (docs/reliability.md): each case is a located error under
`on_bad_rows = error`, and under `on_bad_rows = skip` either the bad rows are counted and left out (the good
ones train) or, when no row can be told from another (an unreadable file), the same located error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from plan_cases import data_section

pytest.importorskip("datasets")

from ftc.runtime.data import DataError, prepare  # noqa: E402
from ftc.runtime.data.toy import build_tokenizer  # noqa: E402

G = {"prompt": "two plus two?", "completion": " four"}
CHAT = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
BIG = "two " * (50 * 2**20 // 4)  # a 50 MB field


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return build_tokenizer(["hello world, two plus two is four"] * 20, tmp_path_factory.mktemp("tok"), vocab_size=300)


def lines(*rows) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows)


def parquet(path: Path, columns: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns), path)


def _write(folder: Path, files: dict) -> list[str]:
    for name, data in files.items():
        if isinstance(data, dict):
            parquet(folder / name, data)
        else:
            (folder / name).write_bytes(data)
    return list(files)


# kind, files, format, (file, row) of the error or (file, None) for a file-level one, message part,
# under skip: (good rows, bad rows counted), or None when skip gives the same located error
CASES = [
    ("malformed JSON line", {"a.jsonl": lines(G, b'{"prompt": "x", "completion": ', G)}, "completion",
     ("a.jsonl", 2), "invalid JSON", (2, 1)),
    ("malformed JSON document", {"a.json": b'[{"prompt": "a", "completion": "b"},'}, "completion",
     ("a.json", 1), "invalid JSON", None),
    ("missing column (row)", {"a.jsonl": lines(G, {"prompt": "x"}, G)}, "completion",
     ("a.jsonl", 2), "missing `completion`", (2, 1)),
    ("missing column (file)", {"a.csv": b"prompt\nx\n"}, "completion", ("a.csv", None), "needs column", None),
    ("missing column (parquet)", {"a.parquet": {"prompt": ["a"], "answer": ["b"]}}, "completion",
     ("a.parquet", None), "needs column `completion`", None),
    ("missing fields in a CSV row", {"a.csv": b'prompt,completion\n"a","b"\n"c"\n'}, "completion",
     ("a.csv", None), "has 1 field(s), the header has 2", None),
    ("wrong type (jsonl)", {"a.jsonl": lines(G, {"prompt": ["x"], "completion": "y"}, G)}, "completion",
     ("a.jsonl", 2), "`prompt` must be a string, found list", (2, 1)),
    ("wrong type (json)", {"a.json": json.dumps([G, {"prompt": 3, "completion": "b"}]).encode()}, "completion",
     ("a.json", 2), "found number", (1, 1)),
    ("wrong type (parquet)", {"a.parquet": {"prompt": ["a"], "completion": ["b"]},
                              "b.parquet": {"prompt": [1, 2], "completion": ["x", "y"]}}, "completion",
     ("b.parquet", 1), "found number", (1, 2)),
    ("null value (parquet)", {"a.parquet": {"prompt": ["a", None], "completion": ["x", "y"]}}, "completion",
     ("a.parquet", 2), "missing `prompt`", (1, 1)),
    ("not an object", {"a.jsonl": lines(G, b"[1, 2]", G)}, "completion",
     ("a.jsonl", 2), "expected a JSON object", (2, 1)),
    ("empty file (jsonl)", {"a.jsonl": b""}, "completion", ("a.jsonl", None), "no training example", None),
    ("empty file (csv)", {"a.csv": b""}, "completion", ("a.csv", None), "Empty CSV", None),
    ("empty file (json)", {"a.json": b"[]"}, "completion", ("a.json", None), "no training example", None),
    ("empty file (parquet)", {"a.parquet": {"prompt": [], "completion": []}}, "completion",
     ("a.parquet", None), "no training example", None),
    ("empty file (txt)", {"a.txt": b"\n\n"}, "text", ("a.txt", None), "no training example", None),
    ("50 MB row (jsonl)", {"a.jsonl": lines(G, {"prompt": "x", "completion": BIG}, G)}, "completion",
     ("a.jsonl", 2), "more than 16 MiB", (2, 1)),
    ("50 MB row (chat)", {"a.jsonl": lines(CHAT, {"messages": [{"role": "user", "content": BIG}]}, CHAT)}, "chat",
     ("a.jsonl", 2), "more than 16 MiB", (2, 1)),
    ("invalid UTF-8 (jsonl)", {"a.jsonl": lines(G, b'{"prompt": "\xff\xfe", "completion": "b"}', G)},
     "completion", ("a.jsonl", 2), "not UTF-8", (2, 1)),
    ("invalid UTF-8 (csv)", {"a.csv": b'prompt,completion\n"a","b"\n"\xff","c"\n'}, "completion",
     ("a.csv", 2), "not UTF-8", (1, 1)),
    ("invalid UTF-8 (txt)", {"a.txt": b"hello\n\xff\xfeworld\nok\n"}, "text", ("a.txt", 2), "not UTF-8", (2, 1)),
    ("unknown chat role", {"a.jsonl": lines(CHAT, {"messages": [{"role": "robot", "content": "x"},
                                                                {"role": "assistant", "content": "y"}]})},
     "chat", ("a.jsonl", 2), "unknown role 'robot'", (1, 1)),
    ("no assistant turn", {"a.jsonl": lines(CHAT, {"messages": [{"role": "user", "content": "x"}]})}, "chat",
     ("a.jsonl", 2), "no assistant message", (1, 1)),
    ("parquet schema differs per file", {"a.parquet": {"prompt": ["a"], "completion": ["b"]},
                                         "b.parquet": {"question": ["a"], "completion": ["b"]}}, "completion",
     ("b.parquet", None), "needs column `prompt`", None),
]

# read as they are: the same rows as the plain file
FINE = [
    ("BOM (jsonl)", {"a.jsonl": b"\xef\xbb\xbf" + lines(G, G)}, "completion", 2),
    ("BOM (csv)", {"a.csv": b'\xef\xbb\xbfprompt,completion\n"a","b"\n'}, "completion", 1),
    ("BOM (json)", {"a.json": b"\xef\xbb\xbf" + json.dumps([G]).encode()}, "completion", 1),
    ("BOM (txt)", {"a.txt": b"\xef\xbb\xbfhello\nworld\n"}, "text", 2),
    ("CRLF (jsonl)", {"a.jsonl": lines(G, G).replace(b"\n", b"\r\n")}, "completion", 2),
    ("CRLF (csv)", {"a.csv": b'prompt,completion\r\n"a","b"\r\n"c","d"\r\n'}, "completion", 2),
    ("CRLF (txt)", {"a.txt": b"hello\r\nworld\r\n"}, "text", 2),
    ("extra columns (jsonl)", {"a.jsonl": lines(G, {**G, "extra": 1})}, "completion", 2),
    ("extra columns (csv)", {"a.csv": b'prompt,completion,extra\n"a","b",1\n'}, "completion", 1),
    ("extra columns (parquet)", {"a.parquet": {"prompt": ["a"], "completion": ["b"], "extra": [1]}},
     "completion", 1),
]


def _prepare(tmp_path, tok, files, fmt, mode):
    spec = data_section(format=fmt, max_length=64, on_bad_rows=mode, seed=1, train=files)
    return prepare(spec, tok, base_dir=tmp_path, cache_dir=tmp_path / f"cache-{mode}")


@pytest.mark.parametrize("kind, files, fmt, where, message, skipped", CASES, ids=[c[0] for c in CASES])
def test_bad_data_is_a_located_error_or_a_counted_skip(tmp_path, tok, kind, files, fmt, where, message, skipped):
    names = _write(tmp_path, files)
    with pytest.raises(DataError) as info:
        _prepare(tmp_path, tok, names, fmt, "error")
    err = info.value
    assert err.file and err.file.endswith(where[0]), (kind, str(err))
    assert err.row == where[1] and message in err.message, (kind, str(err))
    if skipped is None:
        with pytest.raises(DataError) as again:
            _prepare(tmp_path, tok, names, fmt, "skip")
        assert again.value.file.endswith(where[0]), (kind, str(again.value))
        return
    report = _prepare(tmp_path, tok, names, fmt, "skip").report
    assert (report.train.rows, report.bad_rows) == skipped, kind
    assert any(message in b.problem for b in report.bad_row_examples), (kind, report.bad_row_examples)


@pytest.mark.parametrize("kind, files, fmt, rows", FINE, ids=[c[0] for c in FINE])
def test_boms_line_endings_and_extra_columns_read_as_plain_files(tmp_path, tok, kind, files, fmt, rows):
    report = _prepare(tmp_path, tok, _write(tmp_path, files), fmt, "error").report
    assert (report.train.rows, report.bad_rows) == (rows, 0), kind
