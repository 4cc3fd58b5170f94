"""The preference formats through the data pipeline: located bad rows or counted skips, dedup, the stable
split, chat rendering with the prompt kept out of the answers, max_prompt_length keeping the prompt's end,
the EOS lint, the cache, and the warnings for pairs that teach nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from plan_cases import data_section

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "examples" / "tiny"


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(TINY / "model"))


def write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def prepare(tmp_path, tokenizer, rows, fmt="preference", **data):
    from ftc.runtime.data import prepare as run

    write(tmp_path / "d.jsonl", rows)
    spec = data_section(**{"train": ["d.jsonl"], "format": fmt, "max_length": 64, "dedup": "exact", "seed": 42, **data})
    return run(spec, tokenizer, base_dir=tmp_path, cache_dir=tmp_path / "cache")


GOOD = {"prompt": "What is one plus one?", "chosen": "Two.", "rejected": "Three."}


@pytest.mark.parametrize("bad, problem", [
    ({"prompt": "q", "chosen": "a"}, "missing `rejected`"),
    ({"prompt": "q", "chosen": 3, "rejected": "b"}, "`chosen` must be a string or a list of messages, found a number"),
    ({"prompt": "  ", "chosen": "a", "rejected": "b"}, "empty prompt"),
    ({"prompt": [{"role": "human", "content": "q"}], "chosen": [{"role": "assistant", "content": "a"}],
      "rejected": [{"role": "assistant", "content": "b"}]}, "`prompt` message 1 has unknown role 'human'"),
])
def test_bad_pair_is_located_or_counted(tmp_path, tokenizer, bad, problem):
    from ftc.runtime.data import DataError

    rows = [GOOD, bad, {**GOOD, "prompt": "What is two plus two?"}]
    with pytest.raises(DataError) as err:
        prepare(tmp_path, tokenizer, rows)
    assert err.value.location == f"{tmp_path / 'd.jsonl'}:2" or err.value.location.endswith("d.jsonl:2")
    assert problem in err.value.message
    report = prepare(tmp_path, tokenizer, rows, on_bad_rows="skip").report
    assert report.bad_rows == 1 and report.train.rows == 2
    assert problem in str(report.bad_row_examples[0]) and ":2:" in str(report.bad_row_examples[0])


@pytest.mark.parametrize("label", ["yes", 1, None])
def test_unpaired_label_must_be_boolean(tmp_path, tokenizer, label):
    from ftc.runtime.data import DataError

    rows = [{"prompt": "q", "completion": "a", "label": True}, {"prompt": "q", "completion": "b", "label": label}]
    with pytest.raises(DataError, match="label") as err:
        prepare(tmp_path, tokenizer, rows, fmt="unpaired_preference")
    assert err.value.row == 2
    report = prepare(tmp_path, tokenizer, rows, fmt="unpaired_preference", on_bad_rows="skip").report
    assert report.bad_rows == 1 and report.train.rows == 1


def test_chat_pairs_keep_the_prompt_out_of_the_answers(tmp_path, tokenizer):
    rows = [{"prompt": [{"role": "user", "content": f"What is {i} plus one?"}], "chosen": f"It is {i + 1}.",
             "rejected": [{"role": "assistant", "content": f"It is {i + 2}."}]} for i in range(20)]
    data = prepare(tmp_path, tokenizer, rows, eval_split=0.2)
    row = data.train[0]
    prompt, chosen = tokenizer.decode(row["prompt_ids"]), tokenizer.decode(row["chosen_ids"])
    assert prompt.startswith("<|bos|>") and prompt.endswith("<|assistant|>\n") and "plus one?" in prompt
    assert chosen.startswith("It is") and "<|end|>" in chosen and "user" not in chosen
    assert data.collator is None  # TRL pads preference batches itself
    assert data.report.eval is not None and data.report.train.rows + data.report.eval.rows == 20
    again = prepare(tmp_path, tokenizer, rows, eval_split=0.2)
    assert again.report.cache_hit and again.train["chosen_ids"] == data.train["chosen_ids"]  # stable split


def test_prompt_cut_keeps_its_end_and_empty_or_identical_pairs_are_dropped(tmp_path, tokenizer):
    long = "word " * 80 + "What is one plus one?"
    rows = [{"prompt": long, "chosen": "Two.", "rejected": "Three."},
            {"prompt": "Same?", "chosen": "Yes.", "rejected": "Yes."},
            {"prompt": "x " * 70, "chosen": "a", "rejected": "b"},
            GOOD, GOOD]
    data = prepare(tmp_path, tokenizer, rows, max_prompt_length=None, max_length=64)
    p = data.report.preference
    assert p["identical"] == 1 and p["emptied"] == 2 and data.report.duplicates_exact == 1
    data = prepare(tmp_path, tokenizer, rows, max_prompt_length=16, max_length=64)
    p = data.report.preference
    assert p["prompt_cut"] == 2 and p["emptied"] == 0
    kept = [tokenizer.decode(ids) for ids in data.train["prompt_ids"]]
    assert any(k.endswith("plus one?") and len(ids) == 16 for k, ids in zip(kept, data.train["prompt_ids"]))
    from ftc.runtime.data import render_text
    from ftc.runtime.data.preference_report import preference_warnings

    text = render_text(data.report)
    assert "chosen lengths" in text and "rejected lengths" in text and "prompts cut" in text
    assert any("identical" in w for w in preference_warnings(data.report.preference))


def test_answer_without_end_token_is_located(tmp_path, tokenizer):
    from ftc.runtime.data import DataError
    from ftc.runtime.data.preference_build import _lint
    from ftc.runtime.data.preference import Row
    from ftc.runtime.data.sources import Source

    row = Row(Source("jsonl", str(tmp_path / "d.jsonl"), "d.jsonl"), 7, {})
    _lint(row, ("chosen", "rejected"), [[5, 2], [6, 2]], [False, False], frozenset({2}))
    with pytest.raises(DataError, match="`rejected` has no end-of-turn") as err:
        _lint(row, ("chosen", "rejected"), [[5, 2], [6, 9]], [False, False], frozenset({2}))
    assert err.value.row == 7
    _lint(row, ("chosen", "rejected"), [[5, 2], [6, 9]], [False, True], frozenset({2}))  # cut: no end expected


def test_max_samples_and_eval_rows(tmp_path, tokenizer):
    rows = [{"prompt": f"What is {i} plus one?", "chosen": f"{i + 1}.", "rejected": f"{i + 2}."} for i in range(30)]
    data = prepare(tmp_path, tokenizer, rows, max_samples=20, eval_rows=5)
    assert (data.report.train.rows, data.report.eval.rows) == (15, 5)
