"""From a typed recipe (or a lowered plan) to the estimator's input, its budget and its autos."""

from __future__ import annotations

from dataclasses import dataclass

from ftc.compiler.lower.speed import chunked_loss_requested, fused_optimizer_on
from ftc.compiler.memory import hardware
from ftc.compiler.memory.setup import MemorySetup
from ftc.compiler.models.resolve import ModelNotFound
from ftc.compiler.schema import AUTO

DEFAULT_SEQ_LEN = 2048


@dataclass(frozen=True)
class RecipeMemory:
    """What the budget pass, the auto passes and `ftc estimate` need from one recipe."""

    setup: MemorySetup | None  # autos filled with placeholders (see `autos`); None when the model is unknown or absent
    autos: frozenset[str]  # "micro_batch" | "zero" | "gradient_checkpointing" still to decide
    budget_bytes: int | None  # None: no GPU budget (no hardware block, cpu, or unknown GPU name)
    budget_source: str  # e.g. "a100-80gb", "memory_per_gpu"; "cpu", "unknown-gpu", "none" without a budget
    cpu_memory: int | None
    global_batch: int | None
    model_error: ModelNotFound | None
    assumptions: tuple[str, ...] = ()


def budget_of(recipe) -> tuple[int | None, str]:
    """(bytes per GPU, where they come from): a catalog name, "memory_per_gpu"; without a budget "cpu",
    "unknown-gpu" or "none"."""
    if recipe.has_block("hardware") and recipe.value("hardware.accelerator", "gpu") == "cpu":
        return None, "cpu"
    if not recipe.has_block("hardware"):
        return None, "none"
    memory = recipe.value("hardware.memory_per_gpu")
    if isinstance(memory, int):
        return memory, "memory_per_gpu"
    gpu = recipe.value("hardware.gpu")
    if gpu is None:
        return None, "none"
    try:
        return hardware.gpu_memory(gpu), f"{hardware.lookup(gpu)}"
    except KeyError:
        return None, "unknown-gpu"


def setup_from_recipe(recipe, strategy: str | None = None) -> RecipeMemory:
    """The estimator input for `recipe`; autos get placeholders and are listed in `autos`. `strategy`
    replaces the recipe's own (how `distributed auto` weighs DDP against FSDP)."""
    budget, source = budget_of(recipe)
    model_name = recipe.value("model")
    gpus_per_node = int(recipe.value("hardware.gpus_per_node", 1))
    nodes = int(recipe.value("hardware.nodes", 1))
    world = recipe.world_size()
    global_batch = recipe.value("train.global_batch")
    common = dict(budget_bytes=budget, budget_source=source, cpu_memory=recipe.value("hardware.cpu_memory"),
                  global_batch=global_batch if isinstance(global_batch, int) else None)
    if not isinstance(model_name, str):  # no model block: reported by the front end
        return RecipeMemory(None, frozenset(), model_error=None, **common)
    resolved = recipe.resolved_model
    if isinstance(resolved, ModelNotFound):
        return RecipeMemory(None, frozenset(), model_error=resolved, **common)
    method = recipe.value("method", "full")
    strategy = strategy or recipe.strategy()
    on_cpu = recipe.value("hardware.accelerator", "gpu") == "cpu"
    autos: set = set()
    assumptions = []
    micro, per_rank = _batch_shape(recipe, global_batch, world, autos)
    zero, checkpointing = _stage_autos(recipe, strategy, autos)
    seq_len = recipe.value("data.max_length")
    if not isinstance(seq_len, int):
        seq_len = DEFAULT_SEQ_LEN
        assumptions.append(f"`data.max_length` is not set: sequences assumed {DEFAULT_SEQ_LEN} tokens long")
    targets = recipe.value("method.targets", ()) if recipe.is_set("method.targets") else \
        resolved.architecture.attention_targets  # as lowering resolves an unset `targets`
    dtype = recipe.value("model.dtype", "bf16")
    quant_compute = recipe.value("method.compute_dtype", "bf16") if method == "qlora" else dtype
    split = recipe.value("data.eval_split")
    evaluates = recipe.value("data.eval") is not None or bool(getattr(split, "value", 0))
    offload_params = recipe.value("distributed.offload_params", "none") if strategy in ("deepspeed", "fsdp") else "none"
    arch, saved, token_rows, note = _added_tokens(recipe, resolved.architecture, method)
    assumptions += note
    setup = MemorySetup(
        arch=arch, method=method,
        lora_rank=int(recipe.value("method.rank", 16)),
        lora_targets="all_linear" if targets == "all_linear" else tuple(targets),
        lora_dropout=float(recipe.value("method.dropout", 0.0) or 0.0),
        modules_to_save=saved, trainable_tokens=token_rows,
        quant=recipe.value("method.quant") or "nf4", double_quant=bool(recipe.value("method.double_quant", True)),
        dtype=dtype, mixed_precision={"bf16": "bf16", "fp16": "fp16"}.get(quant_compute, "no"),
        optimizer="adamw" if (optimizer := recipe.value("train.optimizer", "adamw")) == "adamw_fused" else optimizer,
        fused_optimizer=optimizer == "adamw_fused" or fused_optimizer_on(recipe, on_cpu, strategy),
        micro_batch=int(micro), sequences_per_rank=per_rank,
        seq_len=int(seq_len),
        gradient_checkpointing=bool(checkpointing),
        attention=recipe.value("model.attention") if recipe.is_set("model.attention")
        else resolved.architecture.default_attention,  # as lowering resolves an unset `attention`
        strategy=strategy, zero=int(zero),
        fsdp_sharding=recipe.value("distributed.sharding", "full_shard") if strategy == "fsdp" else "full_shard",
        # the emitted accelerate.yaml: FSDP1 on GPUs, FSDP2 on CPU (compiler/emit/accelerate.py)
        fsdp_version=2 if on_cpu else 1,
        device="cpu" if on_cpu else "cuda",
        offload_optimizer=recipe.value("distributed.offload_optimizer", "none") if strategy == "deepspeed" else "none",
        offload_params=offload_params, dp_world=world, gpus_per_node=gpus_per_node, nodes=nodes,
        evaluates=evaluates,
        linear_cross_entropy=chunked_loss_requested(recipe, resolved.architecture),
        compiled=bool(recipe.value("train.compile")),
        eval_batch=eval_batch if isinstance(eval_batch := recipe.value("train.eval_batch"), int) else 0,
        objective=recipe.value("objective", "sft"),
        reference=recipe.value("objective.reference", "none") if recipe.value("objective") in ("dpo", "kto")
        else "none",
    )
    if setup.compiled:
        assumptions.append("`train.compile = true`: torch.compile's effect on activation memory is not modelled; "
                           "the estimate is the eager model's")
    return RecipeMemory(setup, frozenset(autos), model_error=None, assumptions=tuple(assumptions), **common)


