"""Rows to text segments, each marked trained or masked; and what the tokenizer adds on its own.

A row becomes an ordered list of segments. Prompts and earlier turns are masked segments, the
completion / assistant turns are trained ones. Segments are encoded separately and concatenated,
which is exactly what the model sees at inference: the prompt encoded on its own, then the tokens
it generates. For chat, the segment boundaries come from rendering prefixes of the conversation
with the tokenizer's own chat template, so any template that renders prefixes as prefixes works.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from .errors import DataError

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


def probe_tokenizer(tokenizer, fmt: str) -> TokenizerInfo:
    eos = tokenizer.eos_token_id
    if eos is None:
        raise DataError("the tokenizer has no EOS token: a model trained on this data would never learn to stop",
                        help="set eos_token on the tokenizer (tokenizer_config.json)")
    with_special = tokenizer("x", add_special_tokens=True)["input_ids"]
    plain = tokenizer("x", add_special_tokens=False)["input_ids"]
    prefix = ()
    if plain and with_special[-len(plain):] == plain:
        prefix = tuple(with_special[:len(with_special) - len(plain)])
    nl = tokenizer("\n", add_special_tokens=False)["input_ids"]
    nlx = tokenizer("\nx", add_special_tokens=False)["input_ids"]
    strips = nlx[:len(nl)] == nl and nlx[len(nl):] != plain
    end_ids = {eos}
    if fmt == "chat":
        end_ids |= _end_of_turn_ids(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    return TokenizerInfo(prefix, eos, frozenset(end_ids), pad, strips, tuple(nl))


def _end_of_turn_ids(tokenizer) -> set[int]:
    """Special tokens the template writes after an assistant's content: its end-of-turn marker."""
    renderer = ChatRenderer(tokenizer)
    msgs = [{"role": "user", "content": "ping"}, {"role": "assistant", "content": "pong"}]
    try:
        full = renderer.render(msgs, False)
    except Exception:
        return set()
    tail = full[full.rfind("pong") + len("pong"):] if "pong" in full else ""
    ids = tokenizer(tail, add_special_tokens=False)["input_ids"] if tail else []
    special = set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    return {i for i in ids if i in special}


class ChatRenderer:
    """Renders conversations with the tokenizer's chat template (compiled once)."""

    def __init__(self, tokenizer):
        template = tokenizer.chat_template
        if isinstance(template, dict):
            template = template.get("default") or next(iter(template.values()), None)
        if not template:
            raise DataError("format chat needs a tokenizer with a chat template, and this tokenizer has none",
                            help="use a chat/instruct tokenizer, set `chat_template` in tokenizer_config.json, "
                                 "or use format = instruction or completion")
        self.template = template
        self._kwargs = dict(tokenizer.special_tokens_map)
        self._tokenizer = tokenizer
        self._skeletons: dict = {}
        try:
            from transformers.utils.chat_template_utils import _compile_jinja_template

            self._compiled = _compile_jinja_template(template)
        except Exception:  # a private helper: fall back to the public path
            self._compiled = None

    def render(self, messages: list[dict], add_generation_prompt: bool) -> str:
        if self._compiled is not None:
            return self._compiled.render(messages=messages, tools=None, documents=None,
                                         add_generation_prompt=add_generation_prompt, **self._kwargs)
        return self._tokenizer.apply_chat_template(messages, tokenize=False,
                                                   add_generation_prompt=add_generation_prompt)

    def segments(self, messages: list[dict], train_on: str) -> list[tuple[str, bool]]:
        """[(text, trained)]; assistant turns (with their end-of-turn) trained, the rest masked.

        The boundaries come from a skeleton rendered once per role sequence (contents replaced by
        sentinels); a row uses it only when the skeleton with the row's contents filled in equals the
        row's real rendering, so templates that edit or inspect contents fall back to rendering every
        prefix of that row.
        """
        full = self.render(messages, False)
        if train_on == "all":
            return [(full, True)]
        roles = tuple(m["role"] for m in messages)
        skeleton = self._skeletons.get(roles, _MISSING)
        if skeleton is _MISSING:
            skeleton = self._skeletons[roles] = _Skeleton.build(self, roles)
        if skeleton is not None:
            found = skeleton.apply([m["content"] for m in messages], full)
            if found is not None:
                return found
        return self._segments_by_prefixes(messages, full)

    def _segments_by_prefixes(self, messages: list[dict], full: str) -> list[tuple[str, bool]]:
        return [(full[a:b], t) for a, b, t in self.boundaries(messages, full)]

    def boundaries(self, messages: list[dict], full: str) -> list[tuple[int, int, bool]]:
        """(start, end, trained) character spans of `full`, found by rendering prefixes of the conversation."""
        out, pos, last = [], 0, len(messages) - 1
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            before = self.render(messages[:i], True)
            through = full if i == last else self.render(messages[: i + 1], False)
            if not (len(before) >= pos and full.startswith(before) and full.startswith(through)
                    and len(through) >= len(before)):
                raise ValueError(f"the chat template does not render the conversation up to message {i + 1} as a "
                                 "prefix of the whole, so the assistant turn cannot be located")
            out.append((pos, len(before), False))
            out.append((len(before), len(through), True))
            pos = len(through)
        if pos < len(full):
            out.append((pos, len(full), False))
        return [s for s in out if s[1] > s[0]]


