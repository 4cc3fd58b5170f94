"""Build the tiny demo assets deterministically: a small chat dataset, a byte-level BPE tokenizer
with a chat template, and a 4-layer Llama lightly pretrained on plain-text facts.

The assets are committed so a fresh clone needs no build step; this script is how they were made:

    python examples/tiny/build.py            # rewrites examples/tiny/{model,data}

Pretraining uses plain sentences only ("The capital of France is Paris."); the chat data asks the same
facts as questions, so a fine-tune has a real, measurable job: learn the chat format and the answers.
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 1234

CAPITALS = [
    ("France", "Paris"), ("Spain", "Madrid"), ("Italy", "Rome"), ("Germany", "Berlin"), ("Japan", "Tokyo"),
    ("Canada", "Ottawa"), ("Egypt", "Cairo"), ("Peru", "Lima"), ("Kenya", "Nairobi"), ("Norway", "Oslo"),
    ("Chile", "Santiago"), ("Greece", "Athens"), ("Poland", "Warsaw"), ("Cuba", "Havana"), ("Ireland", "Dublin"),
    ("Austria", "Vienna"), ("Portugal", "Lisbon"), ("Sweden", "Stockholm"), ("India", "New Delhi"),
    ("China", "Beijing"), ("Russia", "Moscow"), ("Mexico", "Mexico City"), ("Turkey", "Ankara"),
    ("Finland", "Helsinki"),
]
COLORS = [
    ("sky", "blue"), ("grass", "green"), ("sun", "yellow"), ("snow", "white"), ("coal", "black"),
    ("banana", "yellow"), ("tomato", "red"), ("orange", "orange"), ("leaf", "green"), ("cloud", "white"),
    ("plum", "purple"), ("rose", "red"), ("ocean", "blue"), ("crow", "black"), ("carrot", "orange"),
]
OPPOSITES = [
    ("hot", "cold"), ("big", "small"), ("fast", "slow"), ("up", "down"), ("light", "dark"), ("old", "new"),
    ("happy", "sad"), ("early", "late"), ("open", "closed"), ("full", "empty"), ("hard", "soft"),
    ("long", "short"), ("rich", "poor"), ("wet", "dry"), ("near", "far"), ("loud", "quiet"),
]
SOUNDS = [
    ("dog", "barks"), ("cat", "meows"), ("cow", "moos"), ("duck", "quacks"), ("lion", "roars"),
    ("sheep", "bleats"), ("horse", "neighs"), ("owl", "hoots"), ("snake", "hisses"), ("bee", "buzzes"),
]
NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
           "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen"]
SYSTEM = "You are a short and helpful assistant."

SPECIAL = ["<|pad|>", "<|bos|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + '<|end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}{{ message['content'] + '<|end|>\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


def facts(rng: random.Random) -> list[tuple[str, str, str]]:
    """(question, answer, plain sentence) triples over the small world above."""
    out = []
    for country, city in CAPITALS:
        s = f"The capital of {country} is {city}."
        out += [(f"What is the capital of {country}?", s, s), (f"Which city is the capital of {country}?", s, s)]
    for thing, color in COLORS:
        s = f"The {thing} is {color}."
        out += [(f"What color is the {thing}?", s, s), (f"Tell me the color of the {thing}.", s, s)]
    for word, opp in OPPOSITES:
        s = f"The opposite of {word} is {opp}."
        out += [(f"What is the opposite of {word}?", s, s), (f"Give me the opposite of {word}.", s, s)]
    for animal, sound in SOUNDS:
        s = f"The {animal} {sound}."
        out += [(f"What sound does the {animal} make?", s, s)]
    for a in range(10):
        for b in range(10):
            s = f"{NUMBERS[a].capitalize()} plus {NUMBERS[b]} is {NUMBERS[a + b]}."
            out += [(f"What is {NUMBERS[a]} plus {NUMBERS[b]}?", s, s)]
    rng.shuffle(out)
    return out


def chat_rows(rng: random.Random, items) -> list[dict]:
    rows = []
    for i, (question, answer, _) in enumerate(items):
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        if i % 3 == 0:
            messages.insert(0, {"role": "system", "content": SYSTEM})
        if i % 5 == 0:  # a second turn: multi-turn masking is exercised too
            q2, a2, _ = items[(i * 7 + 3) % len(items)]
            messages += [{"role": "user", "content": q2}, {"role": "assistant", "content": a2}]
        rows.append({"messages": messages})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")


def build_tokenizer(corpus: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=1024, special_tokens=SPECIAL, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|bos|>", eos_token="<|end|>", pad_token="<|pad|>",
        additional_special_tokens=SPECIAL[3:], chat_template=CHAT_TEMPLATE, model_max_length=512,
    )


def pretrain_text(rng: random.Random, items) -> list[str]:
    """Paragraphs of plain facts: the model learns the world, not the chat format."""
    sentences = [s for _, _, s in items]
    paragraphs = []
    for _ in range(1500):
        paragraphs.append(" ".join(rng.sample(sentences, 6)))
    return paragraphs


def build(out: Path = HERE, steps: int = 400) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    rng = random.Random(SEED)
    items = facts(rng)
    n_eval = 48
    train_items, eval_items = items[n_eval:], items[:n_eval]
    write_jsonl(out / "data" / "train.jsonl", chat_rows(rng, train_items))
    write_jsonl(out / "data" / "eval.jsonl", chat_rows(rng, eval_items))

    texts = pretrain_text(rng, items)
    questions = [q for q, _, _ in items]  # the tokenizer has seen the questions' words, not their format
    tokenizer = build_tokenizer(texts + questions + [SYSTEM])

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=128, intermediate_size=384, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, rms_norm_eps=1e-5,
        tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, dtype="float32",
    )
    model = LlamaForCausalLM(config)
    model.train()
    ids = [tokenizer.bos_token_id]
    for t in texts:
        ids += tokenizer(t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    data = torch.tensor(ids)
    seq, batch = 128, 16
    n_windows = (len(data) - 1) // seq
    windows = data[: n_windows * seq].view(n_windows, seq)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(SEED)
    for step in range(steps):
        idx = torch.randint(0, n_windows, (batch,), generator=g)
        x = windows[idx]
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step % 50 == 0 or step == steps - 1:
            print(f"pretrain step {step:4d} loss {loss.item():.3f}", flush=True)
    model.eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.save_pretrained(out / "model")
    tokenizer.save_pretrained(out / "model")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(int(os.environ.get("FTC_THREADS", "2")))
    build(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
