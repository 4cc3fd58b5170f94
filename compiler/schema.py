"""The vocabulary of the language: blocks, fields, types, units, enums, ranges and defaults.

The grammar is generic; everything a user can misspell lives here, so that diagnostics can say
what was expected and `docs/language.md` is checked against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ftc.compiler.batch import MAX_BATCH


class _Auto:
    """The value `auto`: resolved by the lowering passes."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "auto"

    def __reduce__(self):
        return (_Auto, ())


AUTO = _Auto()

# Field kinds
INT, FLOAT, BOOL, STRING, ENUM, NAMES, PATHS, QUANTITY, METRIC, OBJECTIVE, MODULES = (
    "int", "float", "bool", "string", "enum", "names", "paths", "quantity", "metric", "objective", "modules")


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: str
    doc: str
    default: Any = None  # None: no default (unset unless required)
    choices: tuple[str, ...] = ()  # enum values (and list items for NAMES when closed)
    dims: tuple[str, ...] = ()  # QUANTITY: allowed dimensions; plain numbers need `bare` below
    bare: str | None = None  # QUANTITY: dimension a plain number is taken in (None: a unit is required)
    minimum: float | None = None
    maximum: float | None = None
    exclusive_min: bool = False
    exclusive_max: bool = False
    range_dims: tuple[str, ...] = ()  # QUANTITY: the dimensions minimum/maximum apply to (empty: all)
    allow_auto: bool = False
    required: bool = False
    tunable: bool = False  # may be the target of a sweep entry

    def describe_type(self) -> str:
        if self.kind == ENUM:
            text = " | ".join(self.choices)
        elif self.kind == QUANTITY:
            from ftc.compiler.units import DIMENSION_NAMES

            text = " or ".join(DIMENSION_NAMES[d] for d in self.dims)
            if self.bare:
                text += f" (a plain number means {self.bare})"
        elif self.kind == NAMES:
            text = "list of names" + (f" from {', '.join(self.choices)}" if self.choices else "")
        elif self.kind == PATHS:
            text = "string or list of strings"
        elif self.kind == MODULES:
            text = "list of module names, or `all_linear`"
        elif self.kind == METRIC:
            text = "metric name"
        elif self.kind == OBJECTIVE:
            text = "`minimize METRIC` or `maximize METRIC`"
        else:
            text = self.kind
        if self.allow_auto:
            text += " | auto"
        return text


@dataclass(frozen=True)
class BlockSpec:
    name: str
    doc: str
    fields: tuple[FieldSpec, ...]
    label: str = "none"  # none | required | optional
    label_kind: str = STRING  # STRING (any text) or ENUM
    label_choices: tuple[str, ...] = ()
    label_doc: str = ""
    label_example: str = ""  # a string label as a help line shows it
    label_default: str | None = None
    variant_fields: dict[str, tuple[str, ...]] = field(default_factory=dict)  # label -> fields allowed
    nested: tuple["BlockSpec", ...] = ()
    dotted_entries: bool = False  # sweep: `train.lr = loguniform(...)`
    open_fields: bool = False  # nested `columns`: any name from `fields`, values are strings
    defaults_when_absent: bool = True  # an absent block still provides its defaults (not for `sweep`)

    def field(self, name: str) -> FieldSpec | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def fields_for(self, label: str | None) -> tuple[str, ...]:
        if label is not None and label in self.variant_fields:
            return self.variant_fields[label]
        return self.field_names


F = FieldSpec

LORA_FIELDS = ("rank", "alpha", "dropout", "targets", "modules_to_save", "bias")
QLORA_FIELDS = LORA_FIELDS + ("quant", "double_quant", "compute_dtype")

