"""Lowering: batch arithmetic, autos with reasons, steps from data, warmup, paths relative to the output folder."""

from __future__ import annotations

import json
import os
from pathlib import Path
from unittest import mock

import pytest

from ftc.compiler.lower.steps import count_rows
from ftc.compiler.pipeline import compile_recipe
from ftc.plan.steps import trainer_steps_per_epoch


def recipe(tmp_path: Path, train: str = "", hardware: str = "", data: str = "", extra: str = "",
           rows: int = 100, method: str = "method lora {}") -> Path:
    data_dir = tmp_path / "data"
    data_dir.mkdir(exist_ok=True)
    (data_dir / "train.jsonl").write_text("".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(rows)))
    path = tmp_path / "r.ftspec"
    path.write_text(f"""recipe "r"
model "org/some-model" {{}}
{method}
data {{
  train = "data/train.jsonl"
  format = text
{data}
}}
train {{
  lr = 1e-4
{train}
}}
hardware {{
  gpu = a100-80gb
{hardware}
}}
{extra}
""")
    return path


def compiled(path: Path, *overrides: str, out: Path | None = None):
    result = compile_recipe(path, overrides, out_dir=out or path.parent / "build" / "r")
    return result


def codes(result) -> list[str]:
    return [d.code for d in result.diagnostics if d.is_error]


def test_batch_triple_is_exact(tmp_path):
    result = compiled(recipe(tmp_path, train="global_batch = 64\nmicro_batch = 4", hardware="gpus_per_node = 4"))
    assert result.plan is not None, codes(result)
    assert result.plan["batch"] == {"global_batch": 64, "micro_batch": 4, "grad_accum": 4, "data_parallel_world": 4}
    assert result.plan["provenance"]["train.grad_accum"] == "derived"


@pytest.mark.parametrize("train, hardware, code", [
    ("global_batch = 10\nmicro_batch = 1", "gpus_per_node = 4", "E0501"),   # 10 over 4 ranks
    ("global_batch = 48\nmicro_batch = 5", "gpus_per_node = 4", "E0502"),   # 12 per rank, micro 5
    ("global_batch = 48\nmicro_batch = 4\ngrad_accum = 2", "gpus_per_node = 4", "E0503"),
    ("global_batch = 48\ngrad_accum = 5", "gpus_per_node = 4", "E0503"),    # auto micro, accum does not divide
])
def test_non_divisible_batch_is_a_located_error_not_a_floor(tmp_path, train, hardware, code):
    path = recipe(tmp_path, train=train, hardware=hardware)
    result = compiled(path)
    assert result.plan is None
    errors = [d for d in result.diagnostics if d.is_error]
    assert [d.code for d in errors] == [code]
    assert errors[0].span is not None and errors[0].span.file.endswith("r.ftspec")


def test_lowering_guards_the_batch_when_checks_are_skipped(tmp_path):
    """Lowering re-derives the triple itself (one owner): it never floors, even if a check let it through."""
    from ftc.compiler import check

    path = recipe(tmp_path, train="global_batch = 10\nmicro_batch = 1", hardware="gpus_per_node = 4")
    passes = tuple(p for p in check.PASSES if p is not check.check_batch)
    with mock.patch.object(check, "PASSES", passes):
        result = compiled(path)
    assert result.plan is None and codes(result) == ["E0501"]


def test_wrong_batch_never_reaches_deepspeed(tmp_path):
    """The batch DeepSpeed would assert on (10 != 1 x 2 x 4) is an ftc diagnostic; no ds_config is produced."""
    path = recipe(tmp_path, train="global_batch = 10\nmicro_batch = 1\ngrad_accum = 2", hardware="gpus_per_node = 4",
                  extra="distributed deepspeed { zero = 2 }")
    result = compiled(path)
    assert result.plan is None and codes(result)[0].startswith("E05")


def test_micro_batch_auto_fallback_is_recorded(tmp_path):
    result = compiled(recipe(tmp_path, train="global_batch = 96\nmicro_batch = auto", hardware="gpus_per_node = 2"))
    plan = result.plan
    assert plan["batch"]["micro_batch"] * plan["batch"]["grad_accum"] * 2 == 96
    entry = next(a for a in plan["auto"] if a["field"] == "train.micro_batch")
    assert entry["value"] == plan["batch"]["micro_batch"] and entry["reason"]
    assert plan["provenance"]["train.micro_batch"] == "derived"


def test_micro_batch_derived_from_grad_accum(tmp_path):
    plan = compiled(recipe(tmp_path, train="global_batch = 32\ngrad_accum = 4", hardware="gpus_per_node = 2")).plan
    assert plan["batch"] == {"global_batch": 32, "micro_batch": 4, "grad_accum": 4, "data_parallel_world": 2}


def test_distributed_auto_and_zero_auto(tmp_path):
    plan = compiled(recipe(tmp_path, train="global_batch = 32", hardware="gpus_per_node = 8",
                           method="method full {}")).plan
    fields = {a["field"]: a["value"] for a in plan["auto"]}
    assert plan["distributed"]["strategy"] == fields["distributed"] == "deepspeed"
    assert plan["distributed"]["zero"] == fields["distributed.zero"] in (0, 1, 2, 3)
    assert plan["launch"]["files"]["deepspeed"] == "ds_config.json"
    plan = compiled(recipe(tmp_path, train="global_batch = 32", hardware="gpus_per_node = 8")).plan
    assert plan["distributed"]["strategy"] == "ddp"


def test_steps_counted_from_local_data(tmp_path):
    path = recipe(tmp_path, rows=100, train="global_batch = 8\nmicro_batch = 2\nepochs = 2\nwarmup = 10%",
                  hardware="gpus_per_node = 2")
    plan = compiled(path).plan
    assert plan["steps"] == {"steps_per_epoch": 13, "total_steps": 26, "source": "data", "train_rows": 100}
    assert plan["train"]["warmup_steps"] == 3 and plan["train"]["warmup_ratio"] is None  # ceil(0.1 * 26)
    assert trainer_steps_per_epoch(100, 2, 2, 2) == 13


def test_steps_at_runtime_when_packing(tmp_path):
    path = recipe(tmp_path, data="max_length = 128\npacking = true", train="global_batch = 8\nwarmup = 3%")
    plan = compiled(path).plan
    assert plan["steps"]["source"] == "runtime" and plan["steps"]["total_steps"] is None
    assert plan["steps"]["train_rows"] == 100
    assert plan["train"]["warmup_steps"] is None and plan["train"]["warmup_ratio"] == 0.03


def test_declared_steps(tmp_path):
    plan = compiled(recipe(tmp_path, train="global_batch = 8\nmax_steps = 200 steps\nwarmup = 5%")).plan
    assert plan["steps"]["source"] == "declared" and plan["steps"]["total_steps"] == 200
    assert plan["train"]["max_steps"] == 200 and plan["train"]["epochs"] is None
    assert plan["train"]["warmup_steps"] == 10


def test_intervals_in_epochs_are_left_to_the_runtime_when_steps_are_unknown(tmp_path):
    path = recipe(tmp_path, data="max_length = 128\npacking = true\neval_split = 10%",
                  train="global_batch = 8\neval_every = 0.5 epochs", extra="checkpoint { every = 1 epochs }")
    plan = compiled(path).plan
    assert plan["steps"]["steps_per_epoch"] is None
    assert plan["train"]["eval_every_steps"] is None and plan["train"]["eval_every_epochs"] == 0.5
    assert plan["checkpoint"]["every_steps"] is None and plan["checkpoint"]["every_epochs"] == 1


def test_intervals_in_epochs_are_steps_when_the_rows_are_counted(tmp_path):
    """100 rows, less 20 held out by a row count, at most 60 kept: 40 examples, 5 steps of 8 per epoch."""
    path = recipe(tmp_path, data="max_length = 128\neval_split = 20 rows\nmax_samples = 60",
                  train="global_batch = 8\neval_every = 2 epochs", extra="checkpoint { every = 1 epochs }")
    plan = compiled(path).plan
    assert plan["steps"]["steps_per_epoch"] == 5 and plan["data"]["eval_rows"] == 20
    assert plan["train"]["eval_every_steps"] == 10 and "eval_every_epochs" not in plan["train"]
    assert plan["checkpoint"]["every_steps"] == 5


def test_distributed_none_with_several_ranks_is_an_error(tmp_path):
    result = compiled(recipe(tmp_path, train="global_batch = 8", hardware="gpus_per_node = 2",
                             extra="distributed none {}"))
    assert result.plan is None and codes(result) == ["E0518"]


def test_fsdp_lowering(tmp_path):
    plan = compiled(recipe(tmp_path, train="global_batch = 8", hardware="gpus_per_node = 2",
                           extra="distributed fsdp {\n offload_params = cpu\n}")).plan
    assert plan["distributed"]["fsdp"] == {"sharding": "full_shard", "wrap": "transformer_layer",
                                           "offload_params": True}
    assert plan["launch"]["launcher"] == "accelerate" and plan["launch"]["files"]["deepspeed"] is None


def test_offload_needs_deepspeed_adam(tmp_path):
    path = recipe(tmp_path, train="global_batch = 8\noptimizer = sgd",
                  extra="distributed deepspeed {\n zero = 2\n offload_optimizer = cpu\n}")
    result = compiled(path)
    assert result.plan is None and codes(result) == ["E0510"]


def test_paths_are_relative_to_the_output_folder(tmp_path):
    path = recipe(tmp_path, train="global_batch = 8")
    plan = compiled(path, out=tmp_path / "a" / "b" / "c").plan
    assert plan["data"]["train"] == ["../../../data/train.jsonl"]
    assert plan["recipe"]["source"] == "../../../r.ftspec"
    assert plan["output"]["runs_dir"] == "../../../runs"
    assert plan["model"] == {**plan["model"], "name_or_path": "org/some-model", "local": False}
    text = json.dumps(plan)
    assert str(tmp_path) not in text


def test_override_is_lowered_with_provenance(tmp_path):
    plan = compiled(recipe(tmp_path, train="global_batch = 8"), "train.lr=3e-5").plan
    assert plan["train"]["lr"] == 3e-05 and plan["provenance"]["train.lr"] == "override"


@pytest.mark.parametrize("name, text, expected", [
    ("a.jsonl", '{"a": 1}\n\n{"a": 2}\n{"a": 3}', 3),
    ("a.txt", "x\ny\n", 2),
    ("a.csv", 'q,a\n"multi\nline",1\nz,2\n', 2),
    ("a.json", '[{"a": 1}, {"a": 2}]', 2),
    ("a.json", '{"data": []}', None),
    ("a.parquet", "PAR1", None),
])
def test_count_rows(tmp_path, name, text, expected):
    (tmp_path / name).write_text(text)
    assert count_rows(tmp_path / name) == expected


