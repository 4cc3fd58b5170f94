"""Rows to text segments, each marked trained or masked; and what the tokenizer adds on its own.

A row becomes an ordered list of segments. Prompts and earlier turns are masked segments, the
completion / assistant turns are trained ones. Segments are encoded separately and concatenated,
which is exactly what the model sees at inference: the prompt encoded on its own, then the tokens
it generates. For chat (and for instruction and completion rows under `chat_template`), the segment
boundaries come from rendering prefixes of the conversation with the chat template (templates.py), so
any template that renders prefixes as prefixes works.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from .errors import DataError
from .templates import ChatRenderer, ChatTemplate

ALPACA_WITH_INPUT = ("Below is an instruction that describes a task, paired with an input that provides further "
                     "context. Write a response that appropriately completes the request.\n\n"
                     "### Instruction:\n", "\n\n### Input:\n", "\n\n### Response:\n")
ALPACA_NO_INPUT = ("Below is an instruction that describes a task. Write a response that appropriately completes "
                   "the request.\n\n### Instruction:\n", "\n\n### Response:\n")


@dataclass(frozen=True)
class TokenizerInfo:
    """What the pipeline needs to know about a tokenizer, probed once."""

    prefix_ids: tuple[int, ...]  # what the tokenizer puts before a text (BOS), masked
    eos_id: int
    end_ids: frozenset[int]  # tokens that end an example: EOS, and the template's end-of-turn
    pad_id: int
    strips_leading_space: bool  # a SentencePiece-style tokenizer that prefixes a space at string start
    newline_ids: tuple[int, ...]


def probe_tokenizer(tokenizer, fmt: str, template: ChatTemplate | None = None) -> TokenizerInfo:
    """`template`: the chat template rows are rendered with (None: none, or the tokenizer's own for chat)."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise DataError("the tokenizer has no EOS token: a model trained on this data would never learn to stop",
                        help='set it in the model block: `eos_token = "</s>"` (a token of the tokenizer)')
    with_special = tokenizer("x", add_special_tokens=True)["input_ids"]
    plain = tokenizer("x", add_special_tokens=False)["input_ids"]
    prefix = ()
    if plain and with_special[-len(plain):] == plain:
        prefix = tuple(with_special[:len(with_special) - len(plain)])
    nl = tokenizer("\n", add_special_tokens=False)["input_ids"]
    nlx = tokenizer("\nx", add_special_tokens=False)["input_ids"]
    strips = nlx[:len(nl)] == nl and nlx[len(nl):] != plain
    end_ids = {eos}
    if template is not None and template.origin == "named":
        end_ids = {_template_end_id(tokenizer, template)}
    elif fmt == "chat" or template is not None:
        end_ids |= _end_of_turn_ids(ChatRenderer.for_tokenizer(tokenizer, template), tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    return TokenizerInfo(prefix, eos, frozenset(end_ids), pad, strips, tuple(nl))


def _template_end_id(tokenizer, template: ChatTemplate) -> int:
    """The one token that closes an assistant turn under a named template: it must be a single token, or
    the end-of-turn lint (and the model's stopping) has nothing to hold on to."""
    if template.end is None:
        return tokenizer.eos_token_id
    ids = tokenizer(template.end, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        from ftc.plan.chat_templates import NAMED

        tokens = ", ".join(f'"{t}"' for t in NAMED[template.name].tokens)
        raise DataError(f"{template.label} closes assistant turns with `{template.end}`, which this tokenizer "
                        f"splits into {len(ids)} tokens: the model could not learn to end a turn",
                        help=f"add the template's tokens in the model block: `add_tokens = [{tokens}]`, and "
                             f'`eos_token = "{template.end}"` so generation stops there')
    return ids[0]


def _end_of_turn_ids(renderer: ChatRenderer, tokenizer) -> set[int]:
    """Special tokens the template writes after an assistant's content: its end-of-turn marker."""
    msgs = [{"role": "user", "content": "ping"}, {"role": "assistant", "content": "pong"}]
    try:
        full = renderer.render(msgs, False)
    except Exception:
        return set()
    tail = full[full.rfind("pong") + len("pong"):] if "pong" in full else ""
    ids = tokenizer(tail, add_special_tokens=False)["input_ids"] if tail else []
    special = set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    return {i for i in ids if i in special}


def rows_as_messages(chunk: pa.Table, fmt_name: str) -> list[list[dict]]:
    """Conversations of a chunk: chat rows as they are; instruction and completion rows as one user turn
    (the instruction, then its input after a blank line) and one assistant turn."""
    if fmt_name == "chat":
        return chunk.column("messages").to_pylist()
    if fmt_name == "completion":
        pairs = zip(chunk.column("prompt").to_pylist(), chunk.column("completion").to_pylist())
    else:
        inputs = chunk.column("input").to_pylist()
        users = [i if not (x or "").strip() else f"{i}\n\n{x}"
                 for i, x in zip(chunk.column("instruction").to_pylist(), inputs)]
        pairs = zip(users, chunk.column("output").to_pylist())
    return [[{"role": "user", "content": u}, {"role": "assistant", "content": a}] for u, a in pairs]


def instruction_prompts(table: pa.Table) -> pa.Array:
    """Alpaca prompts, built column-wise."""
    inst = table.column("instruction").combine_chunks()
    inp = pc.fill_null(table.column("input").combine_chunks(), "")
    has_input = pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(inp)), 0)
    a, b, c = ALPACA_WITH_INPUT
    with_input = pc.binary_join_element_wise(a, inst, b, inp, c, "")
    d, e = ALPACA_NO_INPUT
    without = pc.binary_join_element_wise(d, inst, e, "")
    return pc.if_else(has_input, with_input, without)