MODEL = BlockSpec(
    "model", "The base model: a hub id or a local folder (relative to the recipe file).",
    label="required", label_kind=STRING, label_doc="hub id (`org/name`) or local directory",
    label_example="org/name",
    fields=(
        F("dtype", ENUM, "Weights and compute dtype.", "bf16", ("bf16", "fp16", "fp32")),
        F("revision", STRING, "Hub revision (branch, tag or commit).", "main"),
        F("attention", ENUM, "Attention implementation. Unset: sdpa, or eager for the families transformers "
          "runs only eagerly (Gemma-2, BLOOM, gpt-oss).", "sdpa", ("sdpa", "eager", "flash_attention_2")),
        F("trust_remote_code", BOOL, "Run code shipped with the model; must be explicit to be true.", False),
        F("tokenizer", STRING, "A separate tokenizer (hub id or folder); default: the model's own."),
        F("pad_token", STRING, "Padding token, set on the tokenizer (added when the vocabulary lacks it). "
          "Default: the tokenizer's, else its EOS."),
        F("eos_token", STRING, "End-of-sequence token, set on the tokenizer and the generation config (added "
          "when the vocabulary lacks it), e.g. a chat template's end of turn."),
        F("add_tokens", PATHS, "New tokens: the embeddings are resized, and under LoRA the new rows of the "
          "embedding and output layers are trained and saved with the adapter."),
    ),
)

METHOD = BlockSpec(
    "method", "How the model is adapted: full fine-tuning, LoRA or QLoRA.",
    label="required", label_kind=ENUM, label_choices=("full", "lora", "qlora"),
    label_doc="full | lora | qlora",
    fields=(
        F("rank", INT, "LoRA rank r.", 16, minimum=1, maximum=4096, tunable=True),
        F("alpha", FLOAT, "LoRA scaling alpha (the update is scaled by alpha / rank).", 32, minimum=0,
          exclusive_min=True, tunable=True),
        F("dropout", FLOAT, "Dropout on the LoRA input.", 0.05, minimum=0, maximum=1, exclusive_max=True,
          tunable=True),
        F("targets", MODULES, "Linear modules that get adapters, or `all_linear`. Unset: the model's attention "
          "projections by its family's names (`[qkv_proj, o_proj]` in Phi-3, `[query_key_value, dense]` in "
          "Falcon and BLOOM, `[c_attn]` in GPT-2).",
          ("q_proj", "k_proj", "v_proj", "o_proj")),
        F("modules_to_save", NAMES, "Modules trained in full and saved with the adapter (e.g. `lm_head`).", ()),
        F("bias", ENUM, "Which biases are trained.", "none", ("none", "all", "lora_only")),
        F("quant", ENUM, "4-bit quantization type of the frozen base (qlora).", None, ("nf4", "fp4")),
        F("double_quant", BOOL, "Quantize the quantization constants too (saves ~0.4 bit/param).", True),
        F("compute_dtype", ENUM, "Dtype the 4-bit weights are dequantized to for matmuls.", "bf16",
          ("bf16", "fp16", "fp32")),
    ),
    variant_fields={"full": (), "lora": LORA_FIELDS, "qlora": QLORA_FIELDS},
)

COLUMNS = BlockSpec(
    "columns", "Column names of the data files, when they differ from the format's defaults; `role` and "
    "`content` name the keys inside each message (ShareGPT: `from`, `value`).",
    open_fields=True,
    fields=tuple(F(name, STRING, f"Column holding the `{name}` part.") for name in (
        "text", "prompt", "completion", "instruction", "input", "output", "messages", "system",
        "chosen", "rejected", "label")) + (
        F("role", STRING, "Key of a message's role (default `role`)."),
        F("content", STRING, "Key of a message's text (default `content`)."),
    ),
)

ROLES = BlockSpec(
    "roles", "The names the data gives the roles of a conversation (`human`, `gpt` are known already).",
    fields=tuple(F(name, STRING, f"The data's name for the `{name}` role.") for name in (
        "system", "user", "assistant", "tool")),
)

