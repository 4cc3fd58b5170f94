"""End to end on CPU through the runtime's own entry (`execute` on a hand-written plan): full,
LoRA and QLoRA (bitsandbytes 4-bit on CPU) each lower the eval loss, and what they save reloads
from its folder and generates."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_runtime_plan import TINY, make_plan  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Each end-to-end training here runs with one torch thread (see conftest)."""


def generate(model, tokenizer) -> str:
    import torch

    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of Peru?"}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > prompt["input_ids"].shape[1]
    return tokenizer.decode(out[0][prompt["input_ids"].shape[1]:])


# a 4-bit kernel without a backward would drop gradients silently: make that warning a failure
@pytest.mark.filterwarnings("error:.*autograd kernel was not registered:UserWarning")
@pytest.mark.parametrize("method, lr, merge", [("full", 5e-4, False), ("lora", 3e-3, True), ("qlora", 3e-3, False)])
def test_method_trains_saves_reloads_and_generates(tmp_path, method, lr, merge):
    from ftc.runtime.train import RunOptions, execute, load_plan
    from ftc.runtime.train.cli import quiet_libraries
    from ftc.runtime.train.model import reload_for_generation

    quiet_libraries()
    plan = load_plan(make_plan(tmp_path / "build", method=method, lr=lr, max_steps=10, every=5, eval_every=5,
                               merge=merge, backends=("jsonl", "tensorboard", "mlflow") if merge else ("jsonl",)))
    result = execute(plan, RunOptions(run_id="r"))
    s = result.summary
    assert result.exit_code == 0 and s["status"] == "completed" and s["global_step"] == 10
    assert s["final_eval_loss"] < s["first_eval_loss"], s
    run = result.run_dir
    for name in ("plan.json", "metrics.jsonl", "summary.json", "loss_curve.png"):
        assert (run / name).is_file(), name
    if merge:  # the lora case also checks the optional backends
        assert any((run / "tensorboard").iterdir()) and (run / "mlflow.db").is_file()
    assert json.loads((run / "plan.json").read_text()) == plan.raw
    final = run / "final"
    if method == "full":
        assert (final / "model.safetensors").is_file() and not (final / "adapter_config.json").exists()
        model, tokenizer = reload_for_generation(final)
    else:
        assert (final / "adapter_model.safetensors").is_file()
        model, tokenizer = reload_for_generation(final, base=str(TINY / "model"))
    generate(model, tokenizer)
    if merge:
        merged, tokenizer = reload_for_generation(run / "merged")
        assert not (run / "merged" / "adapter_config.json").exists()
        generate(merged, tokenizer)
    assert [c["step"] for c in s["checkpoints"]] == [5, 10]