_MISSING = object()


@dataclass(frozen=True)
class _Skeleton:
    """A role sequence's rendering with sentinel contents: literal pieces and segment boundaries."""

    literals: tuple[str, ...]  # len(order) + 1 pieces around the contents
    order: tuple[int, ...]  # message index of each content, in text order
    cuts: tuple[tuple[int, int, int, int, bool], ...]  # (start piece, offset, end piece, offset, trained)

    @staticmethod
    def build(renderer: "ChatRenderer", roles: tuple[str, ...]) -> "_Skeleton | None":
        import re

        sentinels = [f"\ue000{k}\ue001" for k in range(len(roles))]
        messages = [{"role": r, "content": s} for r, s in zip(roles, sentinels)]
        try:
            full = renderer.render(messages, False)
            spans = renderer.boundaries(messages, full)
        except Exception:
            return None
        found = [(m.start(), m.end(), int(m.group(1))) for m in re.finditer("\ue000(\\d+)\ue001", full)]
        order = [k for _, _, k in found]
        if sorted(order) != list(range(len(roles))):
            return None  # a content dropped or repeated by the template
        literals, pos = [], 0
        for a, b, _ in found:
            literals.append(full[pos:a])
            pos = b
        literals.append(full[pos:])
        bounds = [(0 if j == 0 else found[j - 1][1], found[j][0] if j < len(found) else len(full))
                  for j in range(len(literals))]

        def locate(x: int) -> tuple[int, int] | None:
            """(literal piece, offset in it) of skeleton position x; None inside a content."""
            for j, (lo, hi) in enumerate(bounds):
                if lo <= x <= hi:
                    return j, x - lo
            return None

        cuts = []
        for a, b, trained in spans:
            la, lb = locate(a), locate(b)
            if la is None or lb is None:
                return None
            cuts.append((la[0], la[1], lb[0], lb[1], trained))
        return _Skeleton(tuple(literals), tuple(order), tuple(cuts))

    def apply(self, contents: list, full: str) -> list[tuple[str, bool]] | None:
        """The row's segments, or None when the row's real rendering differs from the skeleton's."""
        parts = [self.literals[0]]
        piece_start = [0]
        pos = len(self.literals[0])
        for k, lit in zip(self.order, self.literals[1:]):
            c = contents[k]
            if not isinstance(c, str):
                return None
            parts.append(c)
            parts.append(lit)
            pos += len(c)
            piece_start.append(pos)
            pos += len(lit)
        if pos != len(full) or "".join(parts) != full:
            return None
        return [(full[piece_start[ja] + oa:piece_start[jb] + ob], t) for ja, oa, jb, ob, t in self.cuts
                if piece_start[jb] + ob > piece_start[ja] + oa]


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
