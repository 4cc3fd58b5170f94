"""Cross-field checks over the typed recipe: an ordered tuple of passes, each `(recipe, sink) -> None`.

Field-level typing (types, units, enums, ranges, unknown names) happens in `resolve`; what needs
several fields at once is here. The memory budget pass comes last.
"""

from __future__ import annotations

from ftc.compiler.batch import BatchProblem, solve_batch
from ftc.compiler.check_objective import PASSES as OBJECTIVE_PASSES
from ftc.compiler.check_chat import PASSES as CHAT_PASSES
from ftc.compiler.diagnostics import DiagnosticSink
from ftc.compiler.memory.budget import check_budget as budget_pass
from ftc.compiler.resolve import ResolvedRecipe
from ftc.compiler.schema import AUTO
from ftc.compiler.units import Amount


def has_eval_data(recipe: ResolvedRecipe) -> bool:
    split = recipe.value("data.eval_split")
    if recipe.unknown("data.eval", "data.eval_split"):
        return True  # written, with an error of its own
    return recipe.value("data.eval") is not None or (isinstance(split, Amount) and split.value > 0)


def check_length(recipe: ResolvedRecipe, sink: DiagnosticSink) -> None:
    if recipe.is_set("train.epochs") and recipe.is_set("train.max_steps"):
        epochs, max_steps = recipe.span("train.epochs"), recipe.span("train.max_steps")
        same_file = epochs is not None and max_steps is not None and epochs.file == max_steps.file
        sink.error("E0401", "`epochs` and `max_steps` are both set", max_steps, label="second way to say how long",
                   notes=(f"`epochs` is set at line {epochs.line}",) if same_file else (), help="keep one of them")
    warmup = recipe.value("train.warmup")
    if isinstance(warmup, Amount) and warmup.unit == "ratio" and warmup.value >= 1:
        sink.error("E0414", "`warmup` must be less than 100% of the run", recipe.span("train.warmup"),
                   label="warmup would never end")


def check_data(recipe: ResolvedRecipe, sink: DiagnosticSink) -> None:
    if recipe.is_set("data.eval") and recipe.is_set("data.eval_split"):
        sink.error("E0402", "`eval_split` is set together with `eval`", recipe.span("data.eval_split"),
                   label="ignored when `eval` is given", help="remove `eval_split`, or remove `eval` to split `train`")
    if recipe.value("data.packing") is True and recipe.value("data.max_length") is None and \
            not recipe.unknown("data.max_length"):
        sink.error("E0403", "`packing = true` needs `max_length`", recipe.span("data.packing"),
                   label="packs up to max_length", help="add `max_length = 2048` (tokens) to `data`")
    if recipe.value("data.pad_to_max_length") and recipe.value("data.max_length") is None and \
            not recipe.unknown("data.max_length"):
        sink.error("E0403", "`pad_to_max_length = true` needs `max_length`", recipe.span("data.pad_to_max_length"),
                   label="pads up to max_length", help="add `max_length = 2048` (tokens) to `data`")
    if recipe.value("data.format") == "text" and recipe.is_set("data.train_on") and \
            recipe.value("data.train_on") == "completions":
        sink.error("E0410", "`train_on = completions` needs a format with prompts", recipe.span("data.train_on"),
                   label="`format = text` has no prompt to mask",
                   help="use `format = completion`, `instruction` or `chat`, or `train_on = all`")
    if recipe.is_set("data.near_threshold") and recipe.value("data.dedup") != "near":
        sink.warning("W0404", "`near_threshold` has no effect unless `dedup = near`", recipe.span("data.near_threshold"))


def check_data_files(recipe: ResolvedRecipe, sink: DiagnosticSink) -> None:
    """A local data file that does not exist is found now, not after the model has loaded."""
    for key in ("data.train", "data.eval"):
        for text in recipe.value(key) or ():
            path = recipe.local_path(key, text)
            if path is not None and not path.exists():
                sink.error("E0420", f"data file `{text}` not found", recipe.span(key), label="no such file or folder",
                           help="paths are relative to the recipe file that names them; "
                                "hub datasets are written `hf:org/name`")


