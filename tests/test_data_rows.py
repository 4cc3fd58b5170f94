"""ShareGPT-style rows (`columns { messages; role; content }` and `roles`), `max_samples`, `eval_split` as a row
count, and hub data set ids: from the recipe through the plan to the prepared data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("datasets")

from ftc.compiler.pipeline import compile_recipe  # noqa: E402
from ftc.runtime.data import DataError, prepare  # noqa: E402
from ftc.runtime.data.toy import build_tokenizer  # noqa: E402

CORPUS = ["what is the capital of peru? lima. the sky is blue, grass is green."] * 20


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return build_tokenizer(CORPUS, tmp_path_factory.mktemp("tok"), vocab_size=300)


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def sharegpt(i: int, user: str = "human", assistant: str = "gpt") -> dict:
    return {"conversations": [{"from": "system", "value": "be short"}, {"from": user, "value": f"question {i}?"},
                              {"from": assistant, "value": f"answer {i}"}]}


RECIPE = """recipe "r"
model "meta-llama/Llama-3.1-8B" {{}}
method lora {{}}
data {{
  train  = "train.jsonl"
  format = chat
{data}
}}
train {{ epochs = 1; lr = 2e-4; global_batch = 8 }}
"""


def compiled(tmp_path, data: str):
    path = tmp_path / "r.ftspec"
    path.write_text(RECIPE.format(data=data))
    if not (tmp_path / "train.jsonl").exists():
        (tmp_path / "train.jsonl").write_text("{}\n")
    result = compile_recipe(path, out_dir=tmp_path / "build")
    return result, [d for d in result.diagnostics if d.is_error]


def prepared(tmp_path, tok, plan_data: dict, rows):
    write_jsonl(tmp_path / "train.jsonl", rows)
    spec = dict(plan_data, train=["train.jsonl"], max_length=256)
    return prepare(spec, tok, base_dir=tmp_path, cache_dir=tmp_path / "cache")


def test_sharegpt_rows_with_custom_role_names_train_on_the_assistant(tmp_path, tok):
    result, errors = compiled(tmp_path, '  columns { messages = "conversations"; role = "from"; content = "value" }\n'
                                        '  roles   { user = "asker"; assistant = "helper" }\n')
    assert errors == []
    data = result.plan["data"]
    assert data["columns"] == {"messages": "conversations", "role": "from", "content": "value"}
    assert data["roles"] == {"user": "asker", "assistant": "helper"}
    out = prepared(tmp_path, tok, data, [sharegpt(i, "asker", "helper") for i in range(4)])
    row = out.train[0]
    trained = tok.decode([label for label in row["labels"] if label != -100])
    assert trained == "answer 0<|end|>\n"  # the tokenizer's own template: through its end-of-turn line
    assert "<|user|>\nquestion 0?" in tok.decode(row["input_ids"])


def test_a_role_name_maps_once(tmp_path, tok):
    """`roles { assistant = "user"; user = "human" }`: the data's `user` is the assistant; `human` the user."""
    rows = [{"messages": [{"role": "human", "content": "question 1?"}, {"role": "user", "content": "answer 1"}]}]
    out = prepared(tmp_path, tok, {"format": "chat", "roles": {"assistant": "user", "user": "human"}}, rows)
    assert tok.decode([x for x in out.train[0]["labels"] if x != -100]).startswith("answer 1")


def test_sharegpt_default_names_need_no_roles_block(tmp_path, tok):
    out = prepared(tmp_path, tok, {"format": "chat", "columns": {"messages": "conversations", "role": "from",
                                                                 "content": "value"}}, [sharegpt(1)])
    assert tok.decode([x for x in out.train[0]["labels"] if x != -100]).startswith("answer 1")


def test_unknown_role_is_a_located_bad_row(tmp_path, tok):
    rows = [sharegpt(0), sharegpt(1, user="asker")]
    with pytest.raises(DataError) as info:
        prepared(tmp_path, tok, {"format": "chat", "columns": {"messages": "conversations", "role": "from",
                                                                "content": "value"}}, rows)
    assert info.value.row == 2 and "asker" in str(info.value)


