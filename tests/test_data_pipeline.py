"""Dedup, stable split, truncation, the end-of-turn lint, the cache and its hand-off, the report and `ftc data`."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("datasets")

from ftc.runtime.data import DataError, prepare, render_text  # noqa: E402
from ftc.runtime.data.toy import CHAT_TEMPLATE, build_tokenizer  # noqa: E402

CORPUS = ["the quick brown fox jumps over the lazy dog, row number 0123456789."] * 30


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok")
    build_tokenizer(CORPUS, path, vocab_size=300)
    return path


@pytest.fixture
def tok(tok_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tok_dir))


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def texts(n, start=0):
    return [{"text": f"row {i} the quick brown fox {i * 7919 % 1000}"} for i in range(start, start + n)]


def run(tmp_path, tok, cache=None, is_main_process=True, **data):
    spec = {"train": ["d.jsonl"], "format": "text", "max_length": 64, "packing": False, "dedup": "none",
            "seed": 7, **data}
    return prepare(spec, tok, base_dir=tmp_path, cache_dir=cache or tmp_path / "cache",
                   is_main_process=is_main_process)


def decoded(ds, tok):
    return {tok.decode(r["input_ids"], skip_special_tokens=True) for r in ds}


def test_exact_dedup_is_normalised(tmp_path, tok):
    rows = texts(20) + [{"text": "Row 3  the QUICK brown fox 757"}, {"text": " row 4 the quick brown fox 676 "}]
    write_jsonl(tmp_path / "d.jsonl", rows)
    got = run(tmp_path, tok, dedup="exact")
    assert got.report.duplicates_exact == 2 and got.report.train.rows == 20


def test_near_dedup_uses_the_threshold(tmp_path, tok):
    base = "the quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat all day long"
    rows = [{"text": base}, {"text": base + " indeed"}, {"text": "an entirely different sentence about apples "
                                                                   "and oranges and the price of tea in china"}]
    write_jsonl(tmp_path / "d.jsonl", rows)
    got = run(tmp_path, tok, dedup="near", near_dedup_threshold=0.7, max_length=128)
    assert got.report.duplicates_near == 1 and got.report.train.rows == 2
    got = run(tmp_path, tok, dedup="near", near_dedup_threshold=0.99, max_length=128)
    assert got.report.duplicates_near == 0


def test_split_is_stable_when_rows_are_added(tmp_path, tok):
    write_jsonl(tmp_path / "d.jsonl", texts(300))
    first = run(tmp_path, tok, eval_split=0.2)
    write_jsonl(tmp_path / "d.jsonl", texts(150, start=300) + texts(300))  # new rows, and in front
    second = run(tmp_path, tok, eval_split=0.2)
    assert not second.report.cache_hit
    old_eval, old_train = decoded(first.eval, tok), decoded(first.train, tok)
    assert old_eval <= decoded(second.eval, tok) and old_train <= decoded(second.train, tok)
    assert 0.12 < len(old_eval) / 300 < 0.28 and first.report.eval_source == "split"
    other_seed = run(tmp_path, tok, eval_split=0.2, seed=8)
    assert decoded(other_seed.eval, tok) != decoded(second.eval, tok)


def test_exact_duplicates_never_straddle_the_split(tmp_path, tok):
    rows = texts(200)
    write_jsonl(tmp_path / "d.jsonl", rows + rows[:50])
    got = run(tmp_path, tok, eval_split=0.3)  # no dedup: twins must still land on the same side
    assert not (decoded(got.eval, tok) & decoded(got.train, tok))


def test_truncation_policies(tmp_path, tok):
    write_jsonl(tmp_path / "d.jsonl", [{"text": " ".join(["fox"] * 80)}, {"text": "short fox"}])
    right = run(tmp_path, tok, max_length=16, truncation="right")
    assert right.report.truncated == 1 and max(len(r["input_ids"]) for r in right.train) == 16
    assert right.train[0]["input_ids"][0] == tok.bos_token_id
    left = run(tmp_path, tok, max_length=16, truncation="left")
    assert left.train[0]["input_ids"][-1] == tok.eos_token_id
    drop = run(tmp_path, tok, max_length=16, truncation="drop")
    assert drop.report.dropped_too_long == 1 and drop.report.train.rows == 1


def test_lint_fails_when_the_end_of_turn_is_outside_the_loss_mask(tmp_path, tok):
    msgs = [{"role": "user", "content": "fox?"}, {"role": "assistant", "content": "dog"}]
    write_jsonl(tmp_path / "d.jsonl", [{"messages": msgs}] * 2)
    # a template that closes assistant turns with nothing: the model could never learn to stop
    tok.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
    with pytest.raises(DataError) as info:
        run(tmp_path, tok, format="chat")
    assert "never learn to stop" in info.value.message and info.value.row == 1
    tok.chat_template = CHAT_TEMPLATE
    assert run(tmp_path, tok, format="chat").report.train.rows == 2


def test_cache_hits_and_invalidates_on_tokenizer_and_template(tmp_path, tok, tok_dir):
    write_jsonl(tmp_path / "d.jsonl", [{"messages": [{"role": "user", "content": "fox?"},
                                                      {"role": "assistant", "content": "dog"}]}])
    first = run(tmp_path, tok, format="chat")
    again = run(tmp_path, tok, format="chat")
    assert not first.report.cache_hit and again.report.cache_hit
    assert again.report.cache_key == first.report.cache_key
    tok.chat_template = CHAT_TEMPLATE.replace("<|end|>\n", "<|end|>\n\n")
    changed = run(tmp_path, tok, format="chat")
    assert not changed.report.cache_hit and changed.report.cache_key != first.report.cache_key
    assert changed.train[0]["input_ids"] != first.train[0]["input_ids"]
    other = build_tokenizer(CORPUS + ["dog dog dog"], None, vocab_size=301)
    assert not run(tmp_path, tok=other, format="chat").report.cache_hit
    tok.chat_template = CHAT_TEMPLATE
    assert run(tmp_path, tok, format="chat").report.cache_hit
    assert not run(tmp_path, tok, format="chat", max_length=65).report.cache_hit


def test_other_processes_wait_for_the_main_one(tmp_path, tok):
    write_jsonl(tmp_path / "d.jsonl", texts(50))
    results = {}

    def worker():
        results["rank1"] = run(tmp_path, tok, is_main_process=False)

    t = threading.Thread(target=worker)
    t.start()
    t.join(0.8)
    assert t.is_alive()  # waiting: nothing is in the cache yet
    main = run(tmp_path, tok)
    t.join(30)
    assert not t.is_alive()
    assert results["rank1"].report.cache_key == main.report.cache_key and results["rank1"].report.cache_hit


def test_waiting_processes_get_the_main_process_error(tmp_path, tok):
    write_jsonl(tmp_path / "d.jsonl", texts(3) + [{"text": ""}])
    errors = {}

    def worker():
        try:
            run(tmp_path, tok, is_main_process=False)
        except DataError as exc:
            errors["rank1"] = exc

    t = threading.Thread(target=worker)
    t.start()
    with pytest.raises(DataError):
        run(tmp_path, tok)
    t.join(30)
    assert errors["rank1"].row == 4 and "is empty" in errors["rank1"].message


def test_report_text_json_and_png(tmp_path, tok):
    from ftc.runtime.data import save_png

    write_jsonl(tmp_path / "d.jsonl", texts(40) + texts(5))
    got = run(tmp_path, tok, dedup="exact", packing=True, eval_split=0.1)
    r = got.report
    d = json.loads(json.dumps(r.to_dict()))
    assert d["rows_read"] == 45 and d["duplicates_exact"] == 5
    assert d["train"]["rows"] + d["eval"]["rows"] == 40
    assert 0 < d["packing_efficiency"] <= 1 and sum(d["histogram"]["counts"]) == d["train"]["rows"]
    text = render_text(r)
    assert "packing efficiency" in text and "#" in text
    save_png(r, tmp_path / "h.png")
    assert (tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG"


def test_ftc_data_cli(tmp_path, tok_dir, capsys):
    from ftc.cli import main

    write_jsonl(tmp_path / "d.jsonl", texts(30))
    from plan_cases import plan_with

    from ftc.plan import plan_errors

    plan = plan_with(model={"name_or_path": str(tok_dir), "tokenizer": None},
                     data={"train": ["../d.jsonl"], "eval": None, "eval_split": 0.1, "format": "text",
                           "columns": {}, "max_length": 64, "packing": True, "dedup": "exact",
                           "near_dedup_threshold": 0.85, "train_on": "completions", "on_bad_rows": "error",
                           "truncation": "right", "seed": 42, "cache_dir": "../cache"},
                     output={"runs_dir": "../runs"})
    assert plan_errors(plan) == []
    compiled = tmp_path / "compiled"
    compiled.mkdir()
    (compiled / "plan.json").write_text(json.dumps(plan))
    assert main(["data", "--plan", str(compiled), "--png", str(tmp_path / "h.png")]) == 0
    out = capsys.readouterr().out
    assert "rows read" in out and "packing efficiency" in out and (tmp_path / "h.png").exists()
    with open(tmp_path / "d.jsonl", "a") as f:
        f.write('{"text": 3}\n')
    assert main(["data", "--plan", str(compiled)]) == 1
    err = capsys.readouterr().err
    assert "d.jsonl:31: `text` must be a string, found number" in err and "Traceback" not in err
    assert main(["data", "--plan", str(tmp_path / "nowhere")]) == 2


def test_ftc_data_compiles_a_recipe(tmp_path, capsys):
    from ftc.cli import main

    recipe = Path(__file__).resolve().parent.parent / "examples" / "tiny.ftspec"
    if not recipe.exists():
        pytest.skip("examples/tiny.ftspec is not in this checkout")
    assert main(["data", str(recipe), "--cache-dir", str(tmp_path / "cache"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "chat" and report["train"]["rows"] > 0 and report["eval_source"] == "files"
    assert main(["data"]) == 2