def check_method(recipe: ResolvedRecipe, sink: DiagnosticSink) -> None:
    method = recipe.value("method")
    if method == "qlora" and recipe.value("method.quant") is None and not recipe.unknown("method.quant"):
        sink.error("E0404", "`method qlora` needs a quantization type", recipe.span("method"),
                   label="no `quant`", help="add `quant = nf4` (or `fp4`)")
    if recipe.value("model.trust_remote_code") is True:
        sink.warning("W0401", "`trust_remote_code = true` runs code shipped with the model",
                     recipe.span("model.trust_remote_code"), label="executes remote code",
                     help="keep it only for models you trust, and pin `revision` to a commit")
    if recipe.value("output.merge") and method == "full":
        sink.warning("W0403", "`merge = true` has no effect with `method full`", recipe.span("output.merge"))


def check_precision(recipe: ResolvedRecipe, sink: DiagnosticSink) -> None:
    """fp16 compute is a GPU feature, and torch's fp16 loss scaler refuses fp16 gradients: a plain or DDP full
    fine-tune needs fp32 weights under it (DeepSpeed and FSDP keep their own fp32 copy)."""
    method = recipe.value("method")
    key = recipe.compute_dtype_field()
    if recipe.value(key) != "fp16":
        return
    name = key.split(".")[-1]
    if recipe.value("hardware.accelerator", "gpu") == "cpu":
        sink.error("E0417", f"`{name} = fp16` needs a GPU: there is no fp16 mixed precision on CPU",
                   recipe.span(key), label="accelerator = cpu", help=f"use `{name} = bf16` or `fp32` on CPU")
        return
    if method == "full" and recipe.strategy() in ("none", "ddp"):
        sink.error("E0418", "full fine-tuning with `dtype = fp16` weights fails at the first step: the fp16 loss "
                   "scaler cannot unscale fp16 gradients", recipe.span(key), label="trainable weights in fp16",
                   help="use `dtype = bf16` (Ampere or newer GPUs) or `dtype = fp32`, or LoRA (its adapters are fp32)")


def check_batch(recipe: ResolvedRecipe, sink: DiagnosticSink) -> None:
    """The batch sizes the recipe fixes must multiply out exactly (autos are lowering's to choose)."""
    global_batch = recipe.value("train.global_batch")
    if not isinstance(global_batch, int):
        return
    micro = recipe.value("train.micro_batch", AUTO)
    accum = recipe.value("train.grad_accum", AUTO)
    micro = None if micro is AUTO else micro
    accum = None if accum is AUTO else accum
    world = recipe.world_size()
    if micro is None and accum is None:
        if global_batch % world == 0:
            return
        micro = 1  # only the divisibility by the world can be checked yet
    result = solve_batch(global_batch, micro, accum, world)
    if isinstance(result, BatchProblem):
        sink.error(result.code, result.message, recipe.span(result.key), label=result.label, help=result.help)


def check_eval_and_checkpoint(recipe: ResolvedRecipe, sink: DiagnosticSink) -> None:
    evaluates = has_eval_data(recipe)
    best = recipe.value("checkpoint.keep_best")
    if best is not None and best.startswith("eval_") and not evaluates:
        sink.error("E0407", f"`keep_best = {best}` needs evaluation data", recipe.span("checkpoint.keep_best"),
                   label="no eval set", help="add `eval = \"...\"` or `eval_split = 5%` to `data`")
    if recipe.is_set("train.eval_every") and not evaluates:
        sink.error("E0408", "`eval_every` is set but there is no evaluation data", recipe.span("train.eval_every"),
                   help="add `eval = \"...\"` or `eval_split = 5%` to `data`")
    objective = recipe.value("sweep.objective")
    if recipe.has_block("sweep") and objective and objective[1].startswith("eval_") and not evaluates:
        sink.error("E0409", f"the sweep objective `{objective[1]}` needs evaluation data",
                   recipe.span("sweep.objective"), help="add `eval = \"...\"` or `eval_split = 5%` to `data`")
    if recipe.has_block("sweep") and not recipe.sweep and recipe.value("sweep.trials") is not None \
            and not sink.has_errors:  # an entry with an error is not a missing entry
        sink.error("E0413", "`sweep` has no search entries", recipe.block_span("sweep"),
                   help="add entries like `train.lr = loguniform(1e-6, 1e-4)`")


