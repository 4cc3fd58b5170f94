"""The budget pass of `ftc check`: does the recipe fit its GPUs (and host RAM when offloading)?

Codes: W0701 unknown model (memory not checked), E0702 unknown GPU name, W0703 no memory
budget, E0704 LoRA target not in the model, E0705 over the GPU budget, E0706 over the host RAM,
W0707 max_length beyond the model's positions, E0710 beyond its learned position embeddings, E0708 sdpa
asked of a model without it, W0709 QLoRA leaving most of the weights unquantized (fused MoE experts),
E0711 bf16 on a GPU without it, W0712 a sweep whose largest draws do not fit,
W0713 `memory_per_gpu` above what the named GPU has, E0714 a local model folder that is missing or has no
readable config.json, E0715 QLoRA quantizing nothing, E0716 LoRA dropout on a MoE router or experts.
"""

from __future__ import annotations

from ftc.compiler.diagnostics import DiagnosticSink, did_you_mean
from ftc.compiler.memory import hardware
from ftc.compiler.memory.lora_activations import PARAMETER_TARGETS
from ftc.compiler.memory.auto import resolve_auto, settled
from ftc.compiler.memory.estimate import estimate
from ftc.compiler.memory.fixes import suggest_fixes
from ftc.compiler.memory.recipe import setup_from_recipe
from ftc.compiler.memory.report import breakdown_notes
from ftc.compiler.memory.units import gib
from ftc.compiler.models.layout import NO_SDPA
from ftc.compiler.models.params import count, resolve_targets
from ftc.compiler.models.resolve import is_local_model
from ftc.compiler.units import Amount

# sweep entries that change memory, and the setup field each sets
_SWEPT_SIZES = {"method.rank": "lora_rank", "data.max_length": "seq_len"}


def check_budget(recipe, sink: DiagnosticSink) -> None:
    gpu_run = recipe.has_block("hardware") and recipe.value("hardware.accelerator", "gpu") != "cpu"
    rm = setup_from_recipe(recipe)
    if rm.model_error is not None:
        _unknown_model(recipe, sink, rm.model_error)
        return
    setup = rm.setup
    _check_targets(recipe, sink, setup)
    _check_positions(recipe, sink, setup)
    _check_attention(recipe, sink, setup)
    _check_unquantized(recipe, sink, setup)
    if not gpu_run:
        return
    if rm.budget_source == "unknown-gpu":
        _unknown_gpu(recipe, sink)
        return
    _check_bf16(recipe, sink)
    _check_declared_memory(recipe, sink)
    if rm.budget_bytes is None:
        sink.warning("W0703", "no GPU memory budget: the memory check is skipped", recipe.block_span("hardware"),
                     help="set `gpu = a100-80gb` (a catalog name) or `memory_per_gpu = 24 GiB`")
        return
    budget = rm.budget_bytes
    setup, _ = settled(rm)
    est = estimate(setup)
    where = rm.budget_source if rm.budget_source != "memory_per_gpu" else "memory_per_gpu"
    if est.peak_bytes > budget:
        fixes = suggest_fixes(setup, budget, rm.global_batch, host_budget=rm.cpu_memory)
        help_text = "; or ".join([f.describe() for f in fixes[:3]]
                                 + _larger_gpu(est.peak_bytes, fixes, recipe.value("hardware.gpu")))
        decided = ", ".join(f"{a} = auto" for a in sorted(rm.autos))
        notes = breakdown_notes(est) + tuple(rm.assumptions)
        if decided:
            notes += (f"{decided} could not find a value that fits",)
        sink.error("E0705", f"the recipe needs {gib(est.peak_bytes)} per GPU but the budget is {gib(budget)} "
                   f"({where})", recipe.block_span("hardware"),
                   label=f"{gib(est.peak_bytes - budget)} over", help=help_text, notes=notes)
    else:
        _check_sweep(recipe, sink, rm, setup, budget)
    if rm.cpu_memory is not None and est.cpu_bytes_per_node > rm.cpu_memory:
        span = recipe.span("hardware.cpu_memory") or recipe.block_span("hardware")
        sink.error("E0706", f"host RAM needed per node is {gib(est.cpu_bytes_per_node)} but `cpu_memory` is "
                   f"{gib(rm.cpu_memory)}", span, label="not enough host RAM",
                   notes=tuple(f"{c.name}: {gib(c.bytes)}" for c in est.host if c.bytes),
                   help="offload less (`offload_params = none`), use NVMe offload, or more nodes")


def _larger_gpu(peak: int, fixes, gpu: str | None) -> list[str]:
    """When no edit fits: the smallest catalog GPU (of the recipe's GPU vendor when one is) that holds the
    recipe as written, or that none does."""
    if any(f.fits for f in fixes):
        return []
    name = hardware.smallest_holding(peak, like=gpu)
    if name is None:
        return [f"no GPU in the catalog holds {gib(peak)}: shard over more GPUs, or a smaller model"]
    return [f"`gpu = {name}` ({gib(hardware.gpu_memory(name))}) holds it as written"]


