"""Checks of the settings recipes from other tools need: `chat_template`, the message keys and `roles`, hub
data set ids (`hf:org/name:config@split`), and the special tokens of `model` (pad, eos, add_tokens). Each is a
pass `(recipe, sink) -> None` like check.py's."""

from __future__ import annotations

import json
import re

from ftc.compiler.diagnostics import DiagnosticSink, did_you_mean
from ftc.compiler.resolve import ResolvedRecipe
from ftc.plan.chat_templates import NAMED, is_template_file, jinja_problem

def check_chat_template(recipe: ResolvedRecipe, sink: DiagnosticSink) -> None:
    value = recipe.value("data.chat_template")
    if value is None:
        return
    span = recipe.span("data.chat_template")
    if recipe.value("data.format") == "text":
        sink.error("E0430", "`chat_template` needs rows with turns, and `format = text` has none", span,
                   label="text rows are not rendered", help="use `format = chat`, `instruction` or `completion`, "
                                                            "or remove `chat_template`")
        return
    if not is_template_file(value):
        if value not in NAMED:
            guess = did_you_mean(value, NAMED)
            sink.error("E0431", f"unknown chat template `{value}`", span, label="not a named template",
                       help=(f"did you mean `{guess}`? " if guess else "") + "named templates: "
                       + ", ".join(NAMED) + '; or a Jinja file: `chat_template = "templates/mine.jinja"`')
        return
    path = recipe.resolve_path("data.chat_template", value)
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        sink.error("E0432", f"chat template file `{value}` not found or not readable", span,
                   label="no such file", help="the path is relative to the recipe file that names it")
        return
    problem = jinja_problem(source)
    if problem is not None:
        sink.error("E0433", f"chat template file `{value}` is not valid Jinja: {problem}", span,
                   label="the template does not compile")


HUB_DATASET = re.compile(r"hf:(?P<name>[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?)"
                         r"(:(?P<config>[\w.-]+))?(@(?P<split>[\w.-]+(\[[^\]\s]*\])?))?")


def check_hub_ids(recipe: ResolvedRecipe, sink: DiagnosticSink) -> None:
    """`hf:org/name`, with an optional `:config` and `@split` (a slice like `train[:10%]` too), spelled as the
    runtime reads it: a malformed one is found now, not after the model has loaded."""
    for key in ("data.train", "data.eval"):
        for text in recipe.value(key) or ():
            if text.startswith("hf:") and HUB_DATASET.fullmatch(text) is None:
                sink.error("E0435", f"`{text}` is not a hub data set id", recipe.span(key),
                           label="expected hf:org/name[:config][@split]",
                           help='write e.g. "hf:tatsu-lab/alpaca", "hf:allenai/c4:en@validation" or '
                                '"hf:org/name@train[:10%]"')


def check_conversation_keys(recipe: ResolvedRecipe, sink: DiagnosticSink) -> None:
    """`roles` and the message keys of `columns` describe chat rows; other formats would ignore them."""
    if recipe.value("data.format") == "chat":
        return
    for key in ("data.columns.role", "data.columns.content", "data.roles.system", "data.roles.user",
                "data.roles.assistant", "data.roles.tool"):
        if recipe.is_set(key):
            sink.warning("W0434", f"`{key.split('.', 1)[1]}` has no effect unless `format = chat`", recipe.span(key),
                         label="describes messages", help="set `format = chat` for rows of messages")
            return


def check_tokens(recipe: ResolvedRecipe, sink: DiagnosticSink) -> None:
    for key in ("model.pad_token", "model.eos_token"):
        if recipe.value(key) == "":
            sink.error("E0208", f"`{key}` is empty", recipe.span(key), label="no token")
    added = recipe.value("model.add_tokens") or ()
    seen = set()
    for token in added:
        if not token.strip():
            sink.error("E0434", "`add_tokens` has an empty or blank token", recipe.span("model.add_tokens"),
                       label="not a token")
        elif token in seen:
            sink.warning("W0435", f"`add_tokens` names `{token}` twice", recipe.span("model.add_tokens"))
        seen.add(token)
    pad, train_on = recipe.value("model.pad_token"), recipe.value("data.train_on")
    eos = recipe.value("model.eos_token") or _tokenizer_eos(recipe)
    if pad is not None and pad == eos and train_on == "completions":
        sink.warning("W0436", f"`pad_token` is the EOS token `{eos}` under `train_on = completions`",
                     recipe.span("model.pad_token"), label="pad = EOS",
                     help="collators that mask padding by id (TRL's, and most others a saved tokenizer meets) "
                          "mask the EOS too, and the model never learns to stop; pick a pad token of its own, "
                          'e.g. `pad_token = "<|pad|>"`')


def _tokenizer_eos(recipe: ResolvedRecipe) -> str | None:
    """The EOS of a local tokenizer (tokenizer_config.json), read without the tokenizer libraries."""
    name = recipe.value("model.tokenizer") or recipe.value("model")
    key = "model.tokenizer" if recipe.value("model.tokenizer") else "model"
    if not isinstance(name, str):
        return None
    try:
        config = json.loads((recipe.resolve_path(key, name) / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    eos = config.get("eos_token") if isinstance(config, dict) else None
    if isinstance(eos, dict):
        eos = eos.get("content")
    return eos if isinstance(eos, str) else None


PASSES = (check_chat_template, check_hub_ids, check_conversation_keys, check_tokens)
