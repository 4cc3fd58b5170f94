"""`pad_token`, `eos_token`, `add_tokens`: the plan carries them, the tokenizer and the model take them, the
LoRA run trains the new rows (peft's trainable_token_indices, or modules_to_save), the estimator counts exactly
what peft trains, and a pad token equal to EOS under completion-only loss is warned."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from ftc.compiler.frontend import analyze  # noqa: E402
from ftc.compiler.memory.estimate import estimate  # noqa: E402
from ftc.compiler.memory.recipe import setup_from_recipe  # noqa: E402
from ftc.compiler.models.arch import from_config  # noqa: E402
from ftc.compiler.models.params import count, with_added_tokens  # noqa: E402
from ftc.compiler.pipeline import compile_recipe  # noqa: E402
from ftc.runtime.train.model import lora_config  # noqa: E402
from ftc.runtime.train.tokens import apply_to_model, apply_to_tokenizer  # noqa: E402

from plan_cases import section  # noqa: E402
from tiny_configs import transformers_config  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TINY_MODEL = REPO / "examples" / "tiny" / "model"
CONFIGS = {
    "untied": dict(model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                   num_attention_heads=4, num_key_value_heads=2, vocab_size=300),
    "tied": dict(model_type="qwen2", hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                 num_attention_heads=4, num_key_value_heads=2, vocab_size=300, tie_word_embeddings=True),
}


@pytest.mark.parametrize("mode", ["trainable_token_indices", "modules_to_save"])
@pytest.mark.parametrize("layout", sorted(CONFIGS))
def test_counts_with_added_tokens_match_peft(layout, mode):
    config, added = CONFIGS[layout], 3
    arch = with_added_tokens(from_config(config), added)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(transformers_config(config))
    model.resize_token_embeddings(config["vocab_size"] + added)
    new_ids = tuple(range(config["vocab_size"], config["vocab_size"] + added))
    lora = section("method.lora", targets=["q_proj", "v_proj"], rank=4, alpha=8, dropout=0.0, new_tokens=mode)
    wrapped = peft.get_peft_model(model, lora_config(lora, model, new_ids))
    trainable, total = wrapped.get_nb_trainable_parameters()
    if mode == "modules_to_save":
        saved = (arch.embed_name, "lm_head") if layout == "untied" else (arch.embed_name,)
        expected = count(arch, "lora", 4, ["q_proj", "v_proj"], modules_to_save=saved)
    else:
        expected = count(arch, "lora", 4, ["q_proj", "v_proj"], trainable_tokens=added)
        assert expected.token_rows == added * 64 * (1 if layout == "tied" else 2)
    assert (expected.trainable, expected.total) == (trainable, total)


def test_tokenizer_and_model_take_the_plan_tokens(tmp_path):
    tokenizer = transformers.AutoTokenizer.from_pretrained(TINY_MODEL)
    vocab = len(tokenizer)
    model_spec = section("model", pad_token="<|padding|>", eos_token="<|im_end|>", add_tokens=["<tool>", "<|end|>"])
    new_ids = apply_to_tokenizer(tokenizer, model_spec, section("data", chat_template={"name": "chatml"}), tmp_path)
    assert new_ids == tuple(range(vocab, vocab + 3))  # <|end|> exists already; <tool>, <|im_end|>, <|padding|>
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|padding|>"
    assert tokenizer.convert_tokens_to_ids("<tool>") in new_ids and "<|im_start|>" in tokenizer.chat_template
    model = transformers.AutoModelForCausalLM.from_pretrained(TINY_MODEL)
    apply_to_model(model, tokenizer, new_ids)
    assert model.get_input_embeddings().weight.shape[0] == vocab + 3
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id == model.config.eos_token_id


def test_generation_stops_at_the_template_end_of_turn(tmp_path):
    """chatml without `eos_token`: the model still stops generating at `<|im_end|>` (and at its EOS)."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(TINY_MODEL)
    data = section("data", chat_template={"name": "chatml"})
    new_ids = apply_to_tokenizer(tokenizer, section("model", add_tokens=["<|im_start|>", "<|im_end|>"]), data, tmp_path)
    model = transformers.AutoModelForCausalLM.from_pretrained(TINY_MODEL)
    apply_to_model(model, tokenizer, new_ids, data)
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert model.generation_config.eos_token_id == sorted({end, tokenizer.eos_token_id})


RECIPE = """recipe "t"
model "{model}" {{
{tokens}
}}
method lora {{
  rank = 8
{saved}
}}
data {{
  train      = "train.jsonl"
  format     = chat
  max_length = 1024
}}
train {{ epochs = 1; lr = 2e-4; global_batch = 8; micro_batch = 1 }}
hardware {{ gpu = a100-80gb }}
"""


def recipe(tmp_path, tokens="", saved="", model=str(TINY_MODEL)) -> Path:
    (tmp_path / "train.jsonl").write_text('{"messages": []}\n')
    path = tmp_path / "r.ftspec"
    path.write_text(RECIPE.format(model=model, tokens=tokens, saved=saved))
    return path


def test_plan_carries_tokens_and_how_lora_trains_them(tmp_path):
    plan = compile_recipe(recipe(tmp_path, 'add_tokens = ["<tool>", "</tool>"]\n  eos_token = "<|im_end|>"'),
                          out_dir=tmp_path / "b").plan
    assert plan["model"]["add_tokens"] == ["<tool>", "</tool>"] and plan["model"]["eos_token"] == "<|im_end|>"
    assert plan["method"]["lora"]["new_tokens"] == "trainable_token_indices"
    plan = compile_recipe(recipe(tmp_path, 'add_tokens = ["<tool>"]', "modules_to_save = [lm_head]"),
                          out_dir=tmp_path / "b").plan
    assert plan["method"]["lora"]["new_tokens"] == "modules_to_save"
    plain = compile_recipe(recipe(tmp_path), out_dir=tmp_path / "b").plan
    assert "add_tokens" not in plain["model"] and "new_tokens" not in plain["method"]["lora"]


def test_estimator_counts_added_tokens(tmp_path):
    model = "meta-llama/Llama-3.1-8B"

    def trainable(tokens="", saved=""):
        memory = setup_from_recipe(analyze(recipe(tmp_path, tokens, saved, model)).recipe)
        return memory.setup, estimate(memory.setup).params_trainable

    base_setup, base = trainable()
    setup, with_rows = trainable('add_tokens = ["<a>", "<b>"]')
    assert setup.arch.vocab == base_setup.arch.vocab + 2
    assert with_rows - base == 2 * 2 * 4096  # two rows of the embedding and two of the untied head
    setup, whole = trainable('add_tokens = ["<a>", "<b>"]', "modules_to_save = [embed_tokens]")
    assert whole - base == 2 * (128256 + 2) * 4096  # both layers trained in full


def test_pad_equal_to_eos_under_completion_loss_is_warned(tmp_path):
    warned = [d for d in analyze(recipe(tmp_path, 'pad_token = "<|end|>"')).diagnostics if d.code == "W0436"]
    assert len(warned) == 1 and warned[0].span.line == 3 and "EOS" in warned[0].message  # <|end|>: the tiny EOS
    explicit = 'pad_token = "<x>"\n  eos_token = "<x>"'
    assert [d.code for d in analyze(recipe(tmp_path, explicit)).diagnostics if d.code == "W0436"] == ["W0436"]
    assert not [d for d in analyze(recipe(tmp_path, 'pad_token = "<|pad|>"')).diagnostics if d.code == "W0436"]
