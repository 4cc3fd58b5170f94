"""Resolution: extends chains, --set overrides, defaults and provenance, the LANGUAGE.md surface."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ftc.compiler.frontend import analyze
from ftc.compiler.parse import parse_text
from ftc.compiler.schema import AUTO, BLOCKS
from ftc.compiler.units import Amount

REPO = Path(__file__).resolve().parent.parent
LANGUAGE_CORE = Path(__file__).parent / "data" / "language_core.ftspec"

PARENT = """recipe "parent"

model "org/base" {
  dtype = bf16
}

method qlora {
  rank  = 8
  quant = nf4
}

data {
  train      = "data/train.jsonl"
  format     = chat
  max_length = 512
}

train {
  epochs       = 2
  lr           = 2e-4
  global_batch = 8
  warmup       = 10 steps
}
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "base" / "data").mkdir(parents=True)
    (tmp_path / "base" / "data" / "train.jsonl").write_text("{}\n")
    (tmp_path / "base" / "parent.ftspec").write_text(PARENT)
    return tmp_path


def codes(analysis) -> list[str]:
    return [d.code for d in analysis.diagnostics]


def test_extends_merges_child_over_parent_with_provenance(project):
    (project / "child.ftspec").write_text('extends "base/parent.ftspec"\nrecipe "child"\n\n'
                                          'train {\n  lr = 1e-4\n}\n')
    analysis = analyze("child.ftspec")
    assert analysis.ok, codes(analysis)
    recipe = analysis.recipe
    assert recipe.name == "child"
    assert recipe.value("train.lr") == 1e-4 and recipe.provenance("train.lr") == "explicit"
    assert recipe.value("train.global_batch") == 8 and recipe.provenance("train.global_batch") == "inherited"
    assert recipe.value("train.schedule") == "cosine" and recipe.provenance("train.schedule") == "default"
    assert recipe.value("data.train_on") == "completions" and recipe.provenance("data.train_on") == "derived"
    assert recipe.value("train.micro_batch") is AUTO
    assert recipe.files == ("base/parent.ftspec", "child.ftspec")
    # a parent's relative path stays relative to the parent
    assert recipe.resolve_path("data.train", "data/train.jsonl") == (project / "base/data/train.jsonl").resolve()


def test_child_label_replaces_variant_block(project):
    (project / "child.ftspec").write_text('extends "base/parent.ftspec"\nmethod lora {\n  alpha = 16\n}\n')
    recipe = analyze("child.ftspec").recipe
    assert recipe.value("method") == "lora"
    assert recipe.value("method.quant") is None  # the parent's qlora fields are gone with its block
    assert recipe.value("method.rank") == 16 and recipe.provenance("method.rank") == "default"


def test_extends_cycle_and_missing_file(project):
    (project / "a.ftspec").write_text('extends "b.ftspec"\n')
    (project / "b.ftspec").write_text('extends "a.ftspec"\n')
    analysis = analyze("a.ftspec")
    assert "E0114" in codes(analysis)
    cycle = next(d for d in analysis.diagnostics if d.code == "E0114")
    assert cycle.span.file == "b.ftspec" and cycle.span.line == 1 and "a.ftspec -> b.ftspec -> a.ftspec" in cycle.notes[0]
    (project / "c.ftspec").write_text('recipe "c"\nextends "nowhere.ftspec"\n')
    missing = analyze("c.ftspec")
    d = next(d for d in missing.diagnostics if d.code == "E0112")
    assert (d.span.file, d.span.line, d.span.column) == ("c.ftspec", 2, 9)


def test_a_missing_parent_is_the_only_error(project):
    """What the unread parent would have provided is unknown: no follow-on missing blocks or fields."""
    (project / "child.ftspec").write_text('extends "nowhere.ftspec"\nrecipe "child"\n\ntrain {\n  epochs = 1\n}\n')
    analysis = analyze("child.ftspec")
    assert codes(analysis) == ["E0112"] and analysis.recipe is None
    (project / "a.ftspec").write_text('extends "b.ftspec"\nrecipe "a"\n')
    (project / "b.ftspec").write_text('extends "a.ftspec"\n')
    assert codes(analyze("a.ftspec")) == ["E0114"]


def test_set_overrides_are_typed_like_file_values(project):
    good = analyze("base/parent.ftspec", ("train.lr=5e-5", "train.warmup=5%", "method=lora", "data.packing=on"))
    assert good.ok, codes(good)
    recipe = good.recipe
    assert recipe.value("train.lr") == 5e-5 and recipe.provenance("train.lr") == "override"
    assert recipe.value("train.warmup") == Amount(0.05, "ratio")
    assert recipe.value("method") == "lora" and recipe.value("data.packing") is True
    bad = analyze("base/parent.ftspec", ("train.warmup=5", "train.lr", "trian.lr=1"))
    assert codes(bad) == ["E0205", "E0120", "E0101"]
    assert bad.diagnostics[0].span.file == "--set #1" and bad.diagnostics[0].span.column == 14