DATA = BlockSpec(
    "data", "Where the training data comes from and how it becomes batches.",
    nested=(COLUMNS, ROLES),
    fields=(
        F("train", PATHS, "Training data: .jsonl .json .csv .parquet .txt, a saved datasets folder, a glob, "
          "or a hub data set `hf:org/name[:config][@split]` (`hf:allenai/c4:en@validation`, `@train[:10%]`). Relative "
          "to the recipe file.", required=True),
        F("eval", PATHS, "Evaluation data; when absent, `eval_split` carves it from `train`."),
        F("eval_split", QUANTITY, "Share of `train` held out for evaluation (at most 50%), or a row count "
          "(`500 rows`); chosen by a stable content hash.", dims=("ratio", "rows"), bare="ratio", minimum=0,
          maximum=0.5, range_dims=("ratio",)),
        F("format", ENUM, "Row format. `preference`: prompt, chosen, rejected (strings or message lists); "
          "`unpaired_preference`: prompt, completion and a boolean `label` (KTO).", "text",
          ("text", "completion", "instruction", "chat", "preference", "unpaired_preference")),
        F("chat_template", STRING, "Render rows through a chat template: `chatml`, `llama3`, `mistral`, "
          "`gemma`, `zephyr`, `alpaca`, or a Jinja file (relative to the recipe). Chat rows default to the "
          "tokenizer's own; instruction and completion rows become one user and one assistant turn."),
        F("max_samples", INT, "Training rows kept (the first ones, after checks and dedup, before the split).",
          minimum=1),
        F("max_length", QUANTITY, "Longest sequence in tokens; longer rows are truncated.",
          dims=("tokens",), bare="tokens", minimum=8, maximum=1048576, tunable=True),
        F("max_prompt_length", QUANTITY, "Preference formats: longest prompt in tokens; longer prompts keep "
          "their end.", dims=("tokens",), bare="tokens", minimum=1, maximum=1048576),
        F("packing", BOOL, "Concatenate examples up to `max_length` (no cross-example attention). `auto`: on when "
          "the median example (estimated from the first rows of local .jsonl files) is under a quarter of "
          "`max_length`; the plan's `auto` list says why.", AUTO, allow_auto=True),
        F("pad_to_max_length", BOOL, "Pad every batch to `max_length` (a fixed shape), not to its longest row.",
          False),
        F("dedup", ENUM, "Remove duplicate rows before splitting.", "none", ("none", "exact", "near")),
        F("near_threshold", FLOAT, "Jaccard similarity above which rows are near-duplicates.", 0.85,
          minimum=0, maximum=1, exclusive_min=True),
        F("train_on", ENUM, "Which tokens carry loss: all, or completions only (prompts masked). "
          "Default: `completions`, except `all` for `format = text`.", None, ("all", "completions")),
        F("truncation", ENUM, "Which end of a long row is cut, or drop the row.", "right",
          ("right", "left", "drop")),
        F("on_bad_rows", ENUM, "A row that does not fit the format: stop with an error, or skip and count it.",
          "error", ("error", "skip")),
        F("seed", INT, "Seed of the split and shuffling.", 42, minimum=0),
        F("cache_dir", STRING, "Where prepared data is cached (content-addressed)."),
    ),
)

WANDB = BlockSpec(
    "wandb", "Weights & Biases run settings, used when `track` lists `wandb` (`WANDB_MODE=offline` writes the run "
    "under the run folder).",
    fields=(
        F("project", STRING, "Project the run is logged to. Default: the recipe's name."),
        F("entity", STRING, "Team or user that owns the project. Default: your wandb default entity."),
        F("name", STRING, "Display name of the run. Default: the run folder's name."),
        F("tags", NAMES, "Tags of the run (names or strings)."),
    ),
)

