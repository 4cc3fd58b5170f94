"""`data.chat_template`: the named templates render as their models expect, masks are exact per template
(chat, instruction and completion rows), the end-of-turn lint knows each template's end token, a template
file renders in the sandbox, and the compiler checks names, files and Jinja before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("datasets")

from ftc.compiler.pipeline import compile_recipe  # noqa: E402
from ftc.plan.chat_templates import NAMED  # noqa: E402
from ftc.runtime.data import DataError, prepare  # noqa: E402
from ftc.runtime.data.templates import ChatTemplate, named, render_chat, token_spans  # noqa: E402
from ftc.runtime.data.toy import build_tokenizer  # noqa: E402

MARKERS = sorted({t for spec in NAMED.values() for t in spec.tokens})
CORPUS = ["what is the capital of peru? lima. the sky is blue, grass is green.",
          "Below is an instruction that describes a task. ### Instruction: ### Response:"] * 20
CONVERSATION = [{"role": "system", "content": "Be short."}, {"role": "user", "content": "capital of peru?"},
                {"role": "assistant", "content": "lima"}, {"role": "user", "content": "sky?"},
                {"role": "assistant", "content": "blue"}]
# what each template must train on for CONVERSATION: the assistant contents through the end of turn
EOS = "</s>"
END = {"chatml": "<|im_end|>", "llama3": "<|eot_id|>", "gemma": "<end_of_turn>", "mistral": EOS, "zephyr": EOS,
       "alpaca": EOS}


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    """A BPE tokenizer that holds every named template's markers as single tokens."""
    tokenizer = build_tokenizer(CORPUS, tmp_path_factory.mktemp("tok"), vocab_size=400, chat_template=None)
    tokenizer.add_special_tokens({"additional_special_tokens": MARKERS})
    return tokenizer


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def run(tmp_path, tok, **data):
    spec = {"format": "chat", "max_length": 512, "packing": False, "dedup": "none", "train_on": "completions",
            "on_bad_rows": "error", "truncation": "right", "seed": 1, **data}
    return prepare(spec, tok, base_dir=tmp_path, cache_dir=tmp_path / "cache")


def trained_runs(tok, row) -> list[str]:
    """The trained stretches of an example, decoded."""
    runs, current = [], []
    for label in row["labels"] + [-100]:
        if label == -100:
            if current:
                runs.append(tok.decode(current))
            current = []
        else:
            current.append(label)
    return runs


def test_named_templates_render_the_model_layouts():
    tokens = {"bos_token": "<s>", "eos_token": EOS}
    text = {name: render_chat(named(name), CONVERSATION, tokens).text for name in NAMED}
    assert text["chatml"].startswith("<|im_start|>system\nBe short.<|im_end|>\n<|im_start|>user\n")
    assert "<|start_header_id|>assistant<|end_header_id|>\n\nlima<|eot_id|>" in text["llama3"]
    assert text["mistral"] == "<s>[INST] Be short.\n\ncapital of peru? [/INST]lima</s>[INST] sky? [/INST]blue</s>"
    assert text["gemma"].startswith("<s><start_of_turn>user\nBe short.\n\ncapital of peru?<end_of_turn>\n"
                                    "<start_of_turn>model\nlima<end_of_turn>\n")
    assert text["zephyr"].startswith("<|system|>\nBe short.</s>\n<|user|>\ncapital of peru?</s>\n<|assistant|>\n")
    assert text["alpaca"] == ("<s>Be short.\n\n### Instruction:\ncapital of peru?\n\n### Response:\nlima</s>\n\n"
                              "### Instruction:\nsky?\n\n### Response:\nblue</s>\n\n")


@pytest.mark.parametrize("name", sorted(NAMED))
def test_render_chat_spans_are_assistant_content_through_end_of_turn(name):
    rendered = render_chat(named(name), CONVERSATION, {"bos_token": "<s>", "eos_token": EOS})
    assert [rendered.text[a:b] for a, b in rendered.assistant_spans] == [f"lima{END[name]}", f"blue{END[name]}"]
    assert "".join(t for t, _ in rendered.segments()) == rendered.text


@pytest.mark.parametrize("name", sorted(NAMED))
def test_chat_mask_is_exact_per_template(tmp_path, tok, name):
    write_jsonl(tmp_path / "c.jsonl", [{"messages": CONVERSATION}])
    row = run(tmp_path, tok, train=["c.jsonl"], chat_template={"name": name}).train[0]
    assert trained_runs(tok, row) == [f"lima{END[name]}", f"blue{END[name]}"]
    rendered = render_chat(named(name), CONVERSATION, {"bos_token": tok.bos_token, "eos_token": tok.eos_token})
    ids, trained = token_spans(tok, rendered)
    assert row["input_ids"] == ids  # the reusable encoder agrees with the pipeline
    assert [i != -100 for i in row["labels"]] == trained