def _batch_shape(recipe, global_batch, world: int, autos: set) -> tuple[int, int]:
    """(micro-batch, sequences per rank and step) as far as the recipe fixes them; an `auto` micro-batch is
    estimated at 1 and listed in `autos`. Sequences per rank are 0 when unknown (gradients then live for the
    whole step)."""
    micro = recipe.value("train.micro_batch", AUTO)
    accum = recipe.value("train.grad_accum", AUTO)
    if isinstance(global_batch, int) and world and global_batch % world == 0:
        per_rank = global_batch // world
    elif isinstance(micro, int) and isinstance(accum, int):
        per_rank = micro * accum
    else:
        per_rank = 0
    if micro is AUTO:
        if isinstance(accum, int) and isinstance(global_batch, int) and global_batch % (accum * world) == 0:
            micro = global_batch // (accum * world)
        else:
            autos.add("micro_batch")
            micro = 1
    return micro, per_rank


def _stage_autos(recipe, strategy: str, autos: set) -> tuple[int, bool]:
    """(ZeRO stage, gradient checkpointing) as written; each `auto` gets a placeholder and is listed in `autos`."""
    zero = recipe.value("distributed.zero", AUTO) if strategy == "deepspeed" else 0
    if zero is AUTO:
        autos.add("zero")
        zero = 0
    checkpointing = recipe.value("train.gradient_checkpointing", AUTO)
    if checkpointing is AUTO:
        autos.add("gradient_checkpointing")
        checkpointing = False
    return zero, checkpointing


def _added_tokens(recipe, arch, method: str):
    """(architecture, modules_to_save, trainable token rows, assumptions) with the recipe's new tokens counted:
    each of `add_tokens`, `pad_token` and `eos_token` taken as new (the tokenizer may have some already: an
    overestimate by a few rows). The vocabulary grows; LoRA trains their rows through peft's
    trainable_token_indices, or whole layers when `modules_to_save` already names one (as lowering decides)."""
    from ftc.compiler.models.params import new_token_training, with_added_tokens

    saved = tuple(recipe.value("method.modules_to_save", ()) or ())
    tokens = set(recipe.value("model.add_tokens") or ())
    tokens |= {recipe.value(k) for k in ("model.pad_token", "model.eos_token") if recipe.value(k)}
    if not tokens:
        return arch, saved, 0, []
    arch = with_added_tokens(arch, len(tokens))
    note = [f"{len(tokens)} added token(s) taken as new: vocabulary {arch.vocab:,}"]
    if method == "full":
        return arch, saved, 0, note
    if new_token_training(list(saved), arch) == "modules_to_save":
        layers = (arch.embed_name,) + (("lm_head",) if arch.lm_head is not None else ())  # a tied head follows
        return arch, tuple(dict.fromkeys(saved + layers)), 0, note
    return arch, saved, len(tokens), note


def setup_from_plan(recipe, plan: dict) -> RecipeMemory:
    """Like `setup_from_recipe`, with the values lowering already decided taken from the plan."""
    base = setup_from_recipe(recipe)
    if base.setup is None:
        return base
    setup, autos = base.setup, set(base.autos)
    batch = plan.get("batch") or {}
    if isinstance(batch.get("micro_batch"), int):
        setup, _ = setup.with_(micro_batch=batch["micro_batch"]), autos.discard("micro_batch")
    if isinstance(batch.get("eval_batch"), int):
        setup = setup.with_(eval_batch=batch["eval_batch"])
    dist = plan.get("distributed") or {}
    if dist.get("strategy") in ("none", "ddp", "deepspeed", "fsdp"):
        setup = setup.with_(strategy=dist["strategy"])
    if isinstance(dist.get("zero"), int):
        setup, _ = setup.with_(zero=dist["zero"]), autos.discard("zero")
    elif setup.strategy != "deepspeed":
        autos.discard("zero")
    train = plan.get("train") or {}
    if isinstance(train.get("chunked_cross_entropy"), bool):
        setup = setup.with_(linear_cross_entropy=train["chunked_cross_entropy"])
    gc = train.get("gradient_checkpointing")
    if isinstance(gc, bool):
        setup, _ = setup.with_(gradient_checkpointing=gc), autos.discard("gradient_checkpointing")
    return RecipeMemory(setup, frozenset(autos), base.budget_bytes, base.budget_source, base.cpu_memory,
                        base.global_batch, None, base.assumptions)