TRAIN = BlockSpec(
    "train", "The optimization: length, learning rate, schedule, batch and precision-related switches.",
    nested=(WANDB,),
    fields=(
        F("epochs", QUANTITY, "Passes over the training data (or give `max_steps`).", dims=("epochs",),
          bare="epochs", minimum=0, exclusive_min=True),
        F("max_steps", QUANTITY, "Optimizer steps to run (instead of `epochs`).", dims=("steps",), bare="steps",
          minimum=1),
        F("lr", FLOAT, "Peak learning rate.", required=True, minimum=0, exclusive_min=True, maximum=1,
          tunable=True),
        F("schedule", ENUM, "Learning-rate schedule after warmup.", "cosine", ("constant", "linear", "cosine")),
        F("warmup", QUANTITY, "Linear warmup: `100 steps` or a share of all steps (`3%`).", dims=("steps", "ratio"),
          minimum=0, tunable=True),
        F("global_batch", INT, "Sequences per optimizer step, all GPUs together.", required=True, minimum=1,
          maximum=MAX_BATCH, tunable=True),
        F("micro_batch", INT, "Sequences per GPU per forward pass; `auto` = largest that fits the budget.",
          AUTO, allow_auto=True, minimum=1, maximum=MAX_BATCH),
        F("eval_batch", INT, "Sequences per GPU in evaluation; `auto` = the largest that fits the budget (evaluation "
          "keeps no activations for backward, but whole logits).", AUTO, allow_auto=True, minimum=1, maximum=MAX_BATCH),
        F("grad_accum", INT, "Gradient accumulation steps; derived from the batch sizes (`auto`).",
          AUTO, allow_auto=True, minimum=1, maximum=MAX_BATCH),
        F("optimizer", ENUM, "Optimizer (`adamw_fused`: torch's fused AdamW kernel; `paged_adamw`: bitsandbytes' "
          "paged 32-bit AdamW).", "adamw", ("adamw", "adamw_fused", "adamw_8bit", "paged_adamw", "paged_adamw_8bit",
                                             "sgd", "adafactor")),
        F("weight_decay", FLOAT, "Decoupled weight decay.", 0.0, minimum=0, maximum=1, tunable=True),
        F("max_grad_norm", FLOAT, "Gradient clipping norm (0 disables).", 1.0, minimum=0),
        F("chunked_cross_entropy", BOOL, "Take the loss from the last hidden states a chunk of tokens at a time, "
          "so the tokens × vocab logits never exist (liger-kernel's fused kernel on CUDA where installed). "
          "On (also `auto`) for the families it supports; never where ZeRO-3 or FSDP shards the output head.",
          AUTO, allow_auto=True),
        F("compile", BOOL, "torch.compile each decoder layer (regional compilation); its effect on activation "
          "memory is not modelled by the estimator.", False),
        F("optimizer_impl", ENUM, "AdamW's kernel: `fused` (one kernel for all tensors), `foreach` (batched "
          "per-tensor ops), or `auto`: fused on GPUs, foreach on CPU. DeepSpeed runs its own fused Adam.",
          "auto", ("auto", "fused", "foreach")),
        F("gradient_checkpointing", BOOL, "Recompute activations in backward; `auto` = only when needed to fit.",
          AUTO, allow_auto=True),
        F("eval_every", QUANTITY, "Evaluate every N steps or epochs.", dims=("steps", "epochs")),
        F("log_every", QUANTITY, "Log metrics every N steps (default: about 50 lines per run).", dims=("steps",)),
        F("seed", INT, "Seed of initialization, dropout and data order.", 42, minimum=0),
        F("track", NAMES, "Metric sinks besides metrics.jsonl (`wandb`: settings in `wandb { ... }`).",
          ("tensorboard",), choices=("tensorboard", "mlflow", "wandb", "none")),
    ),
)

