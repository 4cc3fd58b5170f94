"""Passes for what the run reads: the recipe's identity, the model, the method and the data."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ftc import __version__
from ftc.compiler.lower.builder import Lowering
from ftc.compiler.models.params import is_all_linear, new_token_training
from ftc.compiler.models.resolve import is_local_model
from ftc.compiler.units import Amount
from ftc.plan import ALL_LINEAR, SCHEMA_VERSION


def lower_recipe(lw: Lowering) -> None:
    sources = []
    for path in lw.recipe.file_paths:
        try:
            digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError:  # the loader already read it; a file removed meanwhile is not our concern here
            digest = "0" * 64
        sources.append({"path": lw.rel(path), "sha256": digest})
    lw.plan["schema_version"] = SCHEMA_VERSION
    lw.plan["ftc_version"] = __version__
    lw.plan["recipe"] = {"name": lw.recipe.name, "source": lw.rel(lw.recipe.file_paths[-1]), "sources": sources}


def lower_model(lw: Lowering) -> None:
    r = lw.recipe
    name = r.value("model")
    local = is_local_model(name, r.location("model"))
    tokenizer = r.value("model.tokenizer")
    if tokenizer is not None and is_local_model(tokenizer, r.location("model.tokenizer")):
        tokenizer = lw.rel(tokenizer, "model.tokenizer")
    lw.plan["model"] = {
        "name_or_path": lw.rel(name, "model") if local else name,
        "local": local,
        "revision": r.value("model.revision"),
        "dtype": r.value("model.dtype"),
        "attention": r.value("model.attention") if r.is_set("model.attention") else _default_attention(lw),
        "trust_remote_code": bool(r.value("model.trust_remote_code", False)),
        "tokenizer": tokenizer,
    }
    for key in ("pad_token", "eos_token"):  # present only when set
        if r.value(f"model.{key}") is not None:
            lw.plan["model"][key] = r.value(f"model.{key}")
    if r.value("model.add_tokens"):
        lw.plan["model"]["add_tokens"] = list(dict.fromkeys(r.value("model.add_tokens")))


def _default_targets(lw: Lowering) -> list[str]:
    """No `targets` written: the attention projections of the model's family (`o_proj` is `dense` in
    Falcon and `out_proj` in OPT); the schema's Llama names when the architecture is not known."""
    arch = lw.architecture
    if arch is None:
        return list(lw.recipe.value("method.targets"))
    return lw.decide("method.targets", list(arch.attention_targets),
                     f"not set: the attention projections of {arch.a_model}")


def _lora_targets(lw: Lowering, targets) -> list[str] | str:
    """Targets as the runtime uses them: module names. `all_linear` becomes the architecture's linear module
    names, except where the two differ in peft (fused expert weights get twice the rank under all-linear) or
    the architecture is not known; there the plan keeps `all_linear` (peft's `all-linear`)."""
    if not is_all_linear(targets):
        return list(targets)
    arch = lw.architecture
    if arch is None or any(m.lora_rank_factor != 1 for m, _ in arch.all_linears):
        return ALL_LINEAR
    return list(arch.linear_names)


def _default_attention(lw: Lowering) -> str:
    arch = lw.architecture
    if arch is None or arch.default_attention == lw.recipe.value("model.attention"):
        return lw.recipe.value("model.attention")
    return lw.decide("model.attention", arch.default_attention,
                     f"not set: transformers has no sdpa attention for {arch.model_type} models")


def lower_method(lw: Lowering) -> None:
    r = lw.recipe
    kind = r.value("method")
    lora = None
    if kind in ("lora", "qlora"):
        targets = r.value("method.targets") if r.is_set("method.targets") else _default_targets(lw)
        lora = {
            "rank": r.value("method.rank"),
            "alpha": float(r.value("method.alpha")),
            "dropout": float(r.value("method.dropout")),
            "targets": _lora_targets(lw, targets),
            "modules_to_save": list(r.value("method.modules_to_save", ())),
            "bias": r.value("method.bias", "none"),
        }
        if any(r.value(f"model.{key}") for key in ("add_tokens", "pad_token", "eos_token")):
            lora["new_tokens"] = new_token_training(lora["modules_to_save"], lw.architecture)
    quantization = None
    if kind == "qlora":
        quantization = {"quant": r.value("method.quant"), "double_quant": bool(r.value("method.double_quant")),
                        "compute_dtype": r.value("method.compute_dtype")}
    lw.plan["method"] = {"kind": kind, "lora": lora, "quantization": quantization}




def _data_paths(lw: Lowering, key: str) -> list[str] | None:
    values = lw.recipe.value(key)
    if values is None:
        return None
    return [value if value.startswith("hf:") else lw.rel(value, key) for value in values]


def lower_data(lw: Lowering) -> None:
    r = lw.recipe
    split = r.value("data.eval_split")
    columns = {key.rsplit(".", 1)[1]: s.value for key, s in r.items("data.columns.")}
    ratio = isinstance(split, Amount) and split.unit == "ratio" and r.value("data.eval") is None
    lw.plan["data"] = {
        "train": _data_paths(lw, "data.train"),
        "eval": _data_paths(lw, "data.eval"),
        "eval_split": float(split.value) if ratio else 0.0,
        "format": r.value("data.format"),
        "columns": columns,
        "max_length": r.value("data.max_length"),
        "packing": bool(r.value("data.packing", False)),
        "dedup": r.value("data.dedup"),
        "near_dedup_threshold": float(r.value("data.near_threshold")),
        "train_on": r.value("data.train_on"),
        "on_bad_rows": r.value("data.on_bad_rows"),
        "truncation": r.value("data.truncation"),
        "seed": r.value("data.seed"),
        "cache_dir": lw.rel(r.value("data.cache_dir"), "data.cache_dir") if r.value("data.cache_dir") else None,
    }
    lw.plan["data"].update(_conversation_data(lw))


def _conversation_data(lw: Lowering) -> dict:
    """The data settings a recipe may add (each key present only when set): the chat template, the roles'
    names, `max_samples`, and `eval_split` as a row count."""
    from ftc.plan.chat_templates import is_template_file

    r, out = lw.recipe, {}
    template = r.value("data.chat_template")
    if template is not None:
        out["chat_template"] = {"file": lw.rel(template, "data.chat_template")} if is_template_file(template) \
            else {"name": template}
    roles = {key.rsplit(".", 1)[1]: s.value for key, s in r.items("data.roles.")}
    if roles:
        out["roles"] = roles
    if r.value("data.max_samples") is not None:
        out["max_samples"] = r.value("data.max_samples")
    split = r.value("data.eval_split")
    if isinstance(split, Amount) and split.unit == "rows" and split.value > 0 and r.value("data.eval") is None:
        out["eval_rows"] = int(split.value)
    return out


