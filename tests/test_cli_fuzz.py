"""No recipe makes `ftc check`, `ftc estimate` or `ftc compile` raise: line-level edits of the shipped
examples (a value replaced, a line dropped or repeated) and random `--set` overrides, through the real
command functions. Each outcome is exit 0, or exit 1 with located errors, and `check` and `compile` agree.

Byte-level fuzzing of the front end is in test_frontend_fuzz.py; these edits keep recipes close enough to
valid to reach the estimator, the budget pass and lowering, where the byte-level cases rarely get.
"""

from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path

from hypothesis import HealthCheck, given, settings

from fuzz_settings import examples, fuzz_settings
from hypothesis import strategies as st

from ftc.cli import main

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(p.name for p in (REPO / "examples").glob("*.ftspec"))

VALUES = ["%", "auto", "0", "-1", "1", "3", "1e30", "nan", "2 GB", "0 GB", "1e9 GiB", "10%", "150%", "1 steps",
          "0 steps", "2 epochs", "true", "maybe", "[q_proj]", "[]", "[%]", '"x"', '""', "h100-80gb", "t4",
          "v100-16gb", "mi300x", "cpu", "none", "fsdp", "deepspeed", "qlora", "fp16", "bf16", "fp32", "eager",
          "nf4", "choice(8, 4096)", "int(1, 2) tokens", "loguniform(1e-5, 1e-3)", '"openai-community/gpt2"',
          '"mistralai/Mixtral-8x7B-v0.1"', '"facebook/opt-1.3b"', '"nowhere.ftspec"', "{", "}"]
KEYS = ["model", "model.dtype", "model.attention", "method", "method.rank", "method.targets", "method.quant",
        "method.compute_dtype", "data.max_length", "data.packing", "train.lr", "train.global_batch",
        "train.micro_batch", "train.max_steps", "train.warmup", "train.gradient_checkpointing", "train.optimizer",
        "hardware.gpu", "hardware.memory_per_gpu", "hardware.gpus_per_node", "hardware.nodes",
        "hardware.cpu_memory", "hardware.accelerator", "distributed", "distributed.zero",
        "distributed.offload_params", "sweep.trials", "sweep.method.rank", "sweep.data.max_length",
        "checkpoint.every", "train.eval_every"]
COMMANDS = (["check"], ["estimate"], ["estimate", "--json"], ["compile", "--out", "build"])

_SHARED: dict[str, Path] = {}


def examples_copy(factory) -> Path:
    """The examples folder once per session: edited recipes sit beside their parents and data."""
    if "dir" not in _SHARED:
        root = factory.mktemp("cli-fuzz")
        shutil.copytree(REPO / "examples", root / "examples", ignore=shutil.ignore_patterns("runs", "build"))
        _SHARED["dir"] = root / "examples"
    return _SHARED["dir"]


def run_all(folder: Path, path: Path, overrides: list[str]) -> None:
    """Every command exits 0 or 1 with located errors, and `check` fails exactly where `compile` does."""
    codes = {}
    for command in COMMANDS:
        argv = [command[0], str(path), *command[1:]]
        if command[0] == "compile":
            argv[-1] = str(folder / "build")
        for item in overrides:
            argv += ["--set", item]
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            code = main(argv)
        assert code in (0, 1), (argv, err.getvalue())
        codes[command[0]] = code
        if code == 1:
            assert "error[E" in err.getvalue() or "-->" in err.getvalue() or "not compiled" in err.getvalue(), \
                (argv, err.getvalue())
    assert codes["check"] == codes["compile"], (path.name, overrides, codes)


FUZZ = fuzz_settings(deadline=None, database=None, derandomize=True,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

edit = st.tuples(st.sampled_from(["value", "drop", "repeat"]), st.integers(0, 10**4), st.sampled_from(VALUES))


@settings(max_examples=examples(200), **FUZZ)
@given(example=st.sampled_from(EXAMPLES), edits=st.lists(edit, min_size=1, max_size=3))
def test_edited_examples(example, edits, tmp_path_factory):
    folder = examples_copy(tmp_path_factory)
    lines = (folder / example).read_text().splitlines()
    for kind, position, value in edits:
        at = position % len(lines)
        if kind == "drop":
            del lines[at]
        elif kind == "repeat":
            lines.insert(at, lines[position % len(lines)])
        elif "=" in lines[at]:
            lines[at] = lines[at].split("=")[0] + "= " + value
        else:
            lines[at] = lines[at] + " " + value
    path = folder / "edited.ftspec"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    run_all(folder, path, [])


@settings(max_examples=examples(150), **FUZZ)
@given(example=st.sampled_from(EXAMPLES),
       overrides=st.lists(st.tuples(st.sampled_from(KEYS), st.sampled_from(VALUES)), min_size=1, max_size=4))
def test_random_overrides(example, overrides, tmp_path_factory):
    folder = examples_copy(tmp_path_factory)
    run_all(folder, folder / example, [f"{key}={value}" for key, value in overrides])


PIECES = ["=", ".", "{", "}", "\n", " ", ";", ":", "#", '"', "[", "]", "\t", "\r\n", "\x00", "é", "auto", "1e9",
          "lr", "train.", "learning_rate = 3\n", "zero = 3\n", 'base_model = "x"\n', "model.x = 1\n", "method",
          '"a\x00b"', '\x00"']
splice = st.tuples(st.booleans(), st.integers(0, 10**5), st.integers(1, 20), st.sampled_from(PIECES))


@settings(max_examples=examples(200), **FUZZ)
@given(example=st.sampled_from(EXAMPLES), splices=st.lists(splice, min_size=1, max_size=4))
def test_examples_cut_and_spliced_character_by_character(example, splices, tmp_path_factory):
    """Edits that ignore line structure: half a token, a stray quote or brace, a control character."""
    folder = examples_copy(tmp_path_factory)
    text = (folder / example).read_text()
    for cut, position, length, piece in splices:
        at = position % (len(text) + 1)
        text = text[:at] + text[at + length:] if cut else text[:at] + piece + text[at:]
    path = folder / "spliced.ftspec"
    path.write_text(text, encoding="utf-8")
    run_all(folder, path, [])
