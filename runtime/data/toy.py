"""A small byte-level BPE tokenizer with a chat template, trained on the spot (offline tests, benchmark).

The chat template closes every turn with an explicit end-of-turn token `<|end|>`, as real chat
templates do, so masking and the end-of-turn lint are exercised on the real code path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

SPECIALS = ["<pad>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def build_tokenizer(texts: Iterable[str], path: Path | None = None, *, vocab_size: int = 512,
                    chat_template: str | None = CHAT_TEMPLATE):
    """Train a byte-level BPE on `texts`; return a PreTrainedTokenizerFast (saved to `path` if given)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", bos)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   additional_special_tokens=SPECIALS[3:])
    if chat_template is not None:
        fast.chat_template = chat_template
    if path is not None:
        fast.save_pretrained(str(path))
    return fast