def check_tracking(recipe: ResolvedRecipe, sink: DiagnosticSink) -> None:
    written = [key for key, _ in recipe.items("train.wandb.") if recipe.is_set(key)]
    if written and "wandb" not in (recipe.value("train.track") or ()) and not recipe.unknown("train.track"):
        sink.warning("W0431", "`wandb` settings have no effect unless `track` lists `wandb`", recipe.span(written[0]),
                     help="add `wandb` to `track`, e.g. `track = [wandb]`")


def check_sweep(recipe: ResolvedRecipe, sink: DiagnosticSink) -> None:
    """A sweep whose trials cannot run is an error now, not a failure in every trial after the model loads."""
    from ftc.compiler.schema import BLOCKS

    if recipe.value("sweep.sampler") == "grid":
        for p in recipe.sweep:
            if p.distribution != "choice":
                sink.error("E0308", f"`sampler = grid` needs listed values, but `{p.target}` is drawn from "
                           f"`{p.distribution}`", p.span, label="not a finite set of values",
                           help="write `choice(...)` for every entry, or use `sampler = tpe`, `random` or `cmaes`")
    storage = recipe.value("sweep.storage")
    if storage is not None and storage not in ("sqlite", "journal") and "://" not in storage:
        sink.error("E0311", f"`sweep.storage` is `sqlite`, `journal` or a database URL, found `{storage}`",
                   recipe.span("sweep.storage"), label="not a storage",
                   help='write `storage = journal`, or a URL such as `storage = "postgresql://user@host/db"`')
    for p in recipe.sweep:
        kind, _, name = p.target.partition(".")
        spec = BLOCKS[kind]
        label = recipe.value(kind) if spec.variant_fields else None
        if label in spec.variant_fields and name not in spec.variant_fields[label]:
            owners = [lbl for lbl, names in spec.variant_fields.items() if name in names]
            sink.error("E0309", f"`{p.target}` cannot vary under `{kind} {label}`", p.span,
                       label=f"not a field of `{kind} {label}`",
                       help=(f"it belongs to `{kind} {' | '.join(owners)}`; " if owners else "")
                       + "remove the entry, or change the method")
            continue
        field = spec.field(name)
        units = {a.unit for a in p.args if isinstance(a, Amount)} or set(field.dims if field else ())
        if p.distribution in ("uniform", "loguniform") and units and units <= {"steps", "tokens"}:
            unit = units.pop()
            low, high = (getattr(a, "value", a) for a in p.args)
            suffix = f" {unit}" if any(isinstance(a, Amount) for a in p.args) else ""
            sink.error("E0310", f"`{p.distribution}` draws fractions, but `{p.target}` is a whole number of {unit}",
                       p.span, label="every trial would be invalid",
                       help=f"use `int({int(low)}, {int(high)}){suffix}`")


