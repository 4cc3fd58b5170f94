"""The plan's token settings on the tokenizer and the model: pad and EOS tokens, added tokens, the chat
template, the resized embeddings, and which embedding rows a LoRA run trains for the new tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional

from ftc.plan.sections import Data, Lora, Model

from .errors import RunError


def apply_to_tokenizer(tokenizer, model: Model, data: Data, folder: Path) -> tuple[int, ...]:
    """Set the plan's pad/eos (`model`), add its new tokens, set its chat template (`data`, files relative
    to the plan's `folder`); returns the ids the vocabulary gained. `ftc data` and `ftc run` both call it,
    so both tokenize alike. Raises DataError for an unreadable template file."""
    before = len(tokenizer)
    added = [t for t in model.add_tokens or () if t not in tokenizer.get_vocab()]
    if added:
        tokenizer.add_tokens(added)
    special = {key: value for key, value in (("eos_token", model.eos_token), ("pad_token", model.pad_token))
               if value}
    if special:
        tokenizer.add_special_tokens(special)
    if tokenizer.pad_token is None:  # batching needs a pad token; eos is the usual stand-in
        tokenizer.pad_token = tokenizer.eos_token
    template = data.chat_template
    if template:
        from ftc.runtime.data.templates import from_plan

        tokenizer.chat_template = from_plan(template, folder).source  # saved with the tokenizer
    return tuple(range(before, len(tokenizer)))


def apply_to_model(model, tokenizer, new_ids: tuple[int, ...], data: Optional[Data] = None) -> None:
    """Resize the embeddings for new tokens and point the configs at the tokenizer's eos/pad. Under a named
    chat template whose turns end with their own token (`<|im_end|>`), generation stops at it too."""
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    for config in (model.config, getattr(model, "generation_config", None)):
        if config is None:
            continue
        if tokenizer.eos_token_id is not None:
            config.eos_token_id = tokenizer.eos_token_id
        if tokenizer.pad_token_id is not None:
            config.pad_token_id = tokenizer.pad_token_id
    end = turn_end_id(tokenizer, data.chat_template if data is not None else None)
    generation = getattr(model, "generation_config", None)
    if generation is not None and end is not None and end != tokenizer.eos_token_id:
        generation.eos_token_id = sorted({end} | ({tokenizer.eos_token_id} - {None}))


def turn_end_id(tokenizer, chat_template: Optional[Mapping[str, str]]) -> int | None:
    """The id of the named chat template's end-of-turn token, when the tokenizer holds it as one token."""
    from ftc.plan.chat_templates import NAMED

    spec = NAMED.get((chat_template or {}).get("name") or "")
    if spec is None or spec.end is None:
        return None
    ids = tokenizer(spec.end, add_special_tokens=False)["input_ids"]
    return ids[0] if len(ids) == 1 else None


def _module_name(model, module) -> str | None:
    for name, candidate in model.named_modules():
        if candidate is module:
            return name.rsplit(".", 1)[-1]
    return None


def new_token_layers(model) -> list[str]:
    """Leaf names of the layers that hold token rows: the input embedding, and the output layer unless it is
    tied to the embedding (peft then follows the tie)."""
    names = [_module_name(model, model.get_input_embeddings())]
    output = model.get_output_embeddings()
    if output is not None and output.weight is not model.get_input_embeddings().weight:
        names.append(_module_name(model, output))
    if None in names:
        raise RunError("cannot find the embedding layers to train the added tokens on")
    return names


def lora_token_settings(lora: Lora, model, new_ids: tuple[int, ...]) -> dict:
    """LoraConfig arguments that train the new tokens' rows: peft's trainable_token_indices, or the whole
    layers through modules_to_save when the plan says so (`new_tokens`)."""
    if not new_ids:
        return {}
    layers = new_token_layers(model)
    if lora.new_tokens == "modules_to_save":
        saved = list(dict.fromkeys(list(lora.modules_to_save) + layers))
        return {"modules_to_save": saved}
    return {"trainable_token_indices": {name: list(new_ids) for name in layers}}
