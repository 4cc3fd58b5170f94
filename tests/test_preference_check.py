"""The `objective` block on the compile path: located cross-field errors, the lowered plan section, sweeps
over objective fields and metric names checked against what each objective logs."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftc.compiler.pipeline import compile_recipe

BASE = {
    "model": 'model "meta-llama/Llama-2-7b-hf" {}',
    "method": "method lora {}",
    "objective": "objective dpo {}",
    "data": 'data {{ train = "train.jsonl"; format = preference; eval_split = 10%{extra} }}',
    "train": "train { lr = 1e-5; global_batch = 8; max_steps = 10 steps }",
    "hardware": "hardware { gpu = a100-80gb }",
}


FULL_ZERO3 = dict(method="method full {}", train="train { lr = 1e-5; global_batch = 8; micro_batch = 1; "
                  "max_steps = 10 steps; gradient_checkpointing = true }",
                  hardware="hardware { gpu = h100-80gb; gpus_per_node = 8 }\ndistributed deepspeed { zero = 3 }")


def compile_text(tmp_path: Path, *, data_extra: str = "", sets=(), **blocks):
    (tmp_path / "train.jsonl").write_text('{"prompt": "q", "chosen": "a", "rejected": "b"}\n')
    parts = {**BASE, **blocks}
    parts["data"] = parts["data"].format(extra=data_extra)
    path = tmp_path / "r.ftspec"
    path.write_text("\n".join(v for v in parts.values() if v) + "\n")
    return compile_recipe(path, tuple(sets), out_dir=tmp_path / "out")


def codes(result) -> dict[str, tuple[int, int]]:
    return {d.code: (d.span.line, d.span.column) for d in result.diagnostics if d.is_error and d.span}


@pytest.mark.parametrize("blocks, data_extra, code, line", [
    (dict(objective=""), "", "E0601", 3),
    (dict(objective="objective kto {}"), "", "E0602", 3),
    (dict(objective="objective orpo {}"), "; format = unpaired_preference", None, 0),  # duplicate field first
    (dict(data='data {{ train = "train.jsonl"; format = chat{extra} }}'), "", "E0603", 3),
    (dict(objective="", data='data {{ train = "train.jsonl"; format = chat; max_prompt_length = 8{extra} }}'),
     "", "E0604", 3),
    ({}, "; packing = true; max_length = 512", "E0605", 4),
    ({}, "; pad_to_max_length = true; max_length = 512", "E0605", 4),
    ({}, "; train_on = all", "E0606", 4),
    ({}, "; max_length = 512; max_prompt_length = 512", "E0607", 4),
    (dict(method="method qlora { quant = nf4 }", objective="objective dpo { reference = model }"), "", "E0608", 3),
    (dict(objective="objective kto {}", data='data {{ train = "train.jsonl"; format = unpaired_preference }}',
          train="train { lr = 1e-5; global_batch = 8; micro_batch = 1; max_steps = 10 steps }"), "", "E0611", 5),
    (dict(train="train { lr = 1e-5; global_batch = 8; max_steps = 10 steps; chunked_cross_entropy = true }"), "",
     "E0612", 5),
])
def test_objective_errors_are_located(tmp_path, blocks, data_extra, code, line):
    result = compile_text(tmp_path, data_extra=data_extra, **blocks)
    if code is None:
        assert not result.ok
        return
    found = codes(result)
    assert code in found, [(d.code, d.message) for d in result.diagnostics]
    assert found[code][0] == line


def test_precomputed_reference_with_a_data_sweep(tmp_path):
    sweep = "sweep { trials = 2; data.max_length = choice(512, 1024); objective = maximize eval_rewards_accuracies }"
    result = compile_text(tmp_path, objective="objective dpo { reference = precomputed }", sweep=sweep)
    assert "E0609" in codes(result)


def test_sweep_metric_is_one_the_objective_logs(tmp_path):
    sweep = "sweep { trials = 2; objective.beta = loguniform(0.05, 0.5); objective = maximize eval_reward_accuracy }"
    result = compile_text(tmp_path, sweep=sweep)
    errors = [d for d in result.diagnostics if d.code == "E0610"]
    assert errors and errors[0].help == "did you mean `eval_rewards_accuracies`?"
    good = compile_text(tmp_path, sweep=sweep.replace("eval_reward_accuracy", "eval_rewards_accuracies"))
    assert good.ok, [(d.code, d.message) for d in good.diagnostics]
    assert good.plan["sweep"]["objective"]["metric"] == "eval_rewards_accuracies"
    kto = compile_text(tmp_path, objective="objective kto {}",
                       data='data {{ train = "train.jsonl"; format = unpaired_preference; eval_split = 10%{extra} }}',
                       sweep=sweep.replace("eval_reward_accuracy", "eval_rewards_accuracies"))
    assert "E0610" in codes(kto)  # KTO has no pairs to rank: no accuracy
    sft = compile_text(tmp_path, objective="", data='data {{ train = "train.jsonl"; format = chat{extra} }}',
                       sweep="sweep { trials = 2; objective.beta = loguniform(0.05, 0.5) }")
    assert "E0309" in codes(sft)  # beta is not a field of the default objective


def test_plan_section_and_per_objective_defaults(tmp_path):
    plan = compile_text(tmp_path).plan
    assert plan["objective"]["kind"] == "dpo" and plan["objective"]["beta"] == 0.1
    assert plan["objective"]["reference"] == "base" and plan["objective"]["loss"] == "sigmoid"
    assert {"field": "objective.reference", "value": "base"}.items() <= \
        next(a for a in plan["auto"] if a["field"] == "objective.reference").items()
    assert "eval_rewards_margins" in plan["objective"]["metrics"]
    simpo = compile_text(tmp_path, objective="objective simpo {}").plan["objective"]
    assert simpo == {**simpo, "kind": "simpo", "beta": 2.0, "gamma": 0.5, "reference": "none"}
    full = compile_text(tmp_path, sets=("objective.beta=0.3",), **FULL_ZERO3).plan
    assert full["objective"]["reference"] == "model" and full["objective"]["beta"] == 0.3
    sft = compile_text(tmp_path, objective="", data='data {{ train = "train.jsonl"; format = chat{extra} }}').plan
    assert sft["objective"]["kind"] == "sft" and sft["objective"]["reference"] == "none"
    assert sft["objective"]["beta"] is None and sft["data"]["max_prompt_length"] is None
    assert set(sft["objective"]) == set(compile_text(tmp_path).plan["objective"])  # one shape for all


def _names(plan: dict) -> set[str]:
    off_peak = plan["memory"]["off_peak"]  # phase -> {component: bytes}
    return set(plan["memory"]["components"]).union(*(set(phase) for phase in off_peak.values()))


def test_estimate_names_the_preference_components(tmp_path):
    full = compile_text(tmp_path, **FULL_ZERO3)
    assert full.ok, [(d.code, d.message) for d in full.diagnostics]
    assert {"reference_weights", "reference_forward"} <= _names(full.plan)
    memory = full.plan["memory"]["components"]  # sharded over the 8 ranks like the weights
    assert memory["reference_weights"] == memory["weights"]
    lora = compile_text(tmp_path).plan
    assert "reference_forward" in _names(lora) and "reference_weights" not in _names(lora)
    precomputed = compile_text(tmp_path, objective="objective dpo { reference = precomputed }").plan
    assert not {"reference_forward", "reference_weights"} & _names(precomputed)
