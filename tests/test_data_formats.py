"""Sources, formats, column mapping, exact loss-mask positions and located bad-row errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("datasets")

from ftc.runtime.data import DataError, prepare  # noqa: E402
from ftc.runtime.data.toy import build_tokenizer  # noqa: E402

CORPUS = ["hello world, what is two plus two? two plus two is four.",
          "Below is an instruction that describes a task. ### Response: ok",
          "the quick brown fox jumps over the lazy dog"] * 20


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return build_tokenizer(CORPUS, tmp_path_factory.mktemp("tok"), vocab_size=400)


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def run(tmp_path, tok, **data):
    spec = {"format": "chat", "max_length": 512, "packing": False, "dedup": "none", "train_on": "completions",
            "on_bad_rows": "error", "truncation": "right", "seed": 1, **data}
    return prepare(spec, tok, base_dir=tmp_path, cache_dir=tmp_path / "cache")


def enc(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def chat_ids(tok, messages, add_generation_prompt=False):
    out = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=add_generation_prompt)
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def trained_positions(row):
    return [i for i, label in enumerate(row["labels"]) if label != -100]


# --- exact mask positions per format ---------------------------------------------------------------


def test_text_format_trains_everything_but_bos_and_appends_eos(tmp_path, tok):
    write_jsonl(tmp_path / "t.jsonl", [{"text": "hello world"}])
    row = run(tmp_path, tok, train=["t.jsonl"], format="text").train[0]
    body = enc(tok, "hello world")
    assert row["input_ids"] == [tok.bos_token_id] + body + [tok.eos_token_id]
    assert row["labels"] == [-100] + body + [tok.eos_token_id]


def test_completion_masks_the_prompt_exactly(tmp_path, tok):
    write_jsonl(tmp_path / "c.jsonl", [{"prompt": "what is two plus two?", "completion": " four."}])
    row = run(tmp_path, tok, train=["c.jsonl"], format="completion").train[0]
    p, c = enc(tok, "what is two plus two?"), enc(tok, " four.")
    assert row["input_ids"] == [tok.bos_token_id] + p + c + [tok.eos_token_id]
    assert trained_positions(row) == list(range(1 + len(p), 1 + len(p) + len(c) + 1))
    assert row["labels"][1 + len(p):] == c + [tok.eos_token_id]


def test_completion_train_on_all_keeps_the_prompt(tmp_path, tok):
    write_jsonl(tmp_path / "c.jsonl", [{"prompt": "what is two plus two?", "completion": " four."}])
    row = run(tmp_path, tok, train=["c.jsonl"], format="completion", train_on="all").train[0]
    assert trained_positions(row) == list(range(1, len(row["input_ids"])))


def test_instruction_with_and_without_input(tmp_path, tok):
    write_jsonl(tmp_path / "i.jsonl", [{"instruction": "Add.", "input": "2 and 2", "output": "4"},
                                       {"instruction": "Say ok.", "output": "ok"}])
    ds = run(tmp_path, tok, train=["i.jsonl"], format="instruction").train
    for row, prompt, answer in (
        (ds[0], "Below is an instruction that describes a task, paired with an input that provides further context. "
                "Write a response that appropriately completes the request.\n\n### Instruction:\nAdd.\n\n"
                "### Input:\n2 and 2\n\n### Response:\n", "4"),
        (ds[1], "Below is an instruction that describes a task. Write a response that appropriately completes the "
                "request.\n\n### Instruction:\nSay ok.\n\n### Response:\n", "ok"),
    ):
        p, a = enc(tok, prompt), enc(tok, answer)
        assert row["input_ids"] == [tok.bos_token_id] + p + a + [tok.eos_token_id]
        assert trained_positions(row) == list(range(1 + len(p), len(row["input_ids"])))


def test_chat_trains_only_assistant_turns_with_their_end_of_turn(tmp_path, tok):
    msgs = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "two plus two?"},
            {"role": "assistant", "content": "four"}, {"role": "user", "content": "and hello?"},
            {"role": "assistant", "content": "world"}]
    write_jsonl(tmp_path / "m.jsonl", [{"messages": msgs}])
    row = run(tmp_path, tok, train=["m.jsonl"]).train[0]
    assert row["input_ids"] == chat_ids(tok, msgs)
    # assistant turn k spans from the end of the prompt with generation header to the end of the turn
    spans = []
    for k in (2, 4):
        start = len(chat_ids(tok, msgs[:k], add_generation_prompt=True))
        end = len(chat_ids(tok, msgs[:k + 1]))
        spans += list(range(start, end))
    assert trained_positions(row) == spans
    end_id = tok.convert_tokens_to_ids("<|end|>")
    trained = [row["input_ids"][i] for i in spans]
    assert trained.count(end_id) == 2
    assert tok.decode(trained) == "four<|end|>\nworld<|end|>\n"


def test_column_mapping_and_sharegpt_roles(tmp_path, tok):
    write_jsonl(tmp_path / "s.jsonl", [{"conversations": [{"from": "human", "value": "hello"},
                                                          {"from": "gpt", "value": "world"}]}])
    row = run(tmp_path, tok, train=["s.jsonl"],
              columns={"messages": "conversations", "role": "from", "content": "value"}).train[0]
    msgs = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "world"}]
    assert row["input_ids"] == chat_ids(tok, msgs)
    write_jsonl(tmp_path / "q.jsonl", [{"question": "two plus two?", "answer": " four"}])
    row = run(tmp_path, tok, train=["q.jsonl"], format="completion",
              columns={"prompt": "question", "completion": "answer"}).train[0]
    assert row["labels"][-2:] == enc(tok, " four")[-1:] + [tok.eos_token_id]


# --- sources -------------------------------------------------------------------------------------


def test_every_source_kind_reads_the_same_rows(tmp_path, tok):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"prompt": f"question {i}?", "completion": f" answer {i}."} for i in range(6)]
    write_jsonl(tmp_path / "a.jsonl", rows[:2])
    (tmp_path / "b.json").write_text(json.dumps(rows[2:3]))
    (tmp_path / "c.csv").write_text("prompt,completion\n" + "".join(f'"{r["prompt"]}","{r["completion"]}"\n'
                                                                   for r in rows[3:4]))
    pq.write_table(pa.Table.from_pylist(rows[4:5]), tmp_path / "d.parquet")
    datasets.Dataset.from_list(rows[5:6]).save_to_disk(str(tmp_path / "saved"))
    got = run(tmp_path, tok, train=["a.jsonl", "b.json", "c.csv", "d.parquet", "saved"], format="completion")
    assert got.report.rows_read == 6 and got.report.train.rows == 6
    (tmp_path / "parts").mkdir()
    for i in range(3):
        write_jsonl(tmp_path / "parts" / f"p{i}.jsonl", rows[2 * i:2 * i + 2])
    got = run(tmp_path, tok, train=["parts/*.jsonl"], format="completion")
    assert got.report.rows_read == 6 and len(got.report.sources) == 3


def test_txt_lines_are_text_rows(tmp_path, tok):
    (tmp_path / "x.txt").write_text("hello world\n\nthe quick fox\n")
    got = run(tmp_path, tok, train=["x.txt"], format="text")
    assert got.report.rows_read == 2


def test_hub_source_offline_is_a_clear_error(tmp_path, tok, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError) as info:
        run(tmp_path, tok, train=["hf:nobody/nothing@train"], format="text")
    assert "hf:nobody/nothing" in str(info.value) and "HF_HUB_OFFLINE" in str(info.value)


def test_missing_file_and_unmatched_glob(tmp_path, tok):
    with pytest.raises(DataError, match="does not exist"):
        run(tmp_path, tok, train=["nope.jsonl"])
    with pytest.raises(DataError, match="matches no data file"):
        run(tmp_path, tok, train=["none/*.jsonl"])


# --- bad rows ------------------------------------------------------------------------------------

GOOD = {"prompt": "two plus two?", "completion": " four"}


@pytest.mark.parametrize("bad, line, problem", [
    ('{"prompt": "x", "completion": ', 3, "invalid JSON: Expecting value at column 31"),
    ('{"prompt": "x, "completion": "y"}', 3, "invalid JSON: Expecting ',' delimiter at column 17"),
    ('{"prompt": "x', 3, "invalid JSON: Unterminated string starting at column 12"),
    ({"prompt": "x"}, 3, "missing `completion`"),
    ({"prompt": 5, "completion": "y"}, 3, "`prompt` must be a string, found number"),
    ({"prompt": "x", "completion": "   "}, 3, "`completion` is empty"),
])
def test_bad_row_error_names_file_and_line(tmp_path, tok, bad, line, problem):
    write_jsonl(tmp_path / "bad.jsonl", [GOOD, GOOD, bad, GOOD])
    with pytest.raises(DataError) as info:
        run(tmp_path, tok, train=["bad.jsonl"], format="completion")
    err = info.value
    assert err.file.endswith("bad.jsonl") and err.row == line
    assert problem in err.message
    assert str(err).startswith(f"{err.file}:{line}: ")


def test_blank_lines_keep_line_numbers(tmp_path, tok):
    (tmp_path / "b.jsonl").write_text(json.dumps(GOOD) + "\n\n\n" + json.dumps({"prompt": "x"}) + "\n")
    with pytest.raises(DataError) as info:
        run(tmp_path, tok, train=["b.jsonl"], format="completion")
    assert info.value.row == 4


def test_chat_bad_rows_and_skip_counts(tmp_path, tok):
    ok = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    rows = [ok, {"messages": [{"role": "user", "content": "hi"}]},
            {"messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "x"}]},
            {"messages": []}, "not json", ok]
    write_jsonl(tmp_path / "m.jsonl", rows)
    with pytest.raises(DataError) as info:
        run(tmp_path, tok, train=["m.jsonl"])
    assert info.value.row == 2 and "no assistant message" in info.value.message
    assert "3 more bad rows" in info.value.message
    got = run(tmp_path, tok, train=["m.jsonl"], on_bad_rows="skip")
    r = got.report
    assert r.bad_rows == 4 and r.train.rows == 2
    assert [(b.row, b.problem) for b in r.bad_row_examples] == [
        (2, "no assistant message to train on"),
        (3, "message 2 has unknown role 'robot' (use system, user, assistant, tool)"),
        (4, "`messages` is empty"),
        (5, "invalid JSON: Expecting value at column 1"),
    ]


def test_missing_column_names_the_file_and_suggests_mapping(tmp_path, tok):
    write_jsonl(tmp_path / "q.jsonl", [{"question": "a", "answer": "b"}])
    with pytest.raises(DataError) as info:
        run(tmp_path, tok, train=["q.jsonl"], format="completion")
    assert "needs column `prompt`, `completion`" in info.value.message
    assert "columns" in info.value.help


def test_csv_bad_row_is_located_by_row(tmp_path, tok):
    (tmp_path / "c.csv").write_text('prompt,completion\n"a","b"\n"c",""\n')
    with pytest.raises(DataError) as info:
        run(tmp_path, tok, train=["c.csv"], format="completion")
    assert info.value.row == 2 and info.value.unit == "row" and "(row 2)" in str(info.value)


def test_template_skeleton_agrees_with_prefix_rendering(tok):
    from ftc.runtime.data.render import ChatRenderer

    convs = [
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
        [{"role": "system", "content": "s"}, {"role": "user", "content": " a "},
         {"role": "assistant", "content": "b\n"}, {"role": "user", "content": "c"},
         {"role": "assistant", "content": ""}, {"role": "user", "content": "trailing"}],
    ]
    for template in (tok.chat_template,
                     # edits contents: rows must fall back to prefix rendering and still be exact
                     "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] | trim }}<|end|>{% endfor %}"
                     "{% if add_generation_prompt %}[assistant]{% endif %}"):
        saved = tok.chat_template
        tok.chat_template = template
        try:
            renderer = ChatRenderer.for_tokenizer(tok)
            for msgs in convs:
                for _ in range(2):  # first call builds the skeleton, second uses it
                    full = renderer.render(msgs, False)
                    expected = renderer._segments_by_prefixes(msgs, full)
                    assert renderer.segments(msgs, "completions") == expected
                    assert "".join(t for t, _ in expected) == full
        finally:
            tok.chat_template = saved


def test_jsonl_blocks_keep_rows_and_line_numbers(tmp_path, tok, monkeypatch):
    from ftc.runtime.data import sources

    monkeypatch.setattr(sources, "JSONL_BLOCK", 100)  # many blocks, boundaries inside lines
    rows = [{"text": f"row {i} " + "x" * (i % 37)} for i in range(50)]
    path = tmp_path / "x.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" + ("\n" if i % 7 == 0 else "") for i, r in enumerate(rows)))
    blocks = list(sources.read_source(sources.Source("jsonl", str(path), "x.jsonl"), "train"))
    assert len(blocks) > 5
    texts = [t for b in blocks for t in b.table.column("text").to_pylist()]
    numbers = [int(n) for b in blocks for n in b.numbers]
    lines = path.read_text().split("\n")
    assert texts == [r["text"] for r in rows]
    assert [json.loads(lines[n - 1])["text"] for n in numbers] == texts
    (tmp_path / "bad.jsonl").write_text(path.read_text() + '{"text": 1}\n')
    with pytest.raises(DataError) as info:
        run(tmp_path, tok, train=["bad.jsonl"], format="text")
    assert info.value.row == len(lines)