def check_distributed(recipe: ResolvedRecipe, sink: DiagnosticSink) -> None:
    strategy = recipe.value("distributed")
    world = recipe.world_size()
    if strategy == "deepspeed":
        zero = recipe.value("distributed.zero")
        if recipe.value("distributed.offload_params", "none") != "none" and isinstance(zero, int) and zero != 3:
            sink.error("E0411", f"`offload_params` needs ZeRO stage 3, found `zero = {zero}`",
                       recipe.span("distributed.offload_params"), label="parameters are only partitioned in stage 3",
                       help="set `zero = 3`, or `offload_params = none`")
        if "nvme" in (recipe.value("distributed.offload_optimizer"), recipe.value("distributed.offload_params")) \
                and recipe.value("distributed.nvme_path") is None and not recipe.unknown("distributed.nvme_path"):
            sink.error("E0412", "NVMe offload needs `nvme_path`", recipe.block_span("distributed"),
                       help='add `nvme_path = "/local_nvme"` to `distributed`')
        if zero == 3 and recipe.value("train.optimizer") in ("adamw_8bit", "paged_adamw_8bit", "paged_adamw"):
            sink.error("E0415", f"`optimizer = {recipe.value('train.optimizer')}` with ZeRO stage 3",
                       recipe.span("train.optimizer"),
                       label="stage 3 steps the optimizer on one sub-group of parameter partitions at a time",
                       notes=("with ZeRO 1 and 2 DeepSpeed hands bitsandbytes' optimizer its flat fp32 partition "
                              "and the 8-bit state is partitioned with it; under stage 3 it swaps each "
                              "sub-group's partition into the optimizer's parameter group for every step, "
                              "which bitsandbytes' per-parameter (8-bit, paged) state is not known to "
                              "survive",),
                       help="use `zero = 2` (or 1) with a bitsandbytes optimizer, or `optimizer = adamw` with stage 3")
    if strategy in ("ddp", "deepspeed", "fsdp") and world == 1 and recipe.is_set("distributed"):
        sink.warning("W0402", f"`distributed {strategy}` with one rank runs as a single process",
                     recipe.span("distributed"), help="set `gpus_per_node` (and `nodes`) in `hardware`")
    if strategy == "fsdp" and recipe.value("method") == "qlora" and recipe.value("hardware.accelerator") != "cpu":
        sink.error("E0419", "QLoRA cannot be combined with FSDP on GPUs here: FSDP1 flattens each layer into one "
                   "floating-point tensor, and ftc packs 4-bit weights as uint8", recipe.span("distributed"),
                   label="FSDP would refuse the packed 4-bit weights when wrapping the model",
                   help="use `distributed ddp {}` or `distributed deepspeed { zero = 2 }` (the 4-bit base fits on "
                        "every rank), or `method lora` with FSDP")


def check_qlora_zero3(recipe: ResolvedRecipe, sink: DiagnosticSink) -> None:
    """ZeRO-3 partitions every parameter as a plain tensor of one dtype. bitsandbytes 4-bit weights can be
    partitioned only when packed in the compute dtype (`bnb_4bit_quant_storage`); ftc packs them as uint8,
    which ZeRO-3 would partition and reassemble as garbage or refuse at initialisation."""
    if recipe.value("method") != "qlora" or recipe.value("distributed") != "deepspeed":
        return
    zero = recipe.value("distributed.zero")
    offload = recipe.value("distributed.offload_params", "none") != "none"
    if zero == 3 or (offload and not isinstance(zero, int)):  # parameter offload makes `zero = auto` stage 3
        key = "distributed.zero" if zero == 3 else "distributed.offload_params"
        sink.error("E0416", "QLoRA cannot be combined with ZeRO-3 here: its 4-bit weights are stored as uint8, "
                   "and ZeRO-3 partitions only weights stored in the compute dtype", recipe.span(key),
                   label="ZeRO-3 would partition the packed 4-bit weights" if zero == 3 else
                   "parameter offload needs ZeRO-3",
                   help="use `zero = 2` without `offload_params` (the 4-bit base fits on every rank; the adapters "
                        "and their optimizer state are partitioned), or `distributed ddp {}`")


def check_budget(recipe: ResolvedRecipe, sink: DiagnosticSink) -> None:
    """The memory budget pass lives with the estimator; it runs only on a recipe without errors."""
    if sink.has_errors:
        return
    budget_pass(recipe, sink)


PASSES = (
    check_length,
    check_data,
    check_data_files,
    *CHAT_PASSES,
    check_method,
    check_precision,
    check_batch,
    check_eval_and_checkpoint,
    check_tracking,
    check_sweep,
    check_distributed,
    check_qlora_zero3,
    *OBJECTIVE_PASSES,
    check_budget,
)


def run_checks(recipe: ResolvedRecipe, sink: DiagnosticSink) -> None:
    for check in PASSES:
        check(recipe, sink)