HARDWARE = BlockSpec(
    "hardware", "What the run gets: the memory budget per GPU and the world size.",
    fields=(
        F("accelerator", ENUM, "Device kind; `cpu` runs on processes without GPUs.", "gpu", ("gpu", "cpu")),
        F("gpu", STRING, "A GPU name from the built-in catalog (e.g. `a100-80gb`, `h100-80gb`, `rtx-4090`)."),
        F("memory_per_gpu", QUANTITY, "Memory budget per GPU; overrides the catalog's.", dims=("bytes",),
          minimum=1),
        F("gpus_per_node", INT, "GPUs per node (processes per node on `accelerator = cpu`).", 1, minimum=1,
          maximum=1024),
        F("nodes", INT, "Number of nodes.", 1, minimum=1, maximum=100000),
        F("cpu_memory", QUANTITY, "Host RAM per node; checked when offloading.", dims=("bytes",), minimum=1),
    ),
)

DISTRIBUTED = BlockSpec(
    "distributed", "How the ranks share the work.",
    label="required", label_kind=ENUM, label_choices=("none", "ddp", "deepspeed", "fsdp", "auto"),
    label_doc="none | ddp | deepspeed | fsdp | auto",
    fields=(
        F("zero", INT, "DeepSpeed ZeRO stage: 0 | 1 | 2 | 3 | auto (smallest stage that fits).", AUTO,
          allow_auto=True, minimum=0, maximum=3),
        F("offload_optimizer", ENUM, "Where the optimizer state lives.", "none", ("none", "cpu", "nvme")),
        F("offload_params", ENUM, "Where the parameters live (ZeRO-3 / FSDP).", "none", ("none", "cpu", "nvme")),
        F("nvme_path", STRING, "Folder for NVMe offload."),
        F("sharding", ENUM, "FSDP sharding strategy.", "full_shard",
          ("full_shard", "shard_grad_op", "hybrid_shard", "no_shard")),
        F("find_unused_parameters", BOOL, "DDP: search for parameters without gradients each step.", False),
        F("timeout", QUANTITY, "How long a collective may wait for the other ranks before the run fails "
          "(the process group's timeout; default 30 min).", dims=("duration",), minimum=1),
    ),
    variant_fields={
        "none": (), "auto": ("timeout",),
        "ddp": ("find_unused_parameters", "timeout"),
        "deepspeed": ("zero", "offload_optimizer", "offload_params", "nvme_path", "timeout"),
        "fsdp": ("sharding", "offload_params", "timeout"),
    },
)

CHECKPOINT = BlockSpec(
    "checkpoint", "When checkpoints are written and which are kept.",
    fields=(
        F("every", QUANTITY, "Save every N steps or epochs.", dims=("steps", "epochs")),
        F("keep_last", INT, "Keep the newest K checkpoints (the best one is always kept).", 3, minimum=1),
        F("keep_best", METRIC, "Also keep the best checkpoint by this metric (e.g. `eval_loss`)."),
        F("best_mode", ENUM, "Whether lower or higher `keep_best` is better.", "min", ("min", "max")),
        F("full_state", BOOL, "Save optimizer, scheduler, RNG and data position for exact resume.", True),
    ),
)

OUTPUT = BlockSpec(
    "output", "Where runs are written and what is exported at the end.",
    fields=(
        F("runs_dir", STRING, "Folder of run outputs, relative to the recipe file.", "runs"),
        F("merge", BOOL, "Merge the LoRA adapter into the base model at the end.", False),
    ),
)

SWEEP = BlockSpec(
    "sweep", "A hyper-parameter search with optuna; entries `block.field = distribution`.",
    dotted_entries=True, defaults_when_absent=False,
    fields=(
        F("trials", INT, "Number of trials.", required=True, minimum=1, maximum=100000),
        F("objective", OBJECTIVE, "What to optimize, e.g. `minimize eval_loss`.", ("minimize", "eval_loss")),
        F("sampler", ENUM, "Search algorithm.", "tpe", ("tpe", "random", "grid", "cmaes")),
        F("pruner", ENUM, "Early stopping of poor trials.", "median", ("median", "hyperband", "none")),
        F("timeout", QUANTITY, "Stop starting new trials after this long.", dims=("duration",)),
        F("parallel", INT, "Trials run at once.", 1, minimum=1),
        F("storage", STRING, "Where the study lives: `sqlite`, `journal` or a database URL.", None),
    ),
)