def test_a_wrong_value_is_not_reported_again_as_a_missing_one(project):
    """One mistake, one error: a field written with a wrong value is not also "missing" to the rules
    that need it (packing needs max_length, evaluation needs eval data, QLoRA needs quant)."""
    overrides = ("data.packing=true", "data.max_length=1e9", "data.eval_split=60%", "train.eval_every=10 steps",
                 "method.quant=nf5")
    bad = analyze("base/parent.ftspec", overrides)
    assert codes(bad) == ["E0204", "E0204", "E0203"]
    assert [d.span.file for d in bad.diagnostics] == ["--set #2", "--set #3", "--set #5"]
    assert "at most 1048576" in bad.diagnostics[0].message  # an integer bound, not 1.04858e+06
    assert bad.recipe.invalid == {"data.max_length", "data.eval_split", "method.quant"}
    # the same rules still fire when the field is absent
    absent = analyze("base/parent.ftspec", ("data.packing=true", "train.eval_every=10 steps", "method=qlora"))
    assert "E0408" in codes(absent)


def test_batch_sizes_are_bounded(project):
    """A batch of more than 2**20 sequences is a range error (every divisor search stays small)."""
    for field in ("global_batch", "micro_batch", "grad_accum"):
        bad = analyze("base/parent.ftspec", (f"train.{field}=1e30",))
        assert codes(bad) == ["E0204"], field
        assert "at most 1048576" in bad.diagnostics[0].message
    assert analyze("base/parent.ftspec", ("train.global_batch=1048576",)).ok


def test_units_resolve_to_canonical_values(project):
    text = PARENT + "\nhardware {\n  memory_per_gpu = 80GB\n  cpu_memory = 1 TiB\n}\n"
    (project / "u.ftspec").write_text(text.replace('"data/train.jsonl"', '"base/data/train.jsonl"'))
    recipe = analyze("u.ftspec").recipe
    assert recipe.value("hardware.memory_per_gpu") == 80 * 10**9
    assert recipe.value("hardware.cpu_memory") == 2**40
    assert recipe.value("train.epochs") == Amount(2, "epochs")


def test_language_md_surface_parses_and_uses_known_fields():
    """Every block and field in LANGUAGE.md's core listing parses and is in the schema."""
    text = LANGUAGE_CORE.read_text()
    recipe, diagnostics = parse_text(text, "language_core.ftspec")
    assert recipe is not None and not diagnostics, diagnostics
    seen = 0
    for block in recipe.blocks:
        spec = BLOCKS[block.kind]
        for attribute in block.attributes:
            if spec.dotted_entries and len(attribute.key) > 1:
                target_block, field = attribute.key
                assert BLOCKS[target_block].field(field) is not None, attribute.dotted
            else:
                assert spec.field(attribute.dotted) is not None, f"{block.kind}.{attribute.dotted}"
            seen += 1
    assert seen > 50


def test_language_core_copy_matches_shared_contract():
    shared = REPO.parent / "shared" / "LANGUAGE.md"
    if not shared.exists():
        pytest.skip("shared/LANGUAGE.md is not beside this checkout")
    blocks = re.findall(r"```\n(.*?)```", shared.read_text(), flags=re.S)
    core = next(b for b in blocks if "sweep {" in b)
    assert core == LANGUAGE_CORE.read_text()


def test_a_columns_block_is_typed_and_reaches_the_plan(project):
    """`data { columns { ... } }` (the nested block) resolves like any field, never a traceback."""
    from ftc.compiler.pipeline import compile_recipe

    text = (project / "base" / "parent.ftspec").read_text().replace(
        "  max_length = 512\n", '  max_length = 512\n  columns {\n    messages = "conversations"\n  }\n')
    (project / "base" / "parent.ftspec").write_text(text)
    (project / "base" / "data" / "train.jsonl").write_text("{}\n" * 100)  # more steps than the warmup
    analysis = analyze("base/parent.ftspec")
    assert analysis.ok, codes(analysis)
    assert analysis.recipe.value("data.columns.messages") == "conversations"
    compiled = compile_recipe("base/parent.ftspec", out_dir=project / "build")
    assert compiled.ok, [d.message for d in compiled.diagnostics]
    assert compiled.plan["data"]["columns"] == {"messages": "conversations"}
