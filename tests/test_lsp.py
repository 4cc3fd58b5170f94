"""`ftc lsp` in a real client session over stdio (pygls' LanguageClient; the server is `python -m ftc lsp`)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from lsp_session import Session, position_of

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "examples" / "tiny"
GPU_EXAMPLE = REPO / "examples" / "llama2-7b-lora-a100-40gb.ftspec"

# three errors: an unknown field (E0102), a rank out of range, an unknown dtype
BROKEN = f"""recipe "broken"

model "{TINY / 'model'}" {{
  dtype = fp31
}}

method lora {{
  rank  = 0
  alpha = 16

}}

data {{
  train      = "{TINY / 'data' / 'train.jsonl'}"
  format     = chat
  max_length = 128
}}

train {{
  max_steps     = 4 steps
  learning_rate = 1e-3
  global_batch  = 2
}}

hardware {{
  accelerator = cpu
}}
"""


def cli_diagnostics(path: Path) -> list[tuple]:
    result = subprocess.run([sys.executable, "-m", "ftc", "check", "--format", "json", str(path)],
                            capture_output=True, text=True, timeout=120)
    return sorted((d["code"], d["line"] - 1, d["column"] - 1, d["end_line"] - 1, d["end_column"] - 1)
                  for d in json.loads(result.stdout)["diagnostics"])


def lsp_diagnostics(items) -> list[tuple]:
    return sorted((d.code, d.range.start.line, d.range.start.character, d.range.end.line, d.range.end.character)
                  for d in items)


async def _session(tmp_path: Path) -> dict:
    """Every exchange of the session; the assertions are in the tests below."""
    seen: dict = {}
    recipe = tmp_path / "broken.ftspec"
    recipe.write_text(BROKEN)
    session = Session()
    await session.start(tmp_path)
    try:
        uri = session.open(recipe)
        seen["opened"] = await session.next_diagnostics(uri)
        session.change(uri, BROKEN.replace("fp31", "fp32"))
        seen["changed"] = await session.next_diagnostics(uri)
        seen["completion"] = await session.complete(uri, *position_of(BROKEN, "  alpha = 16\n", 13))
        seen["label_completion"] = await session.complete(uri, *position_of(BROKEN, "method lora", 7))
        seen["value_completion"] = await session.complete(uri, *position_of(BROKEN, "format     = chat", 13))
        seen["top_completion"] = await session.complete(uri, *position_of(BROKEN, 'recipe "broken"\n', 16))

        text = GPU_EXAMPLE.read_text()
        gpu = session.open(GPU_EXAMPLE)
        seen["gpu_opened"] = await session.next_diagnostics(gpu)
        seen["hover_auto"] = await session.hover(gpu, *position_of(text, "micro_batch  = auto", 16))
        seen["hover_explicit"] = await session.hover(gpu, *position_of(text, "lr           = 2e-4", 2))
        seen["hover_default"] = await session.hover(gpu, *position_of(text, "  rank", 3))
        seen["hover_hardware"] = await session.hover(gpu, *position_of(text, "hardware", 2))
        seen["formatting"] = await session.format(gpu)

        child = tmp_path / "child.ftspec"
        child_text = f'extends "{GPU_EXAMPLE}"\n\ntrain {{\n  lr = 1e-4\n}}\n'
        child.write_text(child_text)
        child_uri = session.open(child)
        seen["child_opened"] = await session.next_diagnostics(child_uri)
        seen["definition"] = await session.definition(child_uri, 0, 3)
        seen["hover_inherited"] = await session.hover(child_uri, 3, 3)
        unformatted = session.open(tmp_path / "loose.ftspec", 'train {\nlr=1e-4\n}\n')
        seen["format_edit"] = await session.format(unformatted)
    finally:
        await session.stop()
    seen["recipe"] = recipe
    return seen


@pytest.fixture(scope="module")
def seen(tmp_path_factory) -> dict:
    """One session for the tests below (a server start costs about a second). The child recipe in a temporary
    folder extends a repository example, outside its own project: allowed here as `ftc --allow-outside-project`
    allows it (the server inherits the variable)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FTC_ALLOW_OUTSIDE_PROJECT", "1")
        return asyncio.run(_session(tmp_path_factory.mktemp("lsp")))


def test_lsp_session(seen):
    # three diagnostics on open, with the CLI's codes and ranges
    assert len(seen["opened"]) == 3, seen["opened"]
    assert lsp_diagnostics(seen["opened"]) == cli_diagnostics(seen["recipe"])
    assert any("help: " in d.message and "lr" in d.message for d in seen["opened"] if d.code == "E0102")
    # one fixed by an edit: two left, the dtype one gone
    assert len(seen["changed"]) == 2, seen["changed"]
    assert {d.code for d in seen["changed"]} <= {d.code for d in seen["opened"]}
    assert all(d.range.start.line != 3 for d in seen["changed"])
    # completion inside `method lora {`: LoRA's fields, not QLoRA's
    assert {"rank", "alpha", "targets"} <= set(seen["completion"])
    assert "quant" not in seen["completion"] and "lr" not in seen["completion"]
    assert {"full", "lora", "qlora"} == set(seen["label_completion"])
    assert {"text", "chat", "completion", "instruction"} <= set(seen["value_completion"])
    assert {"model", "method", "data", "train", "hardware", "extends"} <= set(seen["top_completion"])


def test_lsp_hover_definition_formatting(seen):
    from ftc.compiler.pipeline import compile_recipe

    assert seen["gpu_opened"] == [] or list(seen["gpu_opened"]) == []
    plan = compile_recipe(GPU_EXAMPLE).plan
    decided = next(a for a in plan["auto"] if a["field"] == "train.micro_batch")
    assert f"resolves to `{decided['value']}` (auto): {decided['reason']}" in seen["hover_auto"]
    assert "Sequences per GPU" in seen["hover_auto"]
    assert "resolves to `0.0002` (explicit)" in seen["hover_explicit"]
    assert "resolves to `16` (explicit)" in seen["hover_default"] and "LoRA rank" in seen["hover_default"]
    peak = plan["memory"]["peak_bytes_per_gpu"] / 2**30
    assert f"peak {peak:.1f} GiB" in seen["hover_hardware"] and "fits 40.0 GiB" in seen["hover_hardware"]
    assert seen["formatting"] == [] or list(seen["formatting"]) == []
    assert seen["definition"].uri.endswith("/examples/llama2-7b-lora-a100-40gb.ftspec")
    assert "resolves to `0.0001` (explicit)" in seen["hover_inherited"]
    assert [e.new_text for e in seen["format_edit"]] == ["train {\n  lr = 1e-4\n}\n"]


def test_lsp_leaves_training_libraries_out():
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "import ftc.lsp.server\n"
        "from ftc.lsp.analysis import compile_buffers\n"
        "from ftc.lsp.hover import memory_markdown\n"
        f"p = Path({str(GPU_EXAMPLE)!r})\n"
        "c = compile_buffers(p, {p: p.read_text()})\n"
        "assert c.ok and 'peak' in memory_markdown(c)\n"
        "heavy = ('torch', 'transformers', 'peft', 'deepspeed', 'accelerate', 'datasets', 'bitsandbytes')\n"
        "print('HEAVY', sorted(m for m in heavy if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout
