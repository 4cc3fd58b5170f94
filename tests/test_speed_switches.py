"""The efficiency switches: packing when the recipe does not say (with the plan's reason), the chunked loss
and AdamW kernel resolved into the plan and counted by `ftc estimate`, and 8-bit optimizers under ZeRO."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ftc.compiler.pipeline import compile_recipe

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "examples" / "tiny" / "model"


def _recipe(tmp_path: Path, *, rows_words: int = 6, data: str = "", train: str = "", hardware: str = "",
            distributed: str = "", method: str = "method lora {}") -> Path:
    row = {"messages": [{"role": "user", "content": "word " * rows_words},
                        {"role": "assistant", "content": "word " * rows_words}]}
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for _ in range(50)))
    path = tmp_path / "r.ftspec"
    path.write_text(f"""recipe "r"
model "{TINY}" {{ dtype = fp32 }}
{method}
data {{ train = "train.jsonl"; format = chat; max_length = 512
{data} }}
train {{ lr = 1e-4; global_batch = 8; max_steps = 4 steps
{train} }}
hardware {{ {hardware or "accelerator = cpu"} }}
{distributed}
""")
    return path


def _plan(path: Path) -> dict:
    compiled = compile_recipe(str(path), ())
    assert compiled.plan is not None, [d.message for d in compiled.diagnostics]
    return compiled.plan


def _auto(plan: dict, field: str):
    return next((a for a in plan["auto"] if a["field"] == field), None)


def test_short_examples_are_packed_when_the_recipe_does_not_say(tmp_path):
    plan = _plan(_recipe(tmp_path))
    assert plan["data"]["packing"] is True
    assert "median example" in _auto(plan, "data.packing")["reason"]


def test_long_examples_are_not_packed_and_the_plan_says_why(tmp_path):
    plan = _plan(_recipe(tmp_path, rows_words=400))
    assert plan["data"]["packing"] is False
    assert "at least a quarter" in _auto(plan, "data.packing")["reason"]


def test_written_packing_is_kept_without_a_decision(tmp_path):
    plan = _plan(_recipe(tmp_path, data="packing = false"))
    assert plan["data"]["packing"] is False and _auto(plan, "data.packing") is None


def test_switch_defaults_resolve_into_the_plan(tmp_path):
    train = _plan(_recipe(tmp_path))["train"]
    assert (train["chunked_cross_entropy"], train["compile"], train["optimizer_impl"]) == (True, False, "foreach")
    gpu = _plan(_recipe(tmp_path, hardware="gpu = a100-80gb"))["train"]
    assert gpu["optimizer_impl"] == "fused"
    off = _plan(_recipe(tmp_path, train="chunked_cross_entropy = false; compile = true; optimizer_impl = fused"))
    assert (off["train"]["chunked_cross_entropy"], off["train"]["compile"], off["train"]["optimizer_impl"]) == \
        (False, True, "fused")


def test_fsdp_keeps_the_plain_loss(tmp_path):
    plan = _plan(_recipe(tmp_path, hardware="accelerator = cpu; gpus_per_node = 2", distributed="distributed fsdp {}"))
    assert plan["train"]["chunked_cross_entropy"] is False


def _estimate(path: Path, *extra: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "ftc", "estimate", str(path), "--json", *extra],
                         capture_output=True, text=True, timeout=120)
    return json.loads(out.stdout)


def test_estimate_counts_and_shows_the_switches(tmp_path):
    path = _recipe(tmp_path, hardware="gpu = a100-80gb", data="max_length = 4096")
    chunked = _estimate(path)
    plain = _estimate(path, "--set", "train.chunked_cross_entropy=false")
    assert chunked["switches"]["chunked_cross_entropy"] is True and plain["switches"]["chunked_cross_entropy"] is False
    assert chunked["components"]["logits_loss"] < plain["components"]["logits_loss"]
    assert chunked["switches"]["optimizer_impl"] == "fused"
    text = subprocess.run([sys.executable, "-m", "ftc", "estimate", str(path)], capture_output=True, text=True,
                          timeout=120).stdout
    assert "switches: chunked_cross_entropy on" in text and "chunked cross-entropy" in text


def _codes(path: Path) -> set[str]:
    return {d.code for d in compile_recipe(str(path), ()).diagnostics}


def test_8bit_optimizers_are_refused_only_with_zero3(tmp_path):
    hw = "accelerator = cpu; gpus_per_node = 2"
    for zero, refused in ((1, False), (2, False), (3, True)):
        path = _recipe(tmp_path, hardware=hw, train="optimizer = adamw_8bit",
                       distributed=f"distributed deepspeed {{ zero = {zero} }}")
        assert ("E0415" in _codes(path)) is refused, zero


def test_zero_auto_with_an_8bit_optimizer_stays_below_stage_3(tmp_path):
    plan = _plan(_recipe(tmp_path, hardware="accelerator = cpu; gpus_per_node = 2", train="optimizer = adamw_8bit",
                         distributed="distributed deepspeed {}"))
    assert plan["distributed"]["zero"] == 2


@pytest.mark.slow
def test_zero2_steps_the_8bit_optimizer_on_its_partition(tmp_path):
    """Two CPU ranks, ZeRO-2, bitsandbytes' AdamW8bit as DeepSpeed's client optimizer: it trains, and the
    saved optimizer state is 8-bit state of the rank's flat fp32 partition."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("deepspeed")
    pytest.importorskip("bitsandbytes")
    sys.path.insert(0, str(REPO / "tests"))
    import multiproc_util as mp
    from ftc.runtime.launch.ports import free_port

    text = mp.recipe_text("z2-8bit", "zero2").replace("optimizer    = adamw", "optimizer    = adamw_8bit")
    (tmp_path / "z2.ftspec").write_text(text)
    out = tmp_path / "build"
    done = subprocess.run([sys.executable, "-m", "ftc", "compile", str(tmp_path / "z2.ftspec"), "-o", str(out)],
                          capture_output=True, text=True, timeout=120, env=mp.base_env())
    assert done.returncode == 0, done.stderr
    result = mp.ftc_run(out, "--run-id", "r", timeout=900, MASTER_PORT=str(free_port()))
    assert result.returncode == 0, mp.explain(result)
    run = mp.run_dir(out, "r")
    losses = mp.losses(run)
    assert len(losses) == 4 and all(v == v for v in losses.values())
    shard = next((run / "checkpoints").glob("checkpoint-4/global_step4/zero_pp_rank_0_*optim_states.pt"))
    state = torch.load(shard, weights_only=False, map_location="cpu")["optimizer_state_dict"]
    quant = next(iter(state["base_optimizer_state"]["state"].values()))["__bnb_optimizer_quant_state__"]
    assert quant["state1"].dtype == torch.uint8 and quant["state2"].dtype == torch.uint8


def _runtime_plan(tmp_path, train: dict, packing: bool = True, accelerator: str = "cpu"):
    """A compiled plan of the tiny model, with the given train fields, packing and accelerator."""
    from dataclasses import replace

    from ftc.plan import load_plan

    out = tmp_path / "build"
    if not (out / "plan.json").is_file():
        done = subprocess.run([sys.executable, "-m", "ftc", "compile", str(_recipe(tmp_path)), "-o", str(out)],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    plan = load_plan(out)
    return replace(plan, train=replace(plan.train, **train), data=replace(plan.data, packing=packing),
                   hardware=replace(plan.hardware, accelerator=accelerator))


def test_runtime_applies_the_switches_to_the_model(tmp_path):
    pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM

    from ftc.runtime.train.speed import apply, optimizer_name

    model = AutoModelForCausalLM.from_pretrained(TINY)
    applied = apply(_runtime_plan(tmp_path, {"chunked_cross_entropy": True, "compile": True}), model)
    assert applied.head is model.lm_head and applied.attention == "ftc_varlen"
    assert model.config._attn_implementation == "ftc_varlen"
    assert applied.compiled_layers == 4 and all(layer._compiled_call_impl is not None for layer in model.model.layers)
    plain = AutoModelForCausalLM.from_pretrained(TINY)
    applied = apply(_runtime_plan(tmp_path, {"chunked_cross_entropy": False}, packing=False), plain)
    assert applied.head is None and applied.attention is None and plain.config._attn_implementation == "sdpa"
    names = {"adamw": "adamw_torch", "sgd": "sgd"}
    assert optimizer_name(_runtime_plan(tmp_path, {"optimizer_impl": "fused"}), names) == "adamw_torch_fused"
    foreach = _runtime_plan(tmp_path, {"optimizer_impl": "foreach"}, accelerator="gpu")
    assert optimizer_name(foreach, names) == "adamw_torch"
    older = _runtime_plan(tmp_path, {"optimizer_impl": "auto"}, accelerator="gpu")  # a plan without the key
    assert optimizer_name(older, names) == "adamw_torch_fused"
    assert optimizer_name(_runtime_plan(tmp_path, {"optimizer": "sgd", "optimizer_impl": None}), names) == "sgd"
