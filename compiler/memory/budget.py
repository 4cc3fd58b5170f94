"""The budget pass of `ftc check`: does the recipe fit its GPUs (and host RAM when offloading)?

Codes: W0701 unknown model (memory not checked), E0702 unknown GPU name, W0703 no memory budget, E0705
over the GPU budget, E0706 over the host RAM, E0711 bf16 on a GPU without it, W0712 a sweep whose largest
draws do not fit, W0713 `memory_per_gpu` above what the named GPU has, E0714 a local model folder that is
missing or has no readable config.json, E0721 a misspelt catalog id (or one the hub does not have). What the recipe asks of its model that the libraries cannot do
(E0704, W0707, E0708, W0709, E0710, E0715, E0716, E0717, E0718) is compat.py's.
"""

from __future__ import annotations

from ftc.compiler.diagnostics import DiagnosticSink, did_you_mean
from ftc.compiler.memory import hardware
from ftc.compiler.memory.auto import resolve_auto, settled
from ftc.compiler.memory.compat import check_model_fit
from ftc.compiler.memory.estimate import estimate
from ftc.compiler.memory.fixes import suggest_fixes
from ftc.compiler.memory.recipe import setup_from_recipe
from ftc.compiler.memory.report import breakdown_notes, host_phases
from ftc.compiler.memory.units import gib
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
    check_model_fit(recipe, sink, setup)
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
        fixes = suggest_fixes(setup, budget, rm.global_batch, host_budget=rm.cpu_memory,
                              strategy_written=recipe.value("distributed", "auto") != "auto")
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
                   notes=tuple(f"{when}: {gib(total)} ({parts})" for when, total, parts in host_phases(est)),
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
    if error.misspelt or (error.not_on_hub and error.suggestion):
        sink.error("E0721", f"unknown model `{name}`", recipe.span("model"),
                   label="not in the catalog" + (" nor on the hub" if error.not_on_hub else ""),
                   help=f"did you mean `{error.suggestion}`?", notes=(error.reason,))
        return
    message = f"cannot find the architecture of `{name}`: memory is not checked"
    if is_local_model(name, recipe.location("model")):  # read, but of an architecture ftc does not model
        message = f"ftc does not model the architecture of `{name}`: memory is not checked"
        help_text = "the run can still train it; the budget is only proven for the architectures ftc models"
    else:
        closest = (f"the closest catalog id by name is `{error.suggestion}`: if this is a copy of it, its "
                   f"architecture is that one's. " if error.suggestion else "")
        help_text = (f"{closest}To provide a config: check once with network access (ftc then reads only "
                     f"config.json from the hub and caches it), or `huggingface-cli download {name} config.json`, "
                     f"or give a local folder holding the model's config.json "
                     f"(`ftc catalog models` lists the ids known without one)")
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
