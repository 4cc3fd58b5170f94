"""The editor grammars. The TextMate grammar (editors/vscode) is run by the engine VS Code uses (vscode-textmate
with vscode-oniguruma, installed by `make textmate`) on every example and an all-tokens fixture; the scopes are
compared with goldens. The Vim syntax file is loaded by Vim where it is installed."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
GRAMMAR = REPO / "editors" / "vscode" / "syntaxes" / "ftspec.tmLanguage.json"
ENGINE = REPO / "tests" / "textmate"
GOLDENS = REPO / "tests" / "goldens" / "textmate"
SOURCES = sorted((REPO / "examples").glob("*.ftspec")) + [REPO / "tests" / "data" / "grammar" / "edge.ftspec"]


def tokenize(paths: list[Path]) -> dict[str, str]:
    node = shutil.which("node")
    assert node, "node (v18 or newer) is needed to run the TextMate engine"
    assert (ENGINE / "node_modules" / "vscode-textmate").is_dir(), "run `make textmate` (npm ci in tests/textmate)"
    result = subprocess.run([node, str(ENGINE / "tokenize.js"), str(GRAMMAR), *map(str, paths)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = {}
    for chunk in result.stdout.split("== ")[1:]:
        name, _, body = chunk.partition("\n")
        out[name] = body
    return out


def test_textmate_scopes_match_goldens(golden):
    tokens = tokenize(SOURCES)
    assert sorted(tokens) == sorted(p.name for p in SOURCES)
    for name, body in tokens.items():
        golden(GOLDENS / (Path(name).stem + ".tokens"), body)


def test_textmate_scopes_the_language():
    """What the goldens hold, said once: the scopes each kind of token gets in the all-tokens fixture."""
    body = tokenize([SOURCES[-1]])["edge.ftspec"]
    scoped = {}
    for line in body.splitlines():
        _, text, scopes = line.split("\t")
        scoped.setdefault(json.loads(text), scopes.split(" ")[-1])
    expected = {"recipe": "keyword.control.directive.ftspec", "model": "entity.name.type.block.ftspec",
                "qlora": "entity.name.tag.label.ftspec", "rank": "variable.other.property.ftspec",
                "auto": "constant.language.auto.ftspec", "off": "constant.language.boolean.ftspec",
                "10": "constant.numeric.ftspec", "%": "keyword.other.unit.ftspec", "GiB": "keyword.other.unit.ftspec",
                "tokens": "keyword.other.unit.ftspec", "loguniform": "support.function.search-space.ftspec",
                "maximize": "keyword.other.direction.ftspec", "nf4": "constant.other.value.ftspec",
                "mlflow": "constant.other.value.ftspec", "train.lr": "variable.other.property.ftspec",
                "\\\"": "constant.character.escape.ftspec", "# inside a list": "comment.line.number-sign.ftspec",
                "columns": "entity.name.type.block.ftspec", "{": "punctuation.section.block.begin.ftspec"}
    assert {text: scoped.get(text) for text in expected} == expected


def test_vscode_extension_folder_is_consistent():
    package = json.loads((REPO / "editors" / "vscode" / "package.json").read_text())
    grammar = json.loads(GRAMMAR.read_text())
    (contributed,) = package["contributes"]["grammars"]
    assert contributed["scopeName"] == grammar["scopeName"] == "source.ftspec"
    assert (REPO / "editors" / "vscode" / contributed["path"]).resolve() == GRAMMAR
    assert package["contributes"]["languages"][0]["extensions"] == [".ftspec"]
    assert '"lsp"' in (REPO / "editors" / "vscode" / "extension.js").read_text()
    json.loads((REPO / "editors" / "vscode" / "language-configuration.json").read_text())


@pytest.mark.skipif(shutil.which("vim") is None, reason="Vim is not installed")
def test_vim_syntax_names_the_tokens(tmp_path):
    source = SOURCES[-1]
    lines = source.read_text().splitlines()

    def at(text: str, needle: str) -> str:
        index = next(i for i, line in enumerate(lines) if needle in line and not line.startswith("#"))
        return f"[{index + 1}, {lines[index].index(needle) + 1}]"

    probes = {"recipe": "ftspecDirective", "method": "ftspecBlock", "qlora": "ftspecLabel", "zero": "ftspecKey",
              "auto": "ftspecAuto", "10%": "ftspecNumber", "GiB": "ftspecUnit", "loguniform": "ftspecFunction",
              "maximize": "ftspecDirection", '"question"': "ftspecString", "# inside": "ftspecComment"}
    positions = ", ".join(at(source, needle) for needle in probes)
    script = tmp_path / "probe.vim"
    out = tmp_path / "names.txt"
    script.write_text(f"""set nocompatible
let &rtp = '{REPO / 'editors' / 'vim'},' . &rtp
filetype on
syntax on
edit {source}
call writefile(map([{positions}], {{_, p -> synIDattr(synID(p[0], p[1], 1), 'name')}}), '{out}')
qall!
""")
    subprocess.run(["vim", "-Nu", "NONE", "-i", "NONE", "-es", "-S", str(script)], stdin=subprocess.DEVNULL,
                   capture_output=True, timeout=60)
    assert out.read_text().split("\n")[:len(probes)] == list(probes.values())
