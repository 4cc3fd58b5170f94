"""`eval_batch`: sequences per GPU in evaluation. `auto` is the largest that fits beside the training state
(evaluation keeps no activations for backward, but the whole logits); a fixed value is budget-checked; the
runtime evaluates with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftc.compiler.memory.auto import MAX_AUTO_EVAL_BATCH
from ftc.compiler.memory.estimate import estimate
from ftc.compiler.memory.recipe import setup_from_plan
from ftc.compiler.pipeline import compile_recipe

GiB = 2**30


def recipe(tmp_path: Path, train: str = "", data: str = 'eval_split = 10%', hardware: str = "gpu = a100-80gb",
           model: str = "meta-llama/Llama-3.1-8B") -> Path:
    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(50)))
    path = tmp_path / "r.ftspec"
    path.write_text(f'model "{model}" {{}}\nmethod lora {{}}\ndata {{\n  train = "train.jsonl"\n  max_length = 2048\n'
                    f'  {data}\n}}\ntrain {{\n  lr = 1e-4\n  global_batch = 8\n  micro_batch = 1\n  {train}\n}}\n'
                    f'hardware {{ {hardware} }}\n')
    return path


def decision(plan: dict, field: str = "train.eval_batch"):
    return next((d for d in plan["auto"] if d["field"] == field), None)


def test_auto_is_the_largest_evaluation_batch_that_fits(tmp_path):
    compiled = compile_recipe(recipe(tmp_path), out_dir=tmp_path / "out")
    plan = compiled.plan
    chosen = plan["batch"]["eval_batch"]
    assert 1 < chosen < MAX_AUTO_EVAL_BATCH and decision(plan)["value"] == chosen
    assert "logits" in decision(plan)["reason"]
    budget = plan["memory"]["budget_bytes_per_gpu"]
    setup = setup_from_plan(compiled.recipe, plan).setup
    assert estimate(setup).peak_bytes <= budget < estimate(setup.with_(eval_batch=chosen + 1)).peak_bytes
    assert plan["memory"]["peak_phase"] == "eval pass"  # the eval pass now fills what training leaves


def test_more_memory_gives_a_larger_evaluation_batch(tmp_path):
    small = compile_recipe(recipe(tmp_path, hardware="memory_per_gpu = 40 GiB"), out_dir=tmp_path / "a").plan
    large = compile_recipe(recipe(tmp_path, hardware="memory_per_gpu = 80 GiB"), out_dir=tmp_path / "b").plan
    assert small["batch"]["eval_batch"] < large["batch"]["eval_batch"]


def test_a_fixed_evaluation_batch_is_checked_against_the_budget(tmp_path):
    compiled = compile_recipe(recipe(tmp_path, train="eval_batch = 512"), out_dir=tmp_path / "out")
    assert compiled.plan is None
    (error,) = [d for d in compiled.diagnostics if d.is_error]
    assert error.code == "E0705" and any("eval" in note for note in error.notes)
    fits = compile_recipe(recipe(tmp_path, train="eval_batch = 4"), out_dir=tmp_path / "out").plan
    assert fits["batch"]["eval_batch"] == 4 and decision(fits) is None


@pytest.mark.parametrize("data, hardware, expected", [
    ("", "gpu = a100-80gb", None),  # nothing evaluated: the micro-batch, no decision to report
    ("eval_split = 10%", "accelerator = cpu", "cpu run"),  # no budget: the micro-batch, and why
])
def test_without_evaluation_or_estimate_the_micro_batch(tmp_path, data, hardware, expected):
    plan = compile_recipe(recipe(tmp_path, data=data, hardware=hardware, model="HuggingFaceTB/SmolLM2-135M"),
                          out_dir=tmp_path / "out").plan
    assert plan["batch"]["eval_batch"] == plan["batch"]["micro_batch"] == 1
    assert (decision(plan) or {}).get("reason", "").startswith(expected) if expected else decision(plan) is None


def test_the_runtime_evaluates_with_it(tmp_path):
    pytest.importorskip("transformers")
    from ftc.orchestrate.build import write_folder
    from ftc.compiler.emit import emit
    from ftc.runtime.train import load_plan
    from ftc.runtime.train.trainer import training_arguments

    compiled = compile_recipe(recipe(tmp_path, train="eval_batch = 6", hardware="accelerator = cpu",
                                     model="HuggingFaceTB/SmolLM2-135M"), out_dir=tmp_path / "out")
    write_folder(compiled.out_dir, emit(compiled.plan))
    args = training_arguments(load_plan(compiled.out_dir), tmp_path / "ckpt", has_eval=True, report_to=[])
    assert (args.per_device_train_batch_size, args.per_device_eval_batch_size) == (1, 6)
