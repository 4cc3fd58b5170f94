"""What a recipe asks of its model that the libraries cannot do, found before anything loads: LoRA
targets the architecture lacks, sequences past its positions, an attention implementation transformers
does not have for it, QLoRA that quantizes little or nothing, a LoRA dropout peft refuses, packing the
model would not keep apart, a module to train in full that does not exist.

Codes: E0704 LoRA target not in the model, W0707 max_length beyond the model's positions, E0710 beyond
its learned position embeddings, E0708 sdpa asked of a model without it, W0709 QLoRA leaving most of the
weights unquantized (fused MoE experts), E0715 all of them (Falcon), E0716 LoRA dropout on a MoE router
or experts, E0717 packing on a model whose attention does not separate packed examples, E0718 a
`modules_to_save` name the model does not have (peft would silently save nothing under it).
"""

from __future__ import annotations

from ftc.compiler.diagnostics import did_you_mean
from ftc.compiler.memory.lora_activations import PARAMETER_TARGETS
from ftc.compiler.models.layout import NO_SDPA
from ftc.compiler.models.params import count, resolve_targets

# transformers separates packed examples by their position_ids resets (a block-diagonal causal mask);
# these families build their masks without them, so each example attends to those before it in its row
# (tests/test_memory_auto.py checks the list against transformers itself)
PACKING_NOT_SEPARATED = ("opt", "bloom", "gpt_oss")


def check_model_fit(recipe, sink, setup) -> None:
    _check_targets(recipe, sink, setup)
    _check_modules_to_save(recipe, sink, setup)
    _check_positions(recipe, sink, setup)
    _check_attention(recipe, sink, setup)
    _check_unquantized(recipe, sink, setup)
    _check_packing(recipe, sink, setup)


def _check_packing(recipe, sink, setup) -> None:
    arch = setup.arch
    if recipe.value("data.packing") is not True or arch.model_type not in PACKING_NOT_SEPARATED \
            or setup.attention == "flash_attention_2":
        return
    sink.error("E0717", f"`packing = true` on {arch.a_model}, whose attention does not separate packed "
               "examples", recipe.span("data.packing"),
               label="each example would attend to the ones before it in its row",
               notes=("ftc packs examples with position_ids that restart at each one, from which transformers "
                      f"builds a block-diagonal causal mask; its {arch.model_type} code builds the mask "
                      "without them",),
               help="set `packing = false` (batches are padded to their longest row)")


def _check_modules_to_save(recipe, sink, setup) -> None:
    """peft's modules_to_save skips a name no module has, without a word: the run would train less than
    the recipe says. The token embedding and the output head are what ftc trains in full (and counts)."""
    if setup.method == "full" or not setup.modules_to_save:
        return
    arch = setup.arch
    known = (arch.embed_name, "lm_head")
    unknown = [name for name in setup.modules_to_save if name not in known]
    if not unknown:
        return
    guess = did_you_mean(unknown[0], known, max_distance=3)
    sink.error("E0718", f"`modules_to_save` names {', '.join(f'`{n}`' for n in unknown)}, which "
               f"{arch.model_type} models do not have", recipe.span("method.modules_to_save"),
               label="peft would save nothing under this name, and say nothing",
               notes=(f"a {arch.model_type} model's token embedding is `{arch.embed_name}` and its output head "
                      "`lm_head`: the modules ftc trains in full beside the adapters",),
               help=f"write `{guess}`" if guess else f"use `{arch.embed_name}` or `lm_head`")


def _check_targets(recipe, sink, setup) -> None:
    if setup.method == "full":
        return
    _, unknown = resolve_targets(setup.arch, setup.lora_targets)
    if unknown:
        names = ", ".join(f"`{n}`" for n in setup.arch.linear_names)
        sink.error("E0704", f"LoRA target{'s' if len(unknown) > 1 else ''} "
                   f"{', '.join(f'`{u}`' for u in unknown)} not in {setup.arch.a_model}",
                   recipe.span("method.targets"), label="no such module",
                   help=f"the {setup.arch.model_type} linear modules are {names}, or `all_linear`")
        return
    _check_parameter_target_dropout(recipe, sink, setup)


