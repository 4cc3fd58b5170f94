"""Model and tokenizer loading from the plan: full, LoRA (peft) and QLoRA (bitsandbytes 4-bit +
prepare_model_for_kbit_training). Seeds before anything random (LoRA init) so runs repeat."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftc.plan import ALL_LINEAR, Plan

from .errors import RunError
from .tokens import apply_to_model, apply_to_tokenizer

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


@dataclass(frozen=True)
class LoadedModel:
    model: Any
    tokenizer: Any
    trainable_params: int
    total_params: int
    source: str  # the folder or hub id it came from, for messages


def model_source(plan: Plan) -> str:
    """The folder (resolved against the plan) or hub id the weights come from."""
    spec = plan.model
    name = spec.name_or_path
    if spec.local or name.startswith((".", "/")):
        path = plan.path(name)
        if not path.is_dir():
            raise RunError(f"model folder {path} does not exist (plan model.name_or_path = {name!r})")
        if not (path / "config.json").is_file():
            raise RunError(f"model folder {path} has no config.json; is it a transformers model folder?")
        return str(path)
    return name


def _torch_dtype(name: str):
    import torch

    return getattr(torch, DTYPES[name])


def load_tokenizer(plan: Plan, source: str):
    from transformers import AutoTokenizer

    spec = plan.model
    tok_source = spec.tokenizer or source
    if spec.tokenizer and (plan.path(tok_source).exists()):
        tok_source = str(plan.path(tok_source))
    try:
        tokenizer = AutoTokenizer.from_pretrained(tok_source, revision=spec.revision,
                                                  trust_remote_code=spec.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise RunError(f"cannot load the tokenizer from {tok_source}: {exc}") from None
    if tokenizer.pad_token is None:  # batching needs a pad token; eos is the usual stand-in
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def lora_config(lora, model=None, new_ids: tuple[int, ...] = ()):
    """peft's LoraConfig for the plan's adapters. A target that names no module of the model but a
    parameter (a Mixtral or Qwen3-MoE layer's fused experts, `gate_up_proj` and `down_proj`) goes to
    `target_parameters`, which is how peft adapts those; `target_modules` would not find them."""
    from peft import LoraConfig

    targets = lora.targets
    modules, parameters = ("all-linear", []) if targets == ALL_LINEAR else (list(targets), [])
    if model is not None and isinstance(modules, list):
        leaf_modules = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
        leaf_params = {name.rsplit(".", 1)[-1] for name, _ in model.named_parameters()}
        parameters = [t for t in modules if t not in leaf_modules and t in leaf_params]
        modules = [t for t in modules if t not in parameters]
    kwargs = {"modules_to_save": list(lora.modules_to_save) or None}
    if new_ids and model is not None:  # the added tokens' rows of the embedding and output layers
        from .tokens import lora_token_settings

        kwargs.update(lora_token_settings(lora, model, new_ids))
    return LoraConfig(
        r=lora.rank, lora_alpha=float(lora.alpha), lora_dropout=float(lora.dropout),
        target_modules=modules, target_parameters=parameters or None,
        bias=lora.bias, task_type="CAUSAL_LM", **kwargs,
    )


def _keep_4bit_trainable_on_cpu(model) -> None:
    """bitsandbytes repacks a 4-bit weight for a fast CPU inference kernel the first time the layer
    runs in eval mode (an evaluation before training does that), and keeps it packed; that kernel has
    no backward, so later training steps would silently drop the gradient through the frozen weights.
    Turning the repacking off keeps every forward on the differentiable path."""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def qlora_device(env=None) -> int:
    """The GPU a QLoRA rank quantizes its copy of the model on: its own (LOCAL_RANK), never GPU 0 for all.
    bitsandbytes quantizes while loading, so the placement is set here, not by the Trainer afterwards."""
    from ftc.runtime.launch.rank import current

    return current(env).local_rank


def load_model(plan: Plan) -> LoadedModel:
    import torch
    from transformers import AutoModelForCausalLM, set_seed

    from ftc.runtime.data import DataError

    set_seed(plan.train.seed)
    source = model_source(plan)
    spec, method = plan.model, plan.method
    kind = method.kind
    kwargs: dict[str, Any] = {
        "dtype": _torch_dtype(spec.dtype),
        "attn_implementation": spec.attention,
        "trust_remote_code": spec.trust_remote_code,
        "revision": spec.revision,
    }
    if kind == "qlora":
        from transformers import BitsAndBytesConfig

        q = method.quantization
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type=q.quant, bnb_4bit_use_double_quant=q.double_quant,
            bnb_4bit_compute_dtype=_torch_dtype(q.compute_dtype),
            bnb_4bit_quant_storage=torch.uint8,
        )
        kwargs["device_map"] = "cpu" if plan.on_cpu else {"": qlora_device()}
    tokenizer = load_tokenizer(plan, source)
    try:
        new_ids = apply_to_tokenizer(tokenizer, plan.model, plan.data, plan.folder)
    except DataError as exc:
        raise RunError(f"data: {exc}") from None
    try:
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except (OSError, ValueError, ImportError) as exc:
        raise RunError(f"cannot load the model from {source}: {exc}") from None
    apply_to_model(model, tokenizer, new_ids, plan.data)
    gradient_checkpointing = plan.train.gradient_checkpointing
    if kind == "qlora" and plan.on_cpu:
        _keep_4bit_trainable_on_cpu(model)
    if kind == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False})
    if kind in ("lora", "qlora"):
        from peft import get_peft_model

        try:
            model = get_peft_model(model, lora_config(method.lora, model, new_ids))
        except ValueError as exc:  # e.g. a target module that the architecture does not have
            raise RunError(f"cannot attach LoRA adapters: {exc}") from None
    model.config.use_cache = False
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return LoadedModel(model, tokenizer, trainable, total, source)


def reload_for_generation(folder: Path, base: str | None = None):
    """Load a saved output (full model, or adapter on its base) for generation; used by tests and reports."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if (folder / "adapter_config.json").is_file():
        from peft import PeftModel

        if base is None:
            import json

            base = json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"]
        base_model = AutoModelForCausalLM.from_pretrained(base)
        if len(tokenizer) > base_model.get_input_embeddings().weight.shape[0]:  # the run added tokens
            base_model.resize_token_embeddings(len(tokenizer))
        model = PeftModel.from_pretrained(base_model, folder)
    else:
        model = AutoModelForCausalLM.from_pretrained(folder)
    model.eval()
    return model, tokenizer
