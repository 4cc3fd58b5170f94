"""Every recipe spelling a runtime hint suggests is accepted by `ftc check`: the hint is rendered (from its
string, or by raising the error when the text is built at run time), each `field = value` or `block { ... }`
it quotes is written into a recipe, and the recipe checks without errors."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from ftc.compiler.pipeline import compile_recipe
from ftc.compiler.schema import BLOCKS

REPO = Path(__file__).resolve().parent.parent
RUNTIME = REPO / "runtime"
# `key = value` where key is a field of some block (a hint may quote it with or without backticks)
FIELD_NAMES = {f.name for b in BLOCKS.values() for f in b.fields}
NESTED = {n.name: b.name for b in BLOCKS.values() for n in b.nested}
SPELLING = re.compile(r"`([a-z_]+ \{[^`]*\})`|`?\b([a-z_]+) = (\{[^}]*\}|\"[^\"]*\"|\[[^\]]*\]|[A-Za-z0-9_.%]+)`?")

BASE = """recipe "hint"
model "{model}" {{ dtype = fp32 }}
method lora {{ rank = 8 }}
data {{
  train = "{train}"
  format = chat
}}
train {{ max_steps = 10 steps; lr = 1e-3; global_batch = 8 }}
hardware {{ accelerator = cpu }}
"""


def spellings(text: str) -> list[str]:
    """The recipe snippets a hint quotes."""
    out = []
    for block, key, value in SPELLING.findall(text):
        if block and block.split()[0] in NESTED | BLOCKS.keys():
            out.append(block)
        elif key in FIELD_NAMES or key in NESTED:
            out.append(f"{key} = {value}")
    return out


def _insert(snippet: str) -> str:
    """The base recipe with `snippet` written into the block it belongs to."""
    tiny = REPO / "examples" / "tiny"
    text = BASE.format(model=tiny / "model", train=tiny / "data" / "train.jsonl")
    name = snippet.split()[0]
    if name in NESTED:
        home = NESTED[name]
    elif name in BLOCKS:
        return text + snippet + "\n"
    else:
        homes = [b.name for b in BLOCKS.values() if name in b.field_names]
        assert homes, snippet
        home = homes[0]
        text = re.sub(rf"(?m)^  {name} = .*\n", "", text)  # the hint's value replaces the base's
    if re.search(rf"(?m)^{home}\b", text) is None:
        return text + f"{home} {{\n  {snippet}\n}}\n"
    return re.sub(rf"(?m)^({home}\b[^{{]*\{{)", lambda m: m.group(1) + f"\n  {snippet}\n", text, count=1)


def _help_keywords(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.keyword) and node.arg == "help":
            yield node.value


def static_hints() -> list[tuple[str, str]]:
    """(where, text) of every constant `help=` in the runtime; f-strings are rendered in `rendered_hints`."""
    out = []
    for path in sorted(RUNTIME.rglob("*.py")):
        for value in _help_keywords(path):
            parts = [v.value for v in ast.walk(value) if isinstance(v, ast.Constant) and isinstance(v.value, str)]
            if isinstance(value, ast.JoinedStr):
                continue
            out += [(f"{path.relative_to(REPO)}:{value.lineno}", part) for part in parts]
    return out


def rendered_hints() -> list[tuple[str, str]]:
    """Hints whose text is built from the data: raised for real, one per case."""
    from ftc.runtime.data.errors import DataError
    from ftc.runtime.data.formats import FIELDS, FormatSpec, _missing_columns, missing_columns
    from ftc.runtime.data.preference import FIELDS as PREFERENCE_FIELDS
    from ftc.runtime.data.sources import Source

    out = []
    source = Source("jsonl", "/x.jsonl", "x.jsonl")
    for fmt in FIELDS:
        with pytest.raises(DataError) as raised:
            _missing_columns(FormatSpec(fmt, {}), ["other"], source)
        out.append((f"missing columns ({fmt})", raised.value.help))
    for fmt, fields in PREFERENCE_FIELDS.items():
        error = missing_columns(fmt, {f: f for f in fields}, ["other"], source)
        out.append((f"missing columns ({fmt})", error.help))
    out += _template_end_hints()
    return out


def _template_end_hints() -> list[tuple[str, str]]:
    """A named template whose end-of-turn text the tokenizer splits: the hint says which tokens to add."""
    transformers = pytest.importorskip("transformers")
    from ftc.plan.chat_templates import NAMED
    from ftc.runtime.data.errors import DataError
    from ftc.runtime.data.render import _template_end_id
    from ftc.runtime.data.templates import named

    tokenizer = transformers.AutoTokenizer.from_pretrained(REPO / "examples" / "tiny" / "model")
    out = []
    for name in NAMED:
        try:
            _template_end_id(tokenizer, named(name))
        except DataError as exc:
            out.append((f"template end ({name})", exc.help))
    assert out, "the tiny tokenizer splits no template's end token: this hint is not rendered"
    return out


def _formatted_hints_with_spellings() -> list[str]:
    """f-string hints that quote a recipe spelling: each must be one `rendered_hints` covers."""
    found = []
    for path in sorted(RUNTIME.rglob("*.py")):
        for value in _help_keywords(path):
            if isinstance(value, ast.JoinedStr):
                text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in value.values)
                if "= " in text or "{ " in text:
                    found.append(f"{path.relative_to(REPO)}")
    return found


def test_every_formatted_hint_with_a_spelling_is_rendered():
    assert _formatted_hints_with_spellings() == ["runtime/data/formats.py", "runtime/data/render.py"], \
        "a new hint built with an f-string quotes a recipe spelling: render it in rendered_hints()"


@pytest.mark.parametrize("where,hint", static_hints() + rendered_hints())
def test_hint_spellings_check(where, hint, tmp_path):
    for snippet in spellings(hint):
        recipe = tmp_path / "hint.ftspec"
        recipe.write_text(_insert(snippet), encoding="utf-8")
        compiled = compile_recipe(recipe, out_dir=tmp_path / "out")
        errors = [f"{d.code} {d.message}" for d in compiled.diagnostics if d.is_error]
        assert not errors, f"{where}: the hint suggests `{snippet}`, which ftc check refuses: {errors}"


def test_the_missing_column_hint_quotes_the_block_form():
    hint = dict(rendered_hints())["missing columns (chat)"]
    assert spellings(hint) == ['columns { messages = "..." }']
