"""Valid recipes drawn from the schema: every block, nested block, label and field of `compiler/schema.py`,
with values drawn from each field's type, enum, range and unit, then repaired so that the cross-field rules
of `compiler/check.py` hold. A field added to the schema is drawn without a change here; only fields whose
text must name something real (a data file, a GPU, a module of the model) have a value table below.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from hypothesis import strategies as st

from ftc.compiler.models.resolve import catalog_ids, resolve_model
from ftc.compiler.schema import (BLOCKS, BOOL, ENUM, FLOAT, INT, METRIC, MODULES, NAMES, OBJECTIVE, PATHS,
                                 QUANTITY, REQUIRED_BLOCKS, STRING, BlockSpec, FieldSpec)
from ftc.compiler.units import UNITS

REPO = Path(__file__).resolve().parent.parent
TINY_MODEL = REPO / "examples" / "tiny" / "model"


class W(str):
    """A bare word (enum value, boolean, `auto`)."""


class Q(str):
    """A quoted string."""


@dataclass(frozen=True)
class Qty:
    value: float
    unit: str

    def __str__(self) -> str:
        number = _num(self.value)
        return f"{number}%" if self.unit == "%" else f"{number} {self.unit}"


class Raw(str):
    """Source text written as is (calls, objectives)."""


def _num(x) -> str:
    if isinstance(x, int) or float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(float(x))


def render(value) -> str:
    if isinstance(value, Q):
        return json.dumps(str(value))
    if isinstance(value, (W, Raw)):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return _num(value)
    if isinstance(value, Qty):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(render(v) for v in value) + "]"
    raise TypeError(type(value))


def _plain(value) -> float:
    return value.value if isinstance(value, Qty) else value


def truthy(value) -> bool:
    return str(value) in ("true", "on")


@dataclass
class Block:
    label: object = None  # W or Q, None for label-less blocks
    fields: dict = field(default_factory=dict)
    nested: dict = field(default_factory=dict)  # name -> {field: value}
    entries: dict = field(default_factory=dict)  # sweep: dotted target -> Raw


@dataclass
class Recipe:
    blocks: dict  # kind -> Block
    name: str = "gen"

    def text(self) -> str:
        out = [f'recipe "{self.name}"', ""]
        for kind, block in self.blocks.items():
            head = kind + (f" {render(block.label)}" if block.label is not None else "")
            out.append(head + " {")
            out += [f"  {k} = {render(v)}" for k, v in block.fields.items()]
            for name, values in block.nested.items():
                out.append(f"  {name} {{ " + "; ".join(f"{k} = {render(v)}" for k, v in values.items()) + " }")
            out += [f"  {k} = {v}" for k, v in block.entries.items()]
            out += ["}", ""]
        return "\n".join(out)

    def covered(self) -> set[str]:
        """`block.field`, `block.nested.field` and `block=label` names this recipe writes."""
        names = set()
        for kind, block in self.blocks.items():
            names.add(kind)
            if block.label is not None:
                names.add(f"{kind}={block.label}")
            names |= {f"{kind}.{k}" for k in block.fields}
            for nested, values in block.nested.items():
                names.add(f"{kind}.{nested}")
                names |= {f"{kind}.{nested}.{k}" for k in values}
        return names


# ----------------------------------------------------------------- generic values by kind


def _bounds(spec: FieldSpec, low: float, high: float) -> tuple[float, float]:
    lo = spec.minimum if spec.minimum is not None else low
    hi = spec.maximum if spec.maximum is not None else max(high, lo + 1)
    return lo, hi


@st.composite
def _int(draw, spec: FieldSpec):
    lo, hi = _bounds(spec, 0, 64)
    lo, hi = int(lo) + (1 if spec.exclusive_min else 0), int(hi) - (1 if spec.exclusive_max else 0)
    return draw(st.integers(lo, min(hi, lo + 64)) | st.integers(lo, hi))


@st.composite
def _float(draw, spec: FieldSpec, low: float = 0.0, high: float = 10.0):
    lo, hi = _bounds(spec, low, high)
    value = round(draw(st.floats(lo, hi, allow_nan=False, allow_infinity=False, width=32)), 4)
    if (spec.exclusive_min and value <= lo) or (spec.exclusive_max and value >= hi) or not lo <= value <= hi:
        value = (lo + hi) / 2
    return value


@st.composite
def _quantity(draw, spec: FieldSpec):
    dim = draw(st.sampled_from(spec.dims))
    units = [u for u, (d, _) in UNITS.items() if d == dim]
    unit = draw(st.sampled_from(units))
    factor = UNITS[unit][1]
    lo, hi = _bounds(spec, 0, {"bytes": 2**40, "ratio": 0.99, "duration": 86400 * 3}.get(dim, 5000))
    if spec.exclusive_min or (dim in ("steps", "tokens", "epochs") and lo == 0):
        lo = lo + (1 if dim in ("steps", "tokens") else 0.01)
    if dim in ("steps", "tokens"):
        value = draw(st.integers(int(lo), int(min(hi, lo + 4096))))
    elif dim == "ratio":
        value = draw(st.integers(int(lo * 100), int(hi * 100)))
    elif dim == "bytes":  # sizes a GPU or a host has: 8 GiB to 2 TiB
        value = max(1, round(draw(st.integers(8, 2048)) * 2**30 / factor))
    else:
        value = draw(st.sampled_from([1, 2, 3, 0.5])) if dim == "epochs" else draw(st.integers(1, 48))
    if spec.bare == dim and unit != "%" and draw(st.booleans()):
        return value  # a plain number in the bare dimension
    return Qty(value, unit)


NAME = st.text("abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=0, max_size=8).map(lambda s: "x" + s)


@lru_cache(maxsize=None)
def value_for(spec: FieldSpec, block: str):
    """A strategy for a value of `spec` from its type alone, or from the table of fields that name things
    (built once per field: building strategies is most of a case's cost)."""
    named = NAMED.get(f"{block}.{spec.name}")
    if named is not None:
        return named
    kind = spec.kind
    if kind == ENUM:
        base = st.sampled_from([W(c) for c in spec.choices])
    elif kind == BOOL:
        base = st.sampled_from([W("true"), W("false"), W("on"), W("off")])
    elif kind == INT:
        base = _int(spec)
    elif kind == FLOAT:
        base = _float(spec)
    elif kind == QUANTITY:
        base = _quantity(spec)
    elif kind == STRING:
        base = NAME.map(Q)
    elif kind == NAMES:
        pool = list(spec.choices) or ["lm_head"]
        base = st.lists(st.sampled_from(pool), min_size=1, max_size=len(pool), unique=True).map(
            lambda xs: [W(x) for x in xs])
    elif kind == METRIC:
        base = st.sampled_from([W("eval_loss"), W("train_loss")])
    elif kind == OBJECTIVE:
        base = st.sampled_from([Raw("minimize eval_loss"), Raw("maximize eval_accuracy"), Raw("minimize train_loss")])
    elif kind == PATHS:
        base = st.just(Q("data/text.jsonl"))
    elif kind == MODULES:
        base = st.just(W("all_linear"))
    else:  # a kind this generator does not know yet: the schema grew; draw its default when it has one
        raise AssertionError(f"recipe_gen: no values for field kind {kind!r} ({block}.{spec.name})")
    return st.just(W("auto")) | base if spec.allow_auto else base


def _template_names() -> tuple[str, ...]:
    try:
        from ftc.plan.chat_templates import NAMED as TEMPLATES
    except ImportError:  # (before chat templates existed)
        return ("chatml",)
    return tuple(TEMPLATES)


NAMED = {
    "hardware.gpu": st.sampled_from([Q(g) for g in ("a100-80gb", "a100-40gb", "h100-80gb", "rtx-4090", "l4", "a10g")]),
    "model.tokenizer": st.just(Q(str(TINY_MODEL))),
    "model.revision": st.sampled_from([Q("main"), Q("v1.0")]),
    "distributed.nvme_path": st.just(Q("/local_nvme")),
    "data.cache_dir": st.just(Q("cache")),
    "output.runs_dir": st.sampled_from([Q("runs"), Q("out/runs")]),
    "data.chat_template": st.sampled_from([Q(name) for name in sorted(_template_names())]),
    "model.pad_token": st.sampled_from([Q("<|pad|>"), Q("<pad>")]),
    "model.eos_token": st.sampled_from([Q("<|im_end|>"), Q("</s>")]),
    "model.add_tokens": st.sampled_from([[Q("<tool>"), Q("</tool>")], [Q("<|im_start|>"), Q("<|im_end|>")]]),
}

FORMAT_FILES = {"text": "data/text.jsonl", "completion": "data/completion.jsonl",
                "instruction": "data/instruction.jsonl", "chat": "data/chat.jsonl",
                "preference": "data/preference.jsonl", "unpaired_preference": "data/unpaired.jsonl"}
# The objectives that read each preference format (compiler/objectives.py: format_of).
PREFERENCE_OBJECTIVES = {"preference": ("dpo", "orpo", "simpo"), "unpaired_preference": ("kto",)}


def write_data(folder: Path) -> None:
    """One small file per row format, next to the generated recipes."""
    rows = {
        "text": {"text": "hello world"},
        "completion": {"prompt": "2+2=", "completion": "4"},
        "instruction": {"instruction": "add", "input": "2 and 2", "output": "4"},
        "chat": {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
        "preference": {"prompt": "2+2=", "chosen": "4", "rejected": "5"},
        "unpaired_preference": {"prompt": "2+2=", "completion": "4", "label": True},
    }
    (folder / "data").mkdir(parents=True, exist_ok=True)
    for fmt, row in rows.items():
        (folder / FORMAT_FILES[fmt]).write_text("".join(json.dumps(row) + "\n" for _ in range(40)))


MODELS = [str(TINY_MODEL), "openai-community/gpt2", "HuggingFaceTB/SmolLM2-135M", "Qwen/Qwen2.5-0.5B",
          "meta-llama/Llama-3.1-8B", "microsoft/Phi-3-mini-4k-instruct", "tiiuae/falcon-7b",
          "nobody/not-a-model-7B"]


@lru_cache(maxsize=None)
def _architecture(model: str):
    return getattr(resolve_model(model), "architecture", None)


def _linear_names(model: str) -> list[str]:
    return list(getattr(_architecture(model), "linear_names", ()) or ["q_proj", "v_proj"])


# ----------------------------------------------------------------- drawing blocks


@lru_cache(maxsize=None)
def _model_names():
    return st.sampled_from(MODELS + [i for i in catalog_ids()[::7]])


@st.composite
def _label(draw, spec: BlockSpec):
    if spec.label == "none":
        return None
    if spec.label_kind == ENUM:
        return W(draw(st.sampled_from(spec.label_choices)))
    if spec.name == "model":
        return Q(draw(_model_names()))
    return Q(draw(NAME))


@st.composite
def _block(draw, spec: BlockSpec):
    label = draw(_label(spec))
    allowed = spec.fields_for(None if label is None else str(label))
    block = Block(label=label)
    for f in spec.fields:
        if f.name in allowed and (f.required or draw(st.booleans())):
            block.fields[f.name] = draw(value_for(f, spec.name))
    for nested in spec.nested:
        if draw(st.booleans()):
            names = draw(st.lists(st.sampled_from([f.name for f in nested.fields]), min_size=1, unique=True))
            block.nested[nested.name] = {n: draw(value_for(nested.field(n), f"{spec.name}.{nested.name}"))
                                         for n in names}
    return block


@st.composite
def _sweep_entries(draw, blocks: dict) -> dict:
    targets = [f"{b.name}.{f.name}" for b in BLOCKS.values() for f in b.fields if f.tunable]
    method = str(blocks["method"].label)
    targets = [t for t in targets if not t.startswith("method.") or t.split(".")[1] in BLOCKS["method"].fields_for(method)]
    objective = blocks["objective"].label if "objective" in blocks else None  # E0309: a field the objective has
    targets = [t for t in targets if not t.startswith("objective.") or
               objective is not None and t.split(".")[1] in BLOCKS["objective"].fields_for(str(objective))]
    if "objective" in blocks and str(blocks["objective"].fields.get("reference")) == "precomputed":
        targets = [t for t in targets if not t.startswith("data.")]  # E0609
    chosen = draw(st.lists(st.sampled_from(targets), min_size=1, max_size=3, unique=True))
    grid = str(blocks["sweep"].fields.get("sampler")) == "grid"
    return {t: Raw(draw(_search_space(BLOCKS[t.split(".")[0]].field(t.split(".")[1]), grid))) for t in chosen}


@st.composite
def _search_space(draw, spec: FieldSpec, grid: bool):
    """A distribution inside the field's range."""
    if spec.kind == INT:
        lo = int(spec.minimum or 1)
        values = sorted(draw(st.lists(st.integers(lo, lo + 64), min_size=2, max_size=4, unique=True)))
        return "choice(" + ", ".join(map(str, values)) + ")" if grid or draw(st.booleans()) \
            else f"int({values[0]}, {values[-1]})"
    if spec.kind == QUANTITY:
        dim = spec.dims[0]
        if dim == "tokens":
            return draw(st.sampled_from(["choice(256, 512, 1024)", "int(128, 2048) tokens"])) if not grid \
                else "choice(256, 512)"
        return "choice(10 steps, 20 steps)" if grid else draw(st.sampled_from(["int(0, 50) steps", "uniform(0, 10) %",
                                                                                 "choice(1%, 3%)"]))
    lo, hi = _bounds(spec, 0, 1)
    lo = max(lo, 1e-6) if spec.exclusive_min else lo
    hi = min(hi - (hi - lo) / 10, 0.9) if spec.exclusive_max else min(hi, 1.0)  # below an open bound
    if grid:
        return f"choice({_num(lo + (hi - lo) / 4)}, {_num(lo + (hi - lo) / 2)})"
    return draw(st.sampled_from([f"uniform({_num(lo)}, {_num(hi)})", f"loguniform({_num(max(lo, 1e-6))}, {_num(hi)})"]))


@st.composite
def recipes(draw) -> Recipe:
    """A recipe whose every value is well typed and whose cross-field rules hold (see `repair`)."""
    blocks = {}
    for kind, spec in BLOCKS.items():
        if kind in REQUIRED_BLOCKS or draw(st.booleans()):
            blocks[kind] = draw(_block(spec))
    recipe = Recipe(blocks)
    if "targets" in blocks["method"].fields:
        names = _linear_names(str(blocks["model"].label))
        blocks["method"].fields["targets"] = draw(st.just(W("all_linear")) | st.lists(
            st.sampled_from(names), min_size=1, unique=True).map(lambda xs: [W(x) for x in xs]))
    if "modules_to_save" in blocks["method"].fields:  # the model's own embedding or head (E0718 covers others)
        arch = _architecture(str(blocks["model"].label))
        del blocks["method"].fields["modules_to_save"]
        if arch is not None:
            blocks["method"].fields["modules_to_save"] = [W(draw(st.sampled_from([arch.embed_name, "lm_head"])))]
    repair(recipe, draw)
    if "sweep" in blocks:
        blocks["sweep"].entries = draw(_sweep_entries(blocks))
    return recipe


# ----------------------------------------------------------------- cross-field rules


def repair(recipe: Recipe, draw) -> None:
    """Make the drawn recipe satisfy the rules of compiler/check.py (each line names the code it avoids)."""
    b = recipe.blocks
    data, train, method = b["data"].fields, b["train"].fields, b["method"]
    fmt = _repair_objective(recipe, draw)
    data["train"] = Q(FORMAT_FILES[fmt])
    if "eval" in data:
        data["eval"] = Q(FORMAT_FILES[fmt])
        data.pop("eval_split", None)  # E0402
    if (truthy(data.get("packing")) or truthy(data.get("pad_to_max_length"))) and "max_length" not in data:
        data["max_length"] = 512  # E0403
    if fmt == "text":
        data.pop("chat_template", None)  # E0430: a template needs rows with turns
    if isinstance(data.get("max_length"), (int, Qty)):
        data["max_length"] = min(_plain(data["max_length"]), 512)  # W0707, E0710: the smallest model's positions
    _repair_preference_data(recipe)
    if fmt == "text" and str(data.get("train_on")) == "completions":
        data["train_on"] = W("all")  # E0410
    if "epochs" in train and "max_steps" in train:
        del train[draw(st.sampled_from(["epochs", "max_steps"]))]  # E0401
    if isinstance(train.get("warmup"), Qty) and train["warmup"].unit in ("step", "steps"):
        train["warmup"] = Qty(min(_plain(train["warmup"]), 5), "steps")  # E0515: shorter than the run
    if "max_steps" in train and _plain(train["max_steps"]) < 10:
        train["max_steps"] = Qty(10, "steps")
    warmup = train.get("warmup")
    if isinstance(warmup, Qty) and warmup.unit == "%" and warmup.value >= 100:
        train["warmup"] = Qty(10, "%")  # E0414
    if str(method.label) == "qlora":
        method.fields.setdefault("quant", W("nf4"))  # E0404
    _repair_precision(recipe)
    _repair_batch(recipe, draw)
    _repair_distributed(recipe)
    evaluates = "eval" in data or (data.get("eval_split") not in (None, 0) and
                                   not (isinstance(data.get("eval_split"), Qty) and data["eval_split"].value == 0))
    if not evaluates:  # E0407, E0408, E0409
        train.pop("eval_every", None)
        if "checkpoint" in b and str(b["checkpoint"].fields.get("keep_best", "")).startswith("eval_"):
            del b["checkpoint"].fields["keep_best"]
        if "sweep" in b:
            b["sweep"].fields["objective"] = Raw("minimize train_loss")
    _repair_objective_metrics(recipe, evaluates)


def _repair_objective(recipe: Recipe, draw) -> str:
    """The objective and the data format agree (E0601 - E0603): a preference objective sets the format; a
    preference format without one gets a matching objective block. Returns the format."""
    b = recipe.blocks
    data = b["data"].fields
    fmt = str(data.get("format", "text"))
    objective = str(b["objective"].label) if "objective" in b else "sft"
    if objective == "kto":
        fmt = "unpaired_preference"
    elif objective != "sft":
        fmt = "preference"
    elif fmt in PREFERENCE_OBJECTIVES:
        b["objective"] = Block(label=W(draw(st.sampled_from(PREFERENCE_OBJECTIVES[fmt]))))
    if "format" in data or fmt != "text":
        data["format"] = W(fmt)
    return fmt


def _repair_preference_data(recipe: Recipe) -> None:
    """Settings preference rows refuse, and those only they take (E0604 - E0608, E0611)."""
    b = recipe.blocks
    data, train = b["data"].fields, b["train"].fields
    if str(data.get("format", "text")) not in PREFERENCE_OBJECTIVES:
        data.pop("max_prompt_length", None)  # E0604
        return
    for key in ("packing", "pad_to_max_length"):
        data.pop(key, None)  # E0605
    if str(data.get("train_on")) == "all":
        del data["train_on"]  # E0606
    if "max_prompt_length" in data and "max_length" in data:
        room = int(_plain(data["max_length"])) - 1  # E0607
        if room < 1:
            del data["max_prompt_length"]
        elif _plain(data["max_prompt_length"]) > room:
            data["max_prompt_length"] = room
    objective = b["objective"]
    if str(objective.fields.get("reference")) == "model" and str(b["method"].label) == "qlora":
        objective.fields["reference"] = W("auto")  # E0608
    if str(objective.label) == "kto" and train.get("micro_batch") == 1:
        train["micro_batch"] = 2  # E0611


def _repair_objective_metrics(recipe: Recipe, evaluates: bool) -> None:
    """A preference objective logs `loss` and its rewards, not the accuracy an `sft` recipe may name (E0610)."""
    b = recipe.blocks
    if str(b["objective"].label if "objective" in b else "sft") == "sft":
        return
    if "sweep" in b and str(b["sweep"].fields.get("objective", "")).endswith("eval_accuracy"):
        b["sweep"].fields["objective"] = Raw("minimize eval_loss" if evaluates else "minimize train_loss")


def _repair_precision(recipe: Recipe) -> None:
    b = recipe.blocks
    cpu = "hardware" in b and str(b["hardware"].fields.get("accelerator")) == "cpu"
    for block, key in (("model", "dtype"), ("method", "compute_dtype")):
        if cpu and str(b[block].fields.get(key)) == "fp16":
            b[block].fields[key] = W("bf16")  # E0417
    if str(b["method"].label) == "full" and str(b["model"].fields.get("dtype")) == "fp16":
        b["model"].fields["dtype"] = W("bf16")  # E0418


def _repair_distributed(recipe: Recipe) -> None:
    b = recipe.blocks
    if "distributed" not in b:
        return
    dist, label = b["distributed"].fields, str(b["distributed"].label)
    qlora = str(b["method"].label) == "qlora"
    cpu = "hardware" in b and str(b["hardware"].fields.get("accelerator")) == "cpu"
    if label == "fsdp" and qlora and not cpu:
        b["distributed"] = Block(label=W("ddp"))  # E0419
        return
    hw = b["hardware"].fields if "hardware" in b else {}
    if label == "none" and int(hw.get("gpus_per_node", 1)) * int(hw.get("nodes", 1)) > 1:
        b["distributed"] = Block(label=W("ddp"))  # E0518
        return
    if label != "deepspeed":
        return
    if str(dist.get("offload_params", "none")) != "none":
        dist["zero"] = W("auto") if qlora else 3  # E0411
        if qlora:
            dist["offload_params"] = W("none")  # E0416
    if qlora and dist.get("zero") == 3:
        dist["zero"] = 2  # E0416
    if "nvme" in (str(dist.get("offload_optimizer")), str(dist.get("offload_params"))):
        dist["nvme_path"] = Q("/local_nvme")  # E0412
    if str(b["train"].fields.get("optimizer")) in ("adamw_8bit", "paged_adamw_8bit") and dist.get("zero") != 0:
        b["train"].fields["optimizer"] = W("adamw")  # E0415


def _repair_batch(recipe: Recipe, draw) -> None:
    """global_batch = micro_batch × grad_accum × ranks, in whole numbers (E0501 - E0503)."""
    b = recipe.blocks
    hw = b["hardware"].fields if "hardware" in b else {}
    world = int(hw.get("gpus_per_node", 1)) * int(hw.get("nodes", 1))
    if world > 64:
        hw["gpus_per_node"], hw["nodes"] = min(int(hw.get("gpus_per_node", 1)), 8), 1
        world = int(hw["gpus_per_node"])
    train = b["train"].fields
    micro = train.get("micro_batch")
    accum = train.get("grad_accum")
    micro = None if micro is None or isinstance(micro, W) else micro
    accum = None if accum is None or isinstance(accum, W) else accum
    micro, accum = (min(micro, 16) if micro else None), (min(accum, 16) if accum else None)
    if micro is not None:
        train["micro_batch"] = micro
    if accum is not None:
        train["grad_accum"] = accum
    per_rank = (micro or draw(st.sampled_from([1, 2, 4]))) * (accum or draw(st.sampled_from([1, 2, 8])))
    train["global_batch"] = per_rank * world