def test_batch_arithmetic_property(tmp_path):
    """For any global / micro / grad_accum / world: an exact triple, or an E050x diagnostic — never a floor."""
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import given, settings, strategies as st

    path = recipe(tmp_path, train="global_batch = 8")

    @settings(max_examples=150, deadline=None, derandomize=True)
    @given(st.integers(1, 256), st.one_of(st.none(), st.integers(1, 64)), st.one_of(st.none(), st.integers(1, 32)),
           st.sampled_from([1, 2, 3, 4, 8]), st.sampled_from([1, 2]))
    def check(global_batch, micro, accum, gpus, nodes):
        overrides = [f"train.global_batch={global_batch}", f"hardware.gpus_per_node={gpus}",
                     f"hardware.nodes={nodes}", "distributed=ddp"]
        if micro is not None:
            overrides.append(f"train.micro_batch={micro}")
        if accum is not None:
            overrides.append(f"train.grad_accum={accum}")
        result = compiled(path, *overrides)
        world = gpus * nodes
        if result.plan is None:
            assert codes(result) and all(c in ("E0501", "E0502", "E0503") for c in codes(result)), codes(result)
            exact = global_batch % world == 0 and (micro is None or (global_batch // world) % micro == 0) and \
                (accum is None or (global_batch // world) % accum == 0) and \
                (micro is None or accum is None or micro * accum * world == global_batch)
            assert not exact
            return
        batch = result.plan["batch"]
        assert batch["micro_batch"] * batch["grad_accum"] * batch["data_parallel_world"] == global_batch
        assert batch["data_parallel_world"] == world
        assert micro is None or batch["micro_batch"] == micro
        assert accum is None or batch["grad_accum"] == accum

    check()


def test_paths_of_a_parent_recipe_stay_relative_to_the_parent(tmp_path, monkeypatch):
    (tmp_path / "base").mkdir()
    parent = recipe(tmp_path / "base", train="global_batch = 8")
    child_dir = tmp_path / "team" / "runs"
    child_dir.mkdir(parents=True)
    child = child_dir / "child.ftspec"
    child.write_text(f'extends "{os.path.relpath(parent, child_dir)}"\nrecipe "child"\ntrain {{\n  lr = 2e-4\n}}\n')
    out = tmp_path / "out"
    result = compiled(child, out=out)
    assert result.plan is not None, [d.message for d in result.diagnostics]
    plan = result.plan
    assert plan["data"]["train"] == ["../base/data/train.jsonl"]  # the parent's data, not team/runs/data
    assert plan["output"]["runs_dir"] == "../team/runs/runs"  # a default: next to the recipe compiled
    assert [s["path"] for s in plan["recipe"]["sources"]] == ["../base/r.ftspec", "../team/runs/child.ftspec"]
    monkeypatch.chdir(tmp_path / "team")
    (tmp_path / "team" / "other.jsonl").write_text('{"text": "a"}\n')
    result = compiled(child, 'data.train="other.jsonl"', out=out)
    assert result.plan is not None, [d.message for d in result.diagnostics]
    plan = result.plan
    assert plan["data"]["train"] == ["../team/other.jsonl"]  # --set paths are relative to the working directory


def test_estimator_failure_is_a_warning_and_fixed_rules(tmp_path):
    from ftc.compiler.memory import auto

    path = recipe(tmp_path, train="global_batch = 32\nmicro_batch = auto", hardware="gpus_per_node = 2")
    with mock.patch.object(auto, "choose", side_effect=RuntimeError("boom")), \
            mock.patch.object(auto, "plan_estimate", side_effect=RuntimeError("boom")):
        result = compiled(path)
    assert result.plan is not None
    assert "W0519" in [d.code for d in result.diagnostics]
    assert result.plan["batch"]["micro_batch"] == 8 and result.plan["memory"] is None


def test_solve_batch_is_exact():
    from ftc.compiler.batch import BatchProblem, BatchTriple, solve_batch

    assert solve_batch(64, 4, None, 4) == BatchTriple(64, 4, 4, 4)
    assert solve_batch(64, None, 2, 4) == BatchTriple(64, 8, 2, 4)
    assert solve_batch(64, 4, 4, 4) == BatchTriple(64, 4, 4, 4)
    assert solve_batch(10, 1, None, 4).code == "E0501"
    assert solve_batch(48, 5, None, 4).code == "E0502"
    assert solve_batch(48, None, 5, 4).code == "E0503"
    assert solve_batch(48, 4, 2, 4).code == "E0503"
    assert isinstance(solve_batch(48, 4, 2, 4), BatchProblem)
    with pytest.raises(ValueError):
        solve_batch(8, None, None, 1)
    assert solve_batch(1048576, 1, None, 2**21).help.startswith("use fewer GPUs")
    assert solve_batch(1048576, 1048575, None, 1).help == "use `micro_batch = 524288` (it must divide 1048576)"


@pytest.mark.parametrize("n", [1, 2, 12, 36, 97, 720720, 1048576, *range(1, 400, 7)])
def test_divisors_by_trial_division_up_to_the_root(n):
    from ftc.compiler.batch import divisors

    assert divisors(n) == [d for d in range(1, n + 1) if n % d == 0]


def test_eval_split_rows_that_leave_no_training_rows_are_an_error(tmp_path):
    result = compiled(recipe(tmp_path, rows=10, data="eval_split = 10 rows", train="global_batch = 8"))
    assert result.plan is None and codes(result) == ["E0520"]
    (d,) = [d for d in result.diagnostics if d.code == "E0520"]
    assert d.span is not None and "10 rows" in d.message


def test_all_linear_is_lowered_to_the_module_names_peft_adapts(tmp_path):
    """`targets = all_linear` reaches the plan as module names (the runtime interprets nothing), and those names
    adapt exactly the modules peft's `all-linear` would on the real model; an unknown architecture keeps
    `all_linear`."""
    pytest.importorskip("peft")
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    examples = Path(__file__).resolve().parent.parent / "examples"
    compiled = compile_recipe(examples / "tiny.ftspec", (), out_dir=tmp_path / "tiny")
    targets = compiled.plan["method"]["lora"]["targets"]
    assert isinstance(targets, list) and "q_proj" in targets and "down_proj" in targets

    def adapted(target_modules) -> set[str]:
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(examples / "tiny" / "model"))
        peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=target_modules, task_type="CAUSAL_LM"))
        return {name for name, _ in peft_model.named_modules() if name.endswith(".lora_A")}

    assert adapted(targets) == adapted("all-linear")
    unknown = compile_recipe(recipe(tmp_path, train="global_batch = 8", method="method lora { targets = all_linear }"),
                             (), out_dir=tmp_path / "unknown")
    assert unknown.plan["method"]["lora"]["targets"] == "all_linear"