OBJECTIVES = ("sft", "dpo", "orpo", "kto", "simpo")

# The DPO loss variants TRL's DPOTrainer offers (trl.DPOConfig.loss_type), all over paired data.
DPO_LOSSES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
              "apo_zero", "apo_down", "discopop", "sigmoid_norm")


OBJECTIVE_BLOCK = BlockSpec(
    "objective", "What the model is trained to do: imitate the data (`sft`), or prefer chosen answers over "
                 "rejected ones (`dpo`, `orpo`, `simpo` on `format = preference`; `kto` on "
                 "`format = unpaired_preference`). Absent: `sft`.",
    label="required", label_kind=ENUM, label_choices=OBJECTIVES, label_doc="sft | dpo | orpo | kto | simpo",
    label_default="sft",
    fields=(
        F("beta", FLOAT, "Strength of the preference term: the inverse temperature of DPO and KTO, ORPO's "
          "odds-ratio weight (lambda), SimPO's reward scale. Default: 0.1, or 2.0 under `simpo`.",
          minimum=0, exclusive_min=True, maximum=100, tunable=True),
        F("loss", ENUM, "DPO loss variant (TRL's `loss_type`).", "sigmoid", DPO_LOSSES),
        F("label_smoothing", FLOAT, "DPO: assumed share of flipped preference labels (robust and cDPO losses).",
          0.0, minimum=0, maximum=0.5, exclusive_max=True, tunable=True),
        F("reference", ENUM, "The reference policy: `auto` (the adapter-disabled base under LoRA, a frozen copy "
          "for full fine-tuning), `model` (always a separate frozen copy), `precomputed` (its log-probs are "
          "computed once before training; no reference weights are held).", "auto",
          ("auto", "model", "precomputed")),
        F("desirable_weight", FLOAT, "KTO: weight of the desirable (label true) examples' loss.", 1.0,
          minimum=0, exclusive_min=True, maximum=100, tunable=True),
        F("undesirable_weight", FLOAT, "KTO: weight of the undesirable (label false) examples' loss.", 1.0,
          minimum=0, exclusive_min=True, maximum=100, tunable=True),
        F("gamma", FLOAT, "SimPO: target reward margin (gamma / beta is the margin term).", 0.5, minimum=0,
          maximum=100, tunable=True),
    ),
    variant_fields={
        "sft": (),
        "dpo": ("beta", "loss", "label_smoothing", "reference"),
        "orpo": ("beta",),
        "kto": ("beta", "reference", "desirable_weight", "undesirable_weight"),
        "simpo": ("beta", "gamma"),
    },
)

BLOCKS: dict[str, BlockSpec] = {b.name: b for b in (
    MODEL, METHOD, DATA, OBJECTIVE_BLOCK, TRAIN, HARDWARE, DISTRIBUTED, CHECKPOINT, OUTPUT, SWEEP)}

REQUIRED_BLOCKS = ("model", "method", "data", "train")

DIRECTIVES = {
    "recipe": "The recipe's name; used for output folder names. Default: the file name.",
    "extends": "A parent recipe (path relative to this file); this file's values override the parent's.",
}

SEARCH_FUNCTIONS = {
    "loguniform": "a float sampled log-uniformly between two positive bounds",
    "uniform": "a float sampled uniformly between two bounds",
    "int": "an integer between two bounds, inclusive",
    "choice": "one of the listed values",
}

BOOL_WORDS = {"true": True, "false": False, "on": True, "off": False}


def block_spec(kind: str) -> BlockSpec | None:
    return BLOCKS.get(kind)