def _unknown_model(recipe, sink, error) -> None:
    """A warning, not an error: the run itself can still fetch the config; only the proof is missing.
    A local folder is the exception: the run would fail on it as well (as E0420 for a data file)."""
    name = recipe.value("model")
    if error.unusable_folder:
        sink.error("E0714", f"model folder `{name}` cannot be loaded", recipe.span("model"),
                   label="not a model folder", notes=(error.reason,),
                   help="a local model is a folder with the model's config.json and weights, as "
                        "`save_pretrained` writes it; paths are relative to the recipe file that names them")
        return
    guess = f"did you mean `{error.suggestion}`? " if getattr(error, "suggestion", None) else ""
    message = f"cannot find the architecture of `{name}`: memory is not checked"
    if is_local_model(name, recipe.location("model")):  # read, but of an architecture ftc does not model
        message = f"ftc does not model the architecture of `{name}`: memory is not checked"
        help_text = "the run can still train it; the budget is only proven for the architectures ftc models"
    else:
        help_text = (f"{guess}give a local folder holding the model's config.json, or put the model in the "
                     f"Hugging Face cache (`huggingface-cli download {name} config.json`); compile never "
                     f"downloads (`ftc catalog models` lists the ids it knows without one)")
    span = recipe.block_span("model")
    sink.warning("W0701", message, span, label="architecture unknown", help=help_text, notes=(error.reason,))


def _unknown_gpu(recipe, sink) -> None:
    name = recipe.value("hardware.gpu")
    span = recipe.span("hardware.gpu")
    if hardware.is_ambiguous(name):
        options = [k for k in hardware.known_names() if k.startswith(hardware.normalize(name) + "-")]
        help_text = f"say which: {', '.join(f'`{o}`' for o in options)}"
    else:
        guess = did_you_mean(hardware.normalize(name), hardware.known_names(), max_distance=3)
        help_text = (f"did you mean `{guess}`? " if guess else "") + \
            "or give the memory itself: `memory_per_gpu = 24 GiB` (`ftc catalog gpus` lists the names)"
    sink.error("E0702", f"unknown GPU `{name}`", span, label="not in the GPU catalog", help=help_text)


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


def _check_bf16(recipe, sink) -> None:
    gpu = recipe.value("hardware.gpu")
    if gpu is None or hardware.supports_bf16(gpu):
        return
    key = recipe.compute_dtype_field()
    if recipe.value(key) != "bf16":
        return
    written = "" if recipe.is_set(key) else " (the default)"
    sink.error("E0711", f"`{key.split('.')[-1]} = bf16`{written} needs bfloat16 arithmetic, which the "
               f"{hardware.GPUS[hardware.lookup(gpu)][1]} does not have", recipe.span(key),
               label="no bf16 before Ampere GPUs",
               help=f"set `{key.split('.')[-1]} = fp16` in `{key.split('.')[0]}` (or `fp32`)")


def _check_sweep(recipe, sink, rm, setup, budget: int) -> None:
    """Each trial is compiled, and checked, with its own draw; say now when the largest draws cannot fit
    (those trials would be recorded as failed without training), and up to which value they do."""
    def peak(**sizes) -> int:
        trial = setup.with_(**{_SWEPT_SIZES[target]: value for target, value in sizes.items()})
        if rm.autos:
            trial, _ = resolve_auto(trial, rm.autos, budget, rm.global_batch, trial.dp_world)
        return estimate(trial).peak_bytes

    swept = {}
    for param in recipe.sweep:
        if param.target in _SWEPT_SIZES and not (param.target == "method.rank" and setup.method == "full"):
            values = [a.value if isinstance(a, Amount) else a for a in param.args]
            numbers = sorted({int(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)})
            if numbers:
                swept[param.target] = (param, numbers)
    alone = {target: peak(**{target: numbers[-1]}) for target, (_, numbers) in swept.items()}
    for target, (param, numbers) in swept.items():
        if alone[target] > budget:
            fitting = _largest_fitting(param.distribution, numbers, lambda v: peak(**{target: v}) <= budget)
            _sweep_warning(sink, param.span, f"`{target} = {numbers[-1]}`", alone[target], budget,
                           f"values up to {fitting} fit" if fitting is not None else "no value in the range fits")
    if len(swept) > 1 and all(p <= budget for p in alone.values()):
        together = peak(**{target: numbers[-1] for target, (_, numbers) in swept.items()})
        if together > budget:
            drawn = " and ".join(f"`{target} = {numbers[-1]}`" for target, (_, numbers) in swept.items())
            _sweep_warning(sink, min(param.span for param, _ in swept.values()), drawn, together, budget,
                           "each fits alone; narrow one of the ranges")


def _largest_fitting(distribution: str, numbers: list[int], fits) -> int | None:
    """The largest value the entry can draw that fits: among the choices, or by bisection over int(a, b)
    (memory grows with rank and length)."""
    if distribution == "choice":
        return max((v for v in numbers if fits(v)), default=None)
    low, high = numbers[0], numbers[-1]
    if not fits(low):
        return None
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return low


def _sweep_warning(sink, span, drawn: str, peak: int, budget: int, advice: str) -> None:
    sink.warning("W0712", f"the sweep's largest draw ({drawn}) needs {gib(peak)} per GPU, over the "
                 f"{gib(budget)} budget", span,
                 label="trials that draw it fail to compile and are recorded as failed, without training",
                 help=f"{advice} (`ftc estimate --set` shows any one value)")


def _check_declared_memory(recipe, sink) -> None:
    """`memory_per_gpu` overrides the catalog; more than the named card has is a typo or a wrong card."""
    memory, gpu = recipe.value("hardware.memory_per_gpu"), recipe.value("hardware.gpu")
    name = hardware.lookup(gpu) if gpu is not None else None
    if not isinstance(memory, int) or name is None or memory <= hardware.gpu_memory(name):
        return
    sink.warning("W0713", f"`memory_per_gpu` ({gib(memory)}) is more than the {hardware.GPUS[name][1]} has "
                 f"({gib(hardware.gpu_memory(name))})", recipe.span("hardware.memory_per_gpu"),
                 label="the budget the recipe is checked against",
                 help="remove `memory_per_gpu` to use the catalog's figure, or correct `gpu`")