def test_max_samples_keeps_the_first_rows_after_dedup(tmp_path, tok):
    rows = [sharegpt(0), sharegpt(0)] + [sharegpt(i) for i in range(1, 10)]
    columns = {"messages": "conversations", "role": "from", "content": "value"}
    out = prepared(tmp_path, tok, {"format": "chat", "columns": columns, "dedup": "exact", "max_samples": 4}, rows)
    answers = sorted(tok.decode([x for x in r["labels"] if x != -100]).split("<")[0] for r in out.train)
    assert answers == ["answer 0", "answer 1", "answer 2", "answer 3"] and out.report.duplicates_exact == 1


def test_eval_split_in_rows_holds_out_exactly_that_many(tmp_path, tok):
    columns = {"messages": "conversations", "role": "from", "content": "value"}
    out = prepared(tmp_path, tok, {"format": "chat", "columns": columns, "eval_rows": 3},
                   [sharegpt(i) for i in range(20)])
    assert len(out.eval) == 3 and len(out.train) == 17
    (tmp_path / "again").mkdir()
    again = prepared(tmp_path / "again", tok, {"format": "chat", "columns": columns, "eval_rows": 3},
                     [sharegpt(i) for i in reversed(range(20))])
    # a stable, content-hashed choice: the same rows whatever their order in the file
    assert sorted(again.eval["input_ids"]) == sorted(out.eval["input_ids"])
    with pytest.raises(DataError, match="leaves no training rows"):
        prepared(tmp_path, tok, {"format": "chat", "columns": columns, "eval_rows": 20},
                 [sharegpt(i) for i in range(20)])


def test_compile_lowers_rows_split_and_max_samples(tmp_path):
    (tmp_path / "train.jsonl").write_text("{}\n" * 600)
    result, errors = compiled(tmp_path, "  eval_split = 500 rows\n  max_samples = 10000\n")
    assert errors == []
    assert result.plan["data"]["eval_rows"] == 500 and result.plan["data"]["eval_split"] == 0.0
    assert result.plan["data"]["max_samples"] == 10000
    _, errors = compiled(tmp_path, "  eval_split = 60%\n")
    assert [d.code for d in errors] == ["E0204"] and "at most 50%" in errors[0].message
    _, errors = compiled(tmp_path, "  eval_split = 2.5 rows\n")
    assert [d.code for d in errors] == ["E0201"]
    _, errors = compiled(tmp_path, "  eval_split = 500 rows\n  max_samples = 400\n")
    assert [d.code for d in errors] == ["E0520"] and "400 rows" in errors[0].message


@pytest.mark.parametrize("train, ok", [
    ("hf:tatsu-lab/alpaca", True), ("hf:allenai/c4:en@validation", True), ("hf:org/name@train[:10%]", True),
    ("hf:squad", True), ("hf:org/name@", False), ("hf:org/na me", False), ("hf:", False), ("hf:a/b/c", False),
])
def test_hub_data_set_ids_are_checked(tmp_path, train, ok):
    path = tmp_path / "r.ftspec"
    path.write_text(RECIPE.format(data="").replace('"train.jsonl"', f'"{train}"'))
    errors = [d for d in compile_recipe(path, out_dir=tmp_path / "b").diagnostics if d.is_error]
    assert (errors == []) if ok else [d.code for d in errors] == ["E0435"]


def test_message_keys_outside_chat_are_warned(tmp_path):
    result, errors = compiled(tmp_path, '  roles { user = "human" }\n')
    assert errors == []
    path = tmp_path / "r.ftspec"
    path.write_text(path.read_text().replace("format = chat", "format = completion"))
    warnings = [d for d in compile_recipe(path, out_dir=tmp_path / "b").diagnostics if d.code == "W0434"]
    assert len(warnings) == 1 and warnings[0].span.line == 7
