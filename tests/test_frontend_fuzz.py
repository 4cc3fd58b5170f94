"""No input makes `ftc check` print a traceback: every result is exit 0, or exit 1 with located errors.

Hypothesis drives random bytes, mutations of the shipped examples and random token soups, over
10,000+ cases in all; fixed cases cover deep nesting, a 5 MB file, invalid UTF-8 and NUL bytes,
the last through the real command line.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings

from fuzz_settings import examples, fuzz_settings
from hypothesis import strategies as st

from ftc.cli import main
from ftc.compiler.frontend import analyze
from ftc.compiler.render import render_all_text

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "examples").glob("*.ftspec"))
EXAMPLE_BYTES = [p.read_bytes() for p in EXAMPLES]
FUZZ_DIR = None

TOKENS = ["model", "method", "lora", "qlora", "data", "train", "hardware", "sweep", "distributed", "deepspeed",
          "checkpoint", "recipe", "extends", "{", "}", "[", "]", "(", ")", "=", ";", ",", ".", "%", "\n", " ",
          "\"x\"", "\"", "#c\n", "lr", "rank", "2e-4", "16", "-1", "0.5", "GiB", "Gb", "steps", "epochs", "auto",
          "true", "on", "bf16", "loguniform", "choice", "int", "minimize", "eval_loss", "train.lr", "\t", "\r\n",
          "\x00", "é", "\\", "1e999", "nan", "max_steps", "global_batch", "micro_batch", "warmup", "zero"]


def run_check_bytes(data: bytes, directory: Path) -> tuple[int, str]:
    """What `ftc check` does, minus argument parsing: analyze, then render every diagnostic."""
    path = directory / "fuzz.ftspec"
    path.write_bytes(data)
    analysis = analyze(path)
    text = render_all_text(list(analysis.diagnostics), analysis.registry)
    for d in analysis.diagnostics:
        assert d.span is not None and d.span.line >= 1 and d.span.column >= 1, d
    return (0 if analysis.ok else 1), text


def run_cli_bytes(data: bytes, directory: Path) -> tuple[int, str]:
    path = directory / "fuzz.ftspec"
    path.write_bytes(data)
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(["check", str(path), "--format", "text"])
    return code, err.getvalue()


def assert_clean_outcome(code: int, err: str) -> None:
    assert code in (0, 1), err
    assert "Traceback" not in err
    if code == 1:
        assert "error[E" in err and "-->" in err, err


def _dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


FUZZ_SETTINGS = fuzz_settings(deadline=None, database=None, derandomize=True,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@settings(max_examples=examples(3000), **FUZZ_SETTINGS)
@given(data=st.binary(max_size=400))
def test_random_bytes(data, tmp_path_factory):
    assert_clean_outcome(*run_check_bytes(data, _shared_dir(tmp_path_factory)))


@settings(max_examples=examples(5000), **FUZZ_SETTINGS)
@given(index=st.integers(0, len(EXAMPLE_BYTES) - 1),
       edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 8), st.binary(max_size=6)), min_size=1,
                      max_size=4))
def test_mutated_examples(index, edits, tmp_path_factory):
    data = bytearray(EXAMPLE_BYTES[index])
    for position, delete, insert in edits:
        at = position % (len(data) + 1)
        data[at:at + delete] = insert
    assert_clean_outcome(*run_check_bytes(bytes(data), _shared_dir(tmp_path_factory)))


@settings(max_examples=examples(2500), **FUZZ_SETTINGS)
@given(tokens=st.lists(st.sampled_from(TOKENS), max_size=60))
def test_token_soup(tokens, tmp_path_factory):
    assert_clean_outcome(*run_check_bytes("".join(tokens).encode("utf-8"), _shared_dir(tmp_path_factory)))


_SHARED: dict[str, Path] = {}


def _shared_dir(factory) -> Path:
    if "dir" not in _SHARED:
        _SHARED["dir"] = factory.mktemp("fuzz")
        (_SHARED["dir"] / "data" / "support").mkdir(parents=True)
    return _SHARED["dir"]


def test_deep_nesting(tmp_path):
    for data in (b"train {" * 5000, b"train { x = " + b"[" * 5000 + b"]" * 5000 + b" }",
                 b"train { x = " + b"f(" * 3000 + b")" * 3000 + b" }"):
        code, err = run_cli_bytes(data, tmp_path)
        assert code == 1 and "Traceback" not in err
        assert "E0009" in err or "E0005" in err


def test_five_megabyte_file(tmp_path):
    body = "".join(f"  # padding comment {i}\n" for i in range(200_000))
    data = ("train {\n" + body + "}\n").encode()
    assert len(data) > 5 * 10**6
    code, err = run_cli_bytes(data, tmp_path)
    assert_clean_outcome(code, err)
    assert "missing block `model`" in err


def test_long_line_is_windowed(tmp_path):
    code, err = run_check_bytes(b"train { x = " + b"a" * 100_000 + b" \x01 }", tmp_path)
    assert code == 1 and "E0007" in err
    assert max(len(line) for line in err.splitlines()) < 400


def test_real_cli_on_hostile_bytes(tmp_path):
    """Invalid UTF-8 and NUL bytes through the installed command: located errors, never a traceback."""
    cases = {
        "invalid_utf8.ftspec": b'recipe "x"\nmodel "\xff\xfe" {\n}\n',
        "nul.ftspec": b'recipe "x"\x00\nmodel "m" {}\n',
        "bom_crlf.ftspec": b'\xef\xbb\xbfrecipe "x"\r\nmodel "m" {\r\n  dtype = bf16\r\n}\r\n',
    }
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        proc = subprocess.run([sys.executable, "-m", "ftc", "check", name], cwd=tmp_path, capture_output=True,
                              text=True, env=env, timeout=60)
        assert proc.returncode == 1, proc.stderr
        assert "Traceback" not in proc.stderr
        assert f"--> {name}:" in proc.stderr
    invalid = subprocess.run([sys.executable, "-m", "ftc", "check", "invalid_utf8.ftspec"], cwd=tmp_path,
                             capture_output=True, text=True, env=env, timeout=60)
    assert "E0008" in invalid.stderr and "invalid_utf8.ftspec:2:8" in invalid.stderr
    bom = subprocess.run([sys.executable, "-m", "ftc", "check", "bom_crlf.ftspec"], cwd=tmp_path,
                         capture_output=True, text=True, env=env, timeout=60)
    assert "E0109" in bom.stderr and "E0008" not in bom.stderr and "E0007" not in bom.stderr


def test_control_characters_never_reach_a_path(tmp_path):
    """A NUL inside a string (bare, or after a backslash) is E0014 where it stands; `extends` and data
    paths never see it (os calls raise on a NUL)."""
    for data in (b'extends "base\x00.ftspec"\n', b'extends "base\\\x00.ftspec"\n',
                 b'data {\n  train = "t\x01.jsonl"\n}\n'):
        code, err = run_check_bytes(data, tmp_path)
        assert code == 1 and "Traceback" not in err and "error[E0014]" in err, err
