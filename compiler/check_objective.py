"""Cross-field checks of the `objective` block: the objective, its data format and the method must fit
together, and a sweep or checkpoint metric must be one the objective logs."""

from __future__ import annotations

from ftc.compiler.diagnostics import DiagnosticSink, did_you_mean
from ftc.compiler.objectives import PREFERENCE_FORMATS, format_of, logged_metrics
from ftc.compiler.resolve import ResolvedRecipe


def _tokens(value) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    value = getattr(value, "value", value)
    return int(value) if isinstance(value, (int, float)) else None


def _objective_span(recipe: ResolvedRecipe):
    return recipe.span("objective") or recipe.block_span("objective")


def check_objective_format(recipe: ResolvedRecipe, sink: DiagnosticSink) -> None:
    """A preference objective reads preference rows, and preference rows need a preference objective."""
    objective = recipe.value("objective", "sft")
    fmt = recipe.value("data.format")
    if recipe.unknown("data.format", "objective") or fmt is None:
        return
    wanted = format_of(objective)
    if fmt in wanted:
        return
    if objective == "sft":
        sink.error("E0601", f"`format = {fmt}` needs a preference objective", recipe.span("data.format"),
                   label="supervised training (`sft`) has no use for preference rows",
                   help="add `objective kto {}`" if fmt == "unpaired_preference" else
                   "add `objective dpo {}` (or `orpo`, `simpo`)")
    elif objective == "kto":
        sink.error("E0602", f"`objective kto` reads `format = unpaired_preference`, found `format = {fmt}`",
                   _objective_span(recipe), label="KTO learns from single answers labelled good or bad",
                   help="write rows of prompt, completion and a boolean label with `format = unpaired_preference`"
                   + (", or use `objective dpo {}` on these pairs" if fmt == "preference" else ""))
    else:
        sink.error("E0603", f"`objective {objective}` reads `format = preference`, found `format = {fmt}`",
                   _objective_span(recipe), label=f"{objective.upper()} compares a chosen and a rejected answer",
                   help="write rows of prompt, chosen and rejected with `format = preference`"
                   + (", or use `objective kto {}` on these rows" if fmt == "unpaired_preference" else ""))


def check_preference_data(recipe: ResolvedRecipe, sink: DiagnosticSink) -> None:
    """Settings that mean nothing, or something else, for preference rows."""
    fmt = recipe.value("data.format")
    preference = fmt in PREFERENCE_FORMATS
    if recipe.is_set("data.max_prompt_length") and not preference:
        sink.error("E0604", "`max_prompt_length` applies to the preference formats only",
                   recipe.span("data.max_prompt_length"), label=f"`format = {fmt}` has no separate prompt limit",
                   help="remove it; `max_length` bounds whole rows")
    if not preference:
        return
    if recipe.value("data.packing") is True:  # `auto` leaves preference rows unpacked
        sink.error("E0605", "`packing = true` cannot be used with preference data", recipe.span("data.packing"),
                   label="chosen and rejected answers are scored as separate sequences",
                   help="remove `packing`")
    if recipe.value("data.pad_to_max_length"):
        sink.error("E0605", "`pad_to_max_length = true` cannot be used with preference data",
                   recipe.span("data.pad_to_max_length"),
                   label="the preference trainers pad prompts and answers to each batch's longest row",
                   help="remove `pad_to_max_length`")
    if recipe.value("train.chunked_cross_entropy") is True:  # `auto` turns it off for preference objectives
        sink.error("E0612", "`chunked_cross_entropy = true` cannot be used with preference data",
                   recipe.span("train.chunked_cross_entropy"),
                   label="the preference trainers compute their own log-probs from whole logits",
                   help="remove `chunked_cross_entropy` (auto leaves it off here)")
    if recipe.is_set("data.train_on") and recipe.value("data.train_on") == "all":
        sink.error("E0606", "preference objectives score the answers only: `train_on = all` cannot apply",
                   recipe.span("data.train_on"), label="the prompt is never part of the preference loss",
                   help="remove `train_on`")
    prompt, length = (_tokens(recipe.value(k)) for k in ("data.max_prompt_length", "data.max_length"))
    if prompt is not None and length is not None and prompt >= length:
        sink.error("E0607", f"`max_prompt_length` ({prompt} tokens) leaves no room for the answer "
                   f"within `max_length` ({length} tokens)", recipe.span("data.max_prompt_length"),
                   label="must be below max_length", help="lower `max_prompt_length` or raise `max_length`")


def check_reference(recipe: ResolvedRecipe, sink: DiagnosticSink) -> None:
    reference = recipe.value("objective.reference")
    if reference is None:
        return
    if reference == "model" and recipe.value("method") == "qlora":
        sink.error("E0608", "`reference = model` cannot be held beside a QLoRA model",
                   recipe.span("objective.reference"),
                   label="a separate 16-bit reference copy of the model QLoRA keeps in 4 bits",
                   help="use `reference = auto` (the adapter-disabled 4-bit base is the reference) or "
                        "`reference = precomputed`")
    if reference == "precomputed":
        for p in recipe.sweep:
            if p.target.startswith("data."):
                sink.error("E0609", f"`reference = precomputed` cannot be combined with a sweep over `{p.target}`",
                           p.span, label="each trial's data would need its own reference log-probs",
                           help="use `reference = auto`, or sweep other fields")


def check_kto_batch(recipe: ResolvedRecipe, sink: DiagnosticSink) -> None:
    """KTO estimates its KL term from each row's neighbours in the micro-batch: one row has none."""
    if recipe.value("objective") == "kto" and recipe.value("train.micro_batch") == 1:
        sink.error("E0611", "`objective kto` needs at least 2 rows per micro-batch", recipe.span("train.micro_batch"),
                   label="the KL estimate pairs each prompt with another row's completion",
                   help="set `micro_batch = 2` or more (or `auto`)")


def check_objective_metrics(recipe: ResolvedRecipe, sink: DiagnosticSink) -> None:
    """The metric a sweep optimises or a checkpoint is kept by must be one this objective writes."""
    objective = recipe.value("objective", "sft")
    if objective == "sft" or recipe.unknown("objective"):
        return
    known = logged_metrics(objective) + ("train_loss",)  # the Trainer's end-of-run summary, as under `sft`
    targets = []
    if recipe.has_block("sweep") and isinstance(recipe.value("sweep.objective"), tuple):
        targets.append(("sweep.objective", recipe.value("sweep.objective")[1]))
    if recipe.value("checkpoint.keep_best"):
        targets.append(("checkpoint.keep_best", recipe.value("checkpoint.keep_best")))
    for key, metric in targets:
        if metric in known:
            continue
        guess = did_you_mean(metric, known, max_distance=max(2, len(metric) // 5))
        sink.error("E0610", f"`objective {objective}` does not log `{metric}`", recipe.span(key),
                   label="never written to metrics.jsonl",
                   help=f"did you mean `{guess}`?" if guess else
                   f"`{objective}` logs: " + ", ".join(n for n in known if n.startswith("eval_")))


PASSES = (check_objective_format, check_preference_data, check_reference, check_kto_batch, check_objective_metrics)