def _check_parameter_target_dropout(recipe, sink, setup) -> None:
    """peft adapts a MoE layer's router and fused experts as parameters (target_parameters), and its
    ParamWrapper refuses a LoRA dropout: get_peft_model would fail after the model has loaded."""
    arch = setup.arch
    if not arch.experts or setup.lora_dropout <= 0:
        return
    names = set(resolve_targets(arch, setup.lora_targets)[0])
    wrapped = [m.name for m in arch.layer_linears if m.name in names and m.name in PARAMETER_TARGETS]
    if not wrapped:
        return
    written = recipe.is_set("method.dropout")
    span = recipe.span("method.dropout") if written else recipe.span("method.targets") or recipe.span("method")
    sink.error("E0716", f"LoRA dropout {setup.lora_dropout:g}{'' if written else ' (the default)'} with the "
               f"router or experts of {arch.a_model} as targets", span,
               label="peft adapts them as parameters, which take no dropout",
               notes=(f"{', '.join(f'`{n}`' for n in wrapped)} are not modules but parameters of the layer; "
                      "peft's ParamWrapper raises for lora_dropout != 0",),
               help="set `dropout = 0` in `method`, or target the attention projections only "
                    f"(`targets = [{', '.join(arch.attention_targets)}]`)")


def _check_attention(recipe, sink, setup) -> None:
    if setup.attention == "sdpa" and setup.arch.model_type in NO_SDPA:
        span = recipe.span("model.attention") or recipe.block_span("model")
        sink.error("E0708", f"transformers has no sdpa attention for {setup.arch.model_type} models",
                   span, label="loading would fail", help="set `attention = eager` (or `flash_attention_2`) in `model`")


def _check_positions(recipe, sink, setup) -> None:
    limit = setup.arch.max_positions
    length = recipe.value("data.max_length")
    if not (isinstance(limit, int) and isinstance(length, int) and length > limit):
        return
    if setup.arch.learned_positions:
        sink.error("E0710", f"`max_length = {length}` is longer than the {limit} learned position embeddings "
                   f"of {setup.arch.a_model}", recipe.span("data.max_length"),
                   label=f"positions past {limit} have no embedding: the first longer batch fails",
                   help=f"use `max_length = {limit}` or less")
    else:
        sink.warning("W0707", f"`max_length = {length}` is longer than the model's {limit} positions",
                     recipe.span("data.max_length"), label=f"the model was trained on at most {limit} tokens",
                     help=f"use `max_length = {limit}` or less")


def _check_unquantized(recipe, sink, setup) -> None:
    """bitsandbytes quantizes nn.Linear layers only; transformers stores MoE experts as fused 3-D tensors,
    which QLoRA then keeps, cast to fp32 by peft's k-bit preparation: larger than LoRA's bf16 copy.
    Falcon's layers are an nn.Linear subclass the integration skips: QLoRA would quantize nothing."""
    if setup.method != "qlora":
        return
    arch = setup.arch
    if not any(linear.quantizable for linear in arch.layer_linears):
        sink.error("E0715", f"QLoRA would quantize none of this {arch.model_type} model's layers",
                   recipe.span("method"), label="its linears are not modules bitsandbytes converts",
                   notes=(f"transformers' bitsandbytes integration converts exact nn.Linear modules only; "
                          f"{arch.model_type}'s are a subclass of it, so 4-bit loading leaves every weight as it "
                          "is and peft's k-bit preparation casts them to fp32 (4 bytes per parameter, twice "
                          "LoRA's bf16), with a 16-bit copy of each kept for backward",),
                   help="use `method lora` (weights in bf16)")
        return
    kept = arch.layers * sum(linear.params for linear in arch.layer_linears if not linear.quantizable)
    total = count(arch).total
    if kept * 2 < total:
        return
    sink.warning("W0709", f"QLoRA leaves {kept / 1e9:.1f}B of the {total / 1e9:.1f}B parameters of this "
                 f"{arch.model_type} model unquantized", recipe.span("method"),
                 label="its expert weights are not nn.Linear layers",
                 notes=("bitsandbytes quantizes nn.Linear layers only; the fused expert tensors stay, in fp32 "
                        "after peft's k-bit preparation (4 bytes per parameter, twice LoRA's bf16)",),
                 help="use `method lora` (weights in bf16), sharded over several GPUs")