# Names users bring from Axolotl, torchtune, TRL and HF TrainingArguments -> the ftc field.
# A value with a dot names a field of another block.
FOREIGN_NAMES: dict[str, str] = {
    "learning_rate": "lr", "lr_scheduler": "schedule", "lr_scheduler_type": "schedule", "scheduler": "schedule",
    "num_epochs": "epochs", "num_train_epochs": "epochs", "epoch": "epochs", "steps": "max_steps",
    "warmup_steps": "warmup", "warmup_ratio": "warmup",
    "micro_batch_size": "micro_batch", "per_device_train_batch_size": "micro_batch", "batch_size": "micro_batch",
    "global_batch_size": "global_batch", "total_batch_size": "global_batch",
    "gradient_accumulation_steps": "grad_accum", "gradient_accumulation": "grad_accum",
    "optim": "optimizer", "clip_grad_norm": "max_grad_norm", "grad_clip": "max_grad_norm",
    "eval_steps": "eval_every", "logging_steps": "log_every", "save_steps": "checkpoint.every",
    "save_total_limit": "checkpoint.keep_last", "r": "rank", "lora_r": "rank", "lora_rank": "rank",
    "lora_alpha": "alpha", "lora_dropout": "dropout", "target_modules": "targets", "lora_target_modules": "targets",
    "sequence_len": "max_length", "max_seq_length": "max_length", "max_seq_len": "max_length",
    "seq_len": "max_length", "sample_packing": "packing", "val_set_size": "eval_split",
    "test_size": "eval_split", "dataset": "train", "datasets": "train", "path": "train",
    "torch_dtype": "dtype", "attn_implementation": "attention", "bnb_4bit_quant_type": "quant",
    "bnb_4bit_use_double_quant": "double_quant", "bnb_4bit_compute_dtype": "compute_dtype",
    "torch_compile": "compile", "cut_cross_entropy": "chunked_cross_entropy",
    "liger_fused_linear_cross_entropy": "chunked_cross_entropy", "chunked_loss": "chunked_cross_entropy",
    "zero_stage": "zero", "stage": "zero", "num_gpus": "gpus_per_node", "num_nodes": "nodes",
    "gpu_memory": "memory_per_gpu", "vram": "memory_per_gpu",
}

MODEL_NAME_KEYS = ("base_model", "model", "model_name", "model_name_or_path", "base_model_name_or_path",
                   "pretrained_model_name_or_path", "model_id")


def where_field_goes(name: str) -> str | None:
    """Where a field written outside any block belongs, as a help line: its block (by ftc's name for it
    when `name` is another tool's spelling), or the `model` block's label for a model name."""
    if name in MODEL_NAME_KEYS:
        return 'the model is the label of its block: `model "org/name" { ... }`'
    foreign = FOREIGN_NAMES.get(name, name)
    kind, _, field_name = foreign.rpartition(".")
    homes = [kind] if kind else [b.name for b in BLOCKS.values() if field_name in b.field_names]
    if not homes:
        return None
    spelled = f"`{name}` is `{field_name}`, " if field_name != name else ""
    where = " or ".join(f"`{block_opening(BLOCKS[home], field_name)} {{ {field_name} = ... }}`" for home in homes)
    return f"{spelled}write it inside its block: {where}"


def block_opening(spec: BlockSpec, field_name: str | None = None) -> str:
    """How a block of this kind opens, for a help line: `train`, `method full`, `model "org/name"`; with
    `field_name`, a kind that takes it (`method lora` for `rank`)."""
    if spec.label == "none" or spec.label_default is not None:
        return spec.name
    if spec.label_kind == ENUM:
        kinds = [kind for kind in spec.label_choices if field_name is None or field_name in spec.fields_for(kind)]
        return f"{spec.name} {kinds[0] if kinds else spec.label_choices[0]}"
    return f'{spec.name} "{spec.label_example or spec.label_doc}"'
