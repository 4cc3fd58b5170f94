"""End to end on CPU from a recipe: ShareGPT rows, `chat_template = chatml`, added tokens (the template's
markers and a tool tag), evaluation and checkpoints every epoch (packed data: the runtime converts epochs to
steps). The run trains the new tokens' rows, and its saved adapter reloads with the resized embeddings,
merges, and generates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "examples" / "tiny"

RECIPE = """recipe "chat-tokens"

model "{model}" {{
  dtype      = fp32
  add_tokens = ["<|im_start|>", "<|im_end|>", "<tool>"]
  eos_token  = "<|im_end|>"
}}

method lora {{
  rank    = 8
  alpha   = 16
  dropout = 0.0
  targets = all_linear
}}

data {{
  train         = "sharegpt.jsonl"
  format        = chat
  chat_template = chatml
  eval_split    = 8 rows
  max_length    = 128
  packing       = true
  columns {{ messages = "conversations"; role = "from"; content = "value" }}
  roles   {{ user = "asker"; assistant = "helper" }}
}}

train {{
  epochs       = 2
  lr           = 3e-3
  warmup       = 2 steps
  global_batch = 4
  micro_batch  = 4
  eval_every   = 1 epochs
}}

hardware {{ accelerator = cpu }}

checkpoint {{
  every     = 1 epochs
  keep_last = 2
}}

output {{ merge = true }}
"""
NAMES = {"system": "system", "user": "asker", "assistant": "helper"}


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """One torch thread (see conftest)."""


def write_sharegpt(path: Path, rows: int) -> None:
    """The tiny chat data as ShareGPT rows with the data's own role names; answers end with a tool tag."""
    lines = (TINY / "data" / "train.jsonl").read_text().splitlines()[:rows]
    out = []
    for line in lines:
        turns = [{"from": NAMES[m["role"]], "value": m["content"] + (" <tool>" if m["role"] == "assistant" else "")}
                 for m in json.loads(line)["messages"]]
        out.append(json.dumps({"conversations": turns}))
    path.write_text("\n".join(out) + "\n")


def test_sharegpt_chatml_added_tokens_train_save_reload_and_generate(tmp_path, capsys):
    import torch
    from safetensors.torch import load_file

    from ftc.cli import main
    from ftc.runtime.train import RunOptions, execute, load_plan
    from ftc.runtime.train.cli import quiet_libraries
    from ftc.runtime.train.model import reload_for_generation

    quiet_libraries()
    write_sharegpt(tmp_path / "sharegpt.jsonl", 40)
    recipe = tmp_path / "r.ftspec"
    recipe.write_text(RECIPE.format(model=TINY / "model"))
    assert main(["compile", str(recipe), "-o", str(tmp_path / "build")]) == 0, capsys.readouterr().err
    plan = load_plan(tmp_path / "build")
    assert plan.train.eval_every_epochs == 1 and plan.checkpoint.every_epochs == 1
    assert plan.method.lora.new_tokens == "trainable_token_indices"

    result = execute(plan, RunOptions(run_id="r"))
    s = result.summary
    assert result.exit_code == 0 and s["status"] == "completed"
    per_epoch = s["global_step"] // 2
    assert [c["step"] for c in s["checkpoints"]] == [per_epoch, 2 * per_epoch]  # every epoch, converted
    metrics = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert sorted({m["step"] for m in metrics if "eval_loss" in m}) == [0, per_epoch, 2 * per_epoch]
    assert s["final_eval_loss"] < s["first_eval_loss"]

    final = result.run_dir / "final"
    base_vocab = json.loads((TINY / "model" / "config.json").read_text())["vocab_size"]
    tensors = load_file(str(final / "adapter_model.safetensors"))
    deltas = {k: v for k, v in tensors.items() if "trainable_tokens_delta" in k}
    assert len(deltas) == 2 and all(v.shape == (3, 128) for v in deltas.values())  # embedding and head rows
    assert all(v.abs().sum() > 0 for v in deltas.values())  # the new rows trained
    embedding = [v for k, v in tensors.items() if k.endswith("embed_tokens.token_adapter.base_layer.weight")]
    assert embedding and embedding[0].shape[0] == base_vocab + 3  # saved with the adapter, resized

    model, tokenizer = reload_for_generation(final, base=str(TINY / "model"))
    assert model.get_input_embeddings().weight.shape[0] == base_vocab + 3
    assert tokenizer.eos_token == "<|im_end|>" and "<|im_start|>" in tokenizer.chat_template
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of Peru?"}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    assert tokenizer.decode(prompt["input_ids"][0]).endswith("<|im_start|>assistant\n")
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=12, do_sample=False,
                             eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    assert out.shape[1] > prompt["input_ids"].shape[1]
    merged, _ = reload_for_generation(result.run_dir / "merged")
    assert merged.get_input_embeddings().weight.shape[0] == base_vocab + 3
