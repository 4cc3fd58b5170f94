"""Golden tests for rendered diagnostics: each case is a small recipe with one kind of mistake.

Refresh with `pytest tests/test_frontend_diagnostics.py --update-goldens` after a deliberate change.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from ftc.cli import main

GOLDENS = Path(__file__).parent / "goldens" / "diagnostics"

BASE = """recipe "case"

model "meta-llama/Llama-2-7b-hf" {
  dtype = bf16
}

method lora {
  rank = 8
}

data {
  train      = "data/train.jsonl"
  format     = chat
  max_length = 512
}

train {
  epochs       = 1
  lr           = 2e-4
  global_batch = 8
}
"""


def with_block(extra: str) -> str:
    return BASE + "\n" + extra


def replace(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new)


# name -> (recipe text, --set overrides)
CASES: dict[str, tuple[str, tuple[str, ...]]] = {
    "unknown_field": (replace("  lr           = 2e-4", "  learning_rate = 2e-4\n  lr = 2e-4"), ()),
    "unknown_field_typo": (replace("  rank = 8", "  rnak = 8"), ()),
    "unknown_block": (with_block("trian {\n  seed = 1\n}\n"), ()),
    "unknown_statement": (replace('recipe "case"', 'recipe "case"\nextend "base.ftspec"'), ()),
    "unknown_enum": (replace("  dtype = bf16", "  dtype = bf61"), ()),
    "unknown_method": (replace("method lora {", "method lorra {"), ()),
    "wrong_type_string_for_number": (replace("lr           = 2e-4", 'lr           = "2e-4"'), ()),
    "wrong_type_bool": (replace("  max_length = 512", "  max_length = 512\n  packing = yes"), ()),
    "unit_gb_typo": (with_block("hardware {\n  memory_per_gpu = 24 Gb\n}\n"), ()),
    "unit_missing": (replace("  global_batch = 8", "  global_batch = 8\n  warmup = 100"), ()),
    "unit_wrong_dimension": (replace("  epochs       = 1", "  epochs       = 500 steps"), ()),
    "out_of_range": (replace("  lr           = 2e-4", "  lr           = 0"), ()),
    "missing_required_field": (replace("  lr           = 2e-4\n", ""), ()),
    "missing_block": (BASE.split("train {")[0], ()),
    "block_without_braces": (replace("method lora {\n  rank = 8\n}", "method lora"), ()),
    "syntax_block_name_alone": (with_block("hardware\n"), ()),
    "syntax_name_alone_typo": (with_block("trian\n"), ()),
    "duplicate_field": (replace("  rank = 8", "  rank = 8\n  rank = 16"), ()),
    "duplicate_block": (with_block("model \"other\" {\n}\n"), ()),
    "field_of_other_variant": (replace("  rank = 8", "  rank = 8\n  quant = nf4"), ()),
    "label_missing": (replace("method lora {", "method {"), ()),
    "model_label_missing": (replace('model "meta-llama/Llama-2-7b-hf" {', "model {"), ()),
    "label_written_as_field": (replace("method lora {", "method {\n  adapter = lora"), ()),
    "epochs_and_max_steps": (replace("  epochs       = 1", "  epochs       = 1\n  max_steps    = 100 steps"), ()),
    "eval_split_with_eval": (replace('  format     = chat',
                                     '  eval       = "data/train.jsonl"\n  eval_split = 10%\n  format     = chat'), ()),
    "packing_without_max_length": (replace("  max_length = 512", "  packing    = true"), ()),
    "qlora_without_quant": (replace("method lora {", "method qlora {"), ()),
    "batch_not_divisible": (replace("  global_batch = 8", "  global_batch = 8\n  micro_batch  = 3"), ()),
    "batch_world_not_divisible": (with_block("hardware {\n  gpu = a100-80gb\n  gpus_per_node = 3\n}\n"), ()),
    "trust_remote_code_warning": (replace("  dtype = bf16", "  dtype = bf16\n  trust_remote_code = true"), ()),
    "keep_best_without_eval": (with_block("checkpoint {\n  keep_best = eval_loss\n}\n"), ()),
    "data_file_missing": (replace('"data/train.jsonl"', '"data/missing.jsonl"'), ()),
    "model_folder_missing": (replace('"meta-llama/Llama-2-7b-hf"', '"./models/llama-7b"'), ()),
    "sweep_bad_space": (with_block("sweep {\n  trials = 4\n  train.lr = logunform(1e-5, 1e-3)\n}\n"), ()),
    "sweep_empty_range": (with_block("sweep {\n  trials = 4\n  objective = minimize train_loss\n"
                                     "  train.lr = loguniform(1e-3, 1e-5)\n}\n"), ()),
    "sweep_not_tunable": (with_block("sweep {\n  trials = 4\n  objective = minimize train_loss\n"
                                     "  model.dtype = choice(bf16, fp16)\n}\n"), ()),
    "offload_params_needs_zero3": (with_block("hardware {\n  gpu = a100-80gb\n  gpus_per_node = 2\n}\n\n"
                                              "distributed deepspeed {\n  zero = 2\n  offload_params = cpu\n}\n"), ()),
    "fp16_on_cpu": (replace("  dtype = bf16", "  dtype = fp16") + "\nhardware {\n  accelerator = cpu\n}\n", ()),
    "fp16_full_fine_tuning": (replace("  dtype = bf16", "  dtype = fp16").replace("method lora {\n  rank = 8\n}",
                                                                                "method full {}"), ()),
    "bf16_on_a_gpu_without_it": (with_block("hardware {\n  gpu = v100-32gb\n}\n"), ()),
    "qlora_fsdp_on_gpus": (replace("method lora {\n  rank = 8\n}", "method qlora {\n  rank = 8\n  quant = nf4\n}")
                           + "\nhardware {\n  gpu = a100-80gb\n  gpus_per_node = 2\n}\n\ndistributed fsdp {}\n", ()),
    "bare_percent": (replace("  global_batch = 8", "  global_batch = 8\n  warmup       = %\n  seed         = [%]"),
                     ("train.max_grad_norm=%",)),
    "qlora_offload_params_means_zero3": (replace("method lora {\n  rank = 8\n}", "method qlora {\n  rank = 8\n  quant = nf4\n}")
                                         + "\nhardware {\n  gpu = a100-80gb\n  gpus_per_node = 2\n}\n\n"
                                           "distributed deepspeed {\n  offload_params = cpu\n}\n", ()),
    "syntax_missing_equals": (replace("  rank = 8", "  rank 8"), ()),
    "syntax_colon": (replace("  rank = 8", "  rank: 8"), ()),
    "syntax_missing_brace": (BASE.rstrip().rstrip("}"), ()),
    "syntax_unterminated_string": (replace('"meta-llama/Llama-2-7b-hf"', '"meta-llama/Llama-2-7b-hf'), ()),
    "syntax_attribute_outside_block": (replace('recipe "case"', 'recipe "case"\nlr = 2e-4'), ()),
    "syntax_foreign_attribute_outside_block": (replace('recipe "case"', 'recipe "case"\nlearning_rate = 2e-4'), ()),
    "syntax_dotted_attribute_outside_block": (replace('recipe "case"', 'recipe "case"\ntrain.lr = 2e-4'), ()),
    "syntax_model_name_outside_block": (replace('recipe "case"', 'recipe "case"\nbase_model = "org/name"'), ()),
    "syntax_variant_field_outside_block": (replace('recipe "case"', 'recipe "case"\nzero = 3'), ()),
    "syntax_two_attributes_one_line": (replace("  rank = 8", "  rank = 8 alpha = 16"), ()),
    "syntax_unknown_escape": (replace('"meta-llama/Llama-2-7b-hf"', '"meta-llama\\qLlama-2-7b-hf"'), ()),
    "syntax_control_character_in_string": (replace('"data/train.jsonl"', '"data/train\x00.jsonl"'), ()),
    "syntax_list_not_closed": (replace("  rank = 8", "  rank = 8\n  targets = [q_proj, v_proj"), ()),
    "set_override_bad_value": (BASE, ("train.lr=fast",)),
    "set_override_list_not_closed": (BASE, ("method.targets=[q_proj, v_proj",)),
    "set_override_unknown_field": (BASE, ("train.learning_rate=1e-4",)),
    "several_errors_at_once": (replace("  dtype = bf16", "  dtype = bf61\n  attention = flash")
                               .replace("  epochs       = 1", "  epochs       = 1 steps\n  schedule = cosin"), ()),
}


def run_check(tmp_path: Path, text: str, overrides: tuple[str, ...], fmt: str = "text") -> tuple[int, str, str]:
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data" / "train.jsonl").write_text('{"messages": []}\n')
    (tmp_path / "case.ftspec").write_text(text, encoding="utf-8")
    argv = ["check", "case.ftspec", "--format", fmt]
    for item in overrides:
        argv += ["--set", item]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("name", sorted(CASES))
def test_rendered_diagnostic(name, tmp_path, monkeypatch, golden):
    text, overrides = CASES[name]
    monkeypatch.chdir(tmp_path)
    code, _, err = run_check(tmp_path, text, overrides)
    expected_code = 0 if name.endswith("_warning") else 1
    assert code == expected_code, err
    assert "Traceback" not in err
    assert "-->" in err, "every diagnostic is located"
    golden(GOLDENS / f"{name}.txt", f"exit {code}\n{err}")


def test_cases_cover_at_least_25_distinct_codes(tmp_path, monkeypatch):
    import json

    monkeypatch.chdir(tmp_path)
    codes = set()
    for text, overrides in CASES.values():
        _, out, _ = run_check(tmp_path, text, overrides, fmt="json")
        codes |= {d["code"] for d in json.loads(out)["diagnostics"]}
    assert len(codes) >= 25, sorted(codes)


def test_all_errors_reported_together(tmp_path, monkeypatch):
    import json

    monkeypatch.chdir(tmp_path)
    text, overrides = CASES["several_errors_at_once"]
    _, out, _ = run_check(tmp_path, text, overrides, fmt="json")
    codes = [d["code"] for d in json.loads(out)["diagnostics"]]
    assert len(codes) >= 4, codes


def test_json_and_github_formats(tmp_path, monkeypatch):
    import json

    monkeypatch.chdir(tmp_path)
    text, _ = CASES["unknown_field"]
    code, out, _ = run_check(tmp_path, text, (), fmt="json")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    first = report["diagnostics"][0]
    assert first["code"] == "E0102" and first["file"] == "case.ftspec"
    assert (first["line"], first["column"]) == (19, 3)
    assert first["help"] == "did you mean `lr`?"
    code, out, _ = run_check(tmp_path, text, (), fmt="github")
    assert code == 1
    assert out.startswith("::error file=case.ftspec,line=19,col=3,endLine=19,endColumn=16,title=E0102::")
    assert "%0Ahelp: did you mean `lr`?" in out


def test_clean_recipe_exits_zero(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_check(tmp_path, BASE, ())
    assert code == 0, err
    assert err.strip() == "case.ftspec: ok"


def test_usage_error_exits_two(capsys):
    with pytest.raises(SystemExit) as info:
        main(["check"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["no-such-command"])
    assert info.value.code == 2
