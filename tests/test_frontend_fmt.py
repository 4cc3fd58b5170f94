"""`ftc fmt`: canonical, idempotent, keeps every comment, and never changes the meaning."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ftc.cli import main
from ftc.compiler.fmt import format_recipe, normalized
from ftc.compiler.parse import parse_text

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "examples").glob("*.ftspec"))

MESSY = """# header
recipe   "x"    # name
model "m" {   # on the header
  dtype=bf16 # trailing
    # before revision
  revision = "main"


  attention=sdpa; trust_remote_code = off
  t = [a, # inside a list
   b]
}
method lora { rank=8
  # last in block
}    # after the block
train{lr=2e-4;global_batch=8
warmup = 3 %
  nested_first { a = 1 }
  epochs = 2 epochs}
# end of file
"""

EXPECTED = """# header
recipe "x"  # name

model "m" {  # on the header
  dtype    = bf16  # trailing
  # before revision
  revision = "main"

  attention         = sdpa
  trust_remote_code = off
  # inside a list
  t                 = [a, b]
}

method lora {
  rank = 8
  # last in block
}  # after the block

train {
  lr           = 2e-4
  global_batch = 8
  warmup       = 3%
  epochs       = 2 epochs

  nested_first {
    a = 1
  }
}
# end of file
"""


def fmt(text: str) -> str:
    recipe, diagnostics = parse_text(text, "t.ftspec")
    assert recipe is not None, diagnostics
    return format_recipe(recipe, text)


def comments_of(text: str) -> list[str]:
    recipe, _ = parse_text(text, "t.ftspec")
    return sorted(c.text for c in recipe.comments)


def test_canonical_form():
    assert fmt(MESSY) == EXPECTED


def test_idempotent_and_meaning_preserving():
    once = fmt(MESSY)
    assert fmt(once) == once
    assert normalized(parse_text(once, "t")[0]) == normalized(parse_text(MESSY, "t")[0])
    assert comments_of(once) == comments_of(MESSY)


def test_examples_are_formatted():
    for path in EXAMPLES:
        text = path.read_text()
        assert fmt(text) == text, f"{path.name} is not formatted: run `ftc fmt {path}`"


def test_cli_check_diff_and_write(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.ftspec").write_text(MESSY)
    err = io.StringIO()
    out = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        assert main(["fmt", "--check", "r.ftspec"]) == 1
        assert main(["fmt", "--diff", "r.ftspec"]) == 1
    assert "r.ftspec: not formatted" in err.getvalue()
    assert "+  lr           = 2e-4" in out.getvalue()
    assert (tmp_path / "r.ftspec").read_text() == MESSY  # --check and --diff write nothing
    with contextlib.redirect_stderr(io.StringIO()):
        assert main(["fmt", "r.ftspec"]) == 0
        assert main(["fmt", "--check", "r.ftspec"]) == 0
    assert (tmp_path / "r.ftspec").read_text() == EXPECTED


def test_cli_refuses_to_format_a_broken_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    broken = "train {\n  lr = 2e-4\n"
    (tmp_path / "b.ftspec").write_text(broken)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["fmt", "b.ftspec"]) == 1
    assert "E0005" in err.getvalue()
    assert (tmp_path / "b.ftspec").read_text() == broken


# Random recipes: blocks of attributes with values of every kind, comments and blank lines.
names = st.sampled_from(["lr", "rank", "x", "warmup", "targets", "gpu", "a_b", "z9"])
atoms = st.one_of(
    st.integers(-10**6, 10**6).map(str),
    st.sampled_from(["2e-4", "0.05", "1_000", "1e3"]),
    st.text("abcxyz \"\\é", max_size=8).map(lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'),
    st.sampled_from(["bf16", "auto", "on", "a100-80gb", "all_linear"]),
    st.tuples(st.integers(0, 999), st.sampled_from(["steps", "GiB", "%", "GB", " %"])).map(lambda t: f"{t[0]}{t[1]}"
                                                                                           if t[1] in ("GB", "%") else f"{t[0]} {t[1].strip()}"),
)
values = st.one_of(atoms, st.lists(atoms, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
                   st.lists(atoms, min_size=1, max_size=3).map(lambda xs: "choice(" + ",".join(xs) + ")"))
comment = st.one_of(st.just(""), st.text("abc #", max_size=6).map(lambda s: "  # " + s))
attribute = st.tuples(names, values, comment, st.booleans()).map(
    lambda t: ("\n" if t[3] else "") + f"  {t[0]} = {t[1]}{t[2]}")
block = st.tuples(st.sampled_from(["train", "model \"m\"", "method lora", "data"]),
                  st.lists(attribute, max_size=5), comment).map(
    lambda t: f"{t[0]} {{{t[2]}\n" + "\n".join(t[1]) + "\n}")
recipe_text = st.lists(block, min_size=1, max_size=4).map(lambda bs: "\n".join(bs) + "\n")


@settings(max_examples=300, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(recipe_text)
def test_random_recipes_round_trip(text):
    recipe, diagnostics = parse_text(text, "t")
    assert recipe is not None, (text, diagnostics)
    once = format_recipe(recipe, text)
    again, _ = parse_text(once, "t")
    assert again is not None, once
    assert normalized(again) == normalized(recipe)
    assert format_recipe(again, once) == once
    assert sorted(c.text.rstrip() for c in again.comments) == sorted(c.text.rstrip() for c in recipe.comments)
