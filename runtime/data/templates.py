"""Chat templates: which one applies, rendering in jinja2's sandbox, and where the assistant turns are.

A template is a named one (plan/chat_templates.py), a Jinja file the recipe names, or the tokenizer's
own. Templates are untrusted text, so they are compiled only by jinja2's ImmutableSandboxedEnvironment with
the options transformers uses (trim_blocks, lstrip_blocks, loop controls, `{% generation %}`,
`raise_exception`, `tojson`); nothing from a template or a row ever runs outside the sandbox.

`render_chat` is the reusable entry: a message list -> the text and the character spans of the assistant
turns (content through the template's end-of-turn token), which is what a completion mask trains on.
`ChatRenderer` adds the per-row speed-up the data pipeline needs (a skeleton per role sequence).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from ftc.plan.chat_templates import NAMED

from .errors import DataError


@dataclass(frozen=True)
class ChatTemplate:
    """A template's source, its name (None: a file or the tokenizer's own) and its end-of-turn text
    (None: the tokenizer's EOS for a named template, unknown for others)."""

    source: str
    name: str | None = None
    end: str | None = None
    origin: str = "tokenizer"  # "named" | "file" | "tokenizer"

    @property
    def label(self) -> str:
        return f"chat_template {self.name}" if self.name else ("the chat template file" if self.origin == "file"
                                                                 else "the tokenizer's chat template")

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()[:16]


def named(name: str) -> ChatTemplate:
    spec = NAMED.get(name)
    if spec is None:
        raise DataError(f"unknown chat template {name!r}", help="one of " + ", ".join(NAMED)
                        + ", or a Jinja file")
    return ChatTemplate(spec.source, spec.name, spec.end, "named")


def from_plan(value, base_dir: Path) -> ChatTemplate | None:
    """plan.data.chat_template ({"name": ...} or {"file": ...}, file relative to the plan) -> a template."""
    if not value:
        return None
    if value.get("name"):
        return named(value["name"])
    path = (Path(base_dir) / value["file"]).resolve()
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the chat template file: {exc}", file=str(path)) from None
    return ChatTemplate(source, None, None, "file")


def of_tokenizer(tokenizer) -> ChatTemplate:
    template = tokenizer.chat_template
    if isinstance(template, dict):
        template = template.get("default") or next(iter(template.values()), None)
    if not template:
        raise DataError("format chat needs a chat template, and this tokenizer has none",
                        help="set `chat_template = chatml` (or llama3, mistral, gemma, zephyr, alpaca, or a "
                             "Jinja file) in the data block, or use format = instruction or completion")
    return ChatTemplate(template)


# ---------------------------------------------------------------- the sandbox

_COMPILED: dict[str, object] = {}


def compile_template(source: str):
    """The template compiled in jinja2's immutable sandbox (cached by source)."""
    hit = _COMPILED.get(source)
    if hit is not None:
        return hit
    import jinja2

    from ftc.plan.chat_templates import sandbox_environment

    env = sandbox_environment()
    try:
        compiled = env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise DataError(f"the chat template is not valid Jinja: {exc.message} (line {exc.lineno})") from None
    _COMPILED[source] = compiled
    return compiled


def special_tokens(tokenizer) -> dict[str, str]:
    """The variables a template may read: bos_token, eos_token, pad_token, unk_token (only those set)."""
    out = {}
    for key in ("bos_token", "eos_token", "pad_token", "unk_token"):
        value = getattr(tokenizer, key, None)
        if isinstance(value, str) and value:
            out[key] = value
    return out


@dataclass(frozen=True)
class RenderedChat:
    """A conversation as text, and the (start, end) character spans of its assistant turns."""

    text: str
    assistant_spans: tuple[tuple[int, int], ...]

    def segments(self) -> list[tuple[str, bool]]:
        """[(text, trained)] in order, covering the whole text."""
        out, pos = [], 0
        for a, b in self.assistant_spans:
            out += [(self.text[pos:a], False), (self.text[a:b], True)]
            pos = b
        out.append((self.text[pos:], False))
        return [s for s in out if s[0]]


def render_chat(template: ChatTemplate, messages: list[dict], tokens: dict[str, str]) -> RenderedChat:
    """Render `messages` and locate each assistant turn (content through the end-of-turn token); raises
    ValueError when the template does not render prefixes as prefixes, DataError for a template error."""
    renderer = ChatRenderer(template, tokens)
    full = renderer.render(messages, False)
    spans = tuple((a, b) for a, b, trained in renderer.boundaries(messages, full) if trained)
    return RenderedChat(full, spans)


def token_spans(tokenizer, rendered: RenderedChat) -> tuple[list[int], list[bool]]:
    """Token ids of `rendered` (segments encoded separately, as the model sees a prompt then its answer)
    and whether each token is in an assistant turn."""
    ids, trained = [], []
    for text, flag in rendered.segments():
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += piece
        trained += [flag] * len(piece)
    return ids, trained


class ChatRenderer:
    """Renders conversations with one template (compiled once) and splits them into masked/trained parts."""

    def __init__(self, template: ChatTemplate, tokens: dict[str, str]):
        self.template = template
        self._compiled = compile_template(template.source)
        self._kwargs = dict(tokens)
        self.end = template.end or (tokens.get("eos_token") if template.origin == "named" else None)
        self._skeletons: dict = {}

    @classmethod
    def for_tokenizer(cls, tokenizer, template: ChatTemplate | None = None) -> "ChatRenderer":
        return cls(template or of_tokenizer(tokenizer), special_tokens(tokenizer))

    def render(self, messages: list[dict], add_generation_prompt: bool) -> str:
        return self._compiled.render(messages=messages, tools=None, documents=None,
                                     add_generation_prompt=add_generation_prompt, **self._kwargs)

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
        """(start, end, trained) character spans of `full`, found by rendering prefixes of the conversation.
        With a known end-of-turn text, a turn's trained part stops right after it (what follows is masked)."""
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
            stop = len(through)
            if self.end:
                at = full.rfind(self.end, len(before), len(through))
                stop = at + len(self.end) if at >= 0 else stop
            out += [(pos, len(before), False), (len(before), stop, True), (stop, len(through), False)]
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
    def build(renderer: ChatRenderer, roles: tuple[str, ...]) -> "_Skeleton | None":
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