@pytest.mark.parametrize("name", sorted(NAMED))
def test_instruction_and_completion_rows_render_through_the_template(tmp_path, tok, name):
    write_jsonl(tmp_path / "i.jsonl", [{"instruction": "capital of peru?", "input": "one word", "output": "lima"}])
    write_jsonl(tmp_path / "p.jsonl", [{"prompt": "sky?", "completion": "blue"}])
    inst = run(tmp_path, tok, train=["i.jsonl"], format="instruction", chat_template={"name": name}).train[0]
    comp = run(tmp_path, tok, train=["p.jsonl"], format="completion", chat_template={"name": name}).train[0]
    assert trained_runs(tok, inst) == [f"lima{END[name]}"]
    assert trained_runs(tok, comp) == [f"blue{END[name]}"]
    tokens = {"bos_token": tok.bos_token, "eos_token": tok.eos_token}
    expected = render_chat(named(name), [{"role": "user", "content": "capital of peru?\n\none word"},
                                         {"role": "assistant", "content": "lima"}], tokens).text
    assert tok.decode(inst["input_ids"]) == expected


@pytest.mark.parametrize("name", ["chatml", "llama3", "gemma"])
def test_end_of_turn_lint_needs_the_template_end_as_one_token(tmp_path, name):
    plain = build_tokenizer(CORPUS, tmp_path / "plain", vocab_size=400, chat_template=None)
    write_jsonl(tmp_path / "c.jsonl", [{"messages": CONVERSATION}])
    with pytest.raises(DataError) as info:
        run(tmp_path, plain, train=["c.jsonl"], chat_template={"name": name})
    assert NAMED[name].end in str(info.value) and "add_tokens = [" in info.value.help
    assert all(f'"{t}"' in info.value.help for t in NAMED[name].tokens)


def test_end_of_turn_lint_refuses_a_turn_whose_end_is_not_trained(tmp_path, tok):
    """A template file whose assistant turns never write the end token: the lint stops the run."""
    (tmp_path / "t.jinja").write_text("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                                      "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    write_jsonl(tmp_path / "c.jsonl", [{"messages": CONVERSATION[1:3]}])
    with pytest.raises(DataError, match="no end-of-turn or EOS token"):
        run(tmp_path, tok, train=["c.jsonl"], chat_template={"file": "t.jinja"})


def test_template_file_renders_in_the_sandbox(tmp_path, tok):
    (tmp_path / "t.jinja").write_text(
        "{% for m in messages %}[{{ m['role'] }}] {% if m['role'] == 'assistant' %}{% generation %}"
        "{{ m['content'] }}{{ eos_token }}{% endgeneration %}{% else %}{{ m['content'] }}{% endif %}\n{% endfor %}"
        "{% if add_generation_prompt %}[assistant] {% endif %}")
    write_jsonl(tmp_path / "c.jsonl", [{"messages": CONVERSATION[1:3]}])
    row = run(tmp_path, tok, train=["c.jsonl"], chat_template={"file": "t.jinja"}).train[0]
    assert trained_runs(tok, row) == ["lima</s>"]  # trim_blocks eats the newline after endif
    (tmp_path / "evil.jinja").write_text("{{ messages.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(DataError, match="the chat template rejects"):
        run(tmp_path, tok, train=["c.jsonl"], chat_template={"file": "evil.jinja"}, on_bad_rows="error")


def test_unsafe_template_is_refused_by_the_sandbox():
    from jinja2.exceptions import SecurityError

    template = ChatTemplate("{{ ''.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(SecurityError):
        render_chat(template, CONVERSATION, {})


RECIPE = """recipe "t"
model "meta-llama/Llama-3.1-8B" {{ dtype = bf16 }}
method lora {{ rank = 8 }}
data {{
  train         = "train.jsonl"
  format        = {format}
  chat_template = {template}
}}
train {{ epochs = 1; lr = 2e-4; global_batch = 8 }}
"""


def compiled(tmp_path, template, fmt="chat"):
    (tmp_path / "train.jsonl").write_text('{"messages": []}\n')
    path = tmp_path / "r.ftspec"
    path.write_text(RECIPE.format(template=template, format=fmt))
    result = compile_recipe(path, out_dir=tmp_path / "build")
    return result, [d for d in result.diagnostics if d.is_error]


def test_compile_lowers_a_named_template_and_a_file(tmp_path):
    result, errors = compiled(tmp_path, "chatml")
    assert errors == [] and result.plan["data"]["chat_template"] == {"name": "chatml"}
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "mine.jinja").write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    result, errors = compiled(tmp_path, '"templates/mine.jinja"')
    assert errors == [] and result.plan["data"]["chat_template"] == {"file": "../templates/mine.jinja"}


@pytest.mark.parametrize("template, fmt, code, text", [
    ("chatm", "chat", "E0431", "did you mean `chatml`?"),
    ('"templates/none.jinja"', "chat", "E0432", "relative to the recipe"),
    ("chatml", "text", "E0430", "format = chat"),
])
def test_compile_refuses_bad_templates_with_located_errors(tmp_path, template, fmt, code, text):
    _, errors = compiled(tmp_path, template, fmt)
    (d,) = errors
    assert d.code == code and d.span is not None and d.span.line == 7 and text in (d.help or "")


def test_compile_refuses_a_template_file_that_is_not_jinja(tmp_path):
    (tmp_path / "bad.jinja").write_text("{% for m in messages %}{{ m['content'] }}")
    _, errors = compiled(tmp_path, '"bad.jinja"')
    (d,) = errors
    assert d.code == "E0433" and "endfor" in d.message
