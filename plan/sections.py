"""The plan as frozen, typed sections, one dataclass per object of schema.json (a test holds the field names
to the schema's). Built only from a plan the schema accepted, so every field is present and of its type:
the runtime reads `plan.train.max_grad_norm`, never `.get(key, default)`."""

from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Optional


def _section(cls):
    return field(metadata={"section": cls})


def _frozen(value: Any) -> Any:
    """JSON value -> read-only value: objects become mappings that cannot be changed, arrays tuples."""
    if isinstance(value, dict):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value


def build(cls, value: Mapping[str, Any]):
    """One section from its (schema-valid) JSON object; nested sections by their field's metadata. A key the
    schema leaves optional is a field with a default (None), used when the plan leaves the key out."""
    kwargs = {}
    for f in fields(cls):
        item = value[f.name] if f.name in value or f.default is MISSING else f.default
        nested = f.metadata.get("section")
        if nested is not None and item is not None:
            item = tuple(build(nested, v) for v in item) if isinstance(item, list) else build(nested, item)
        kwargs[f.name] = _frozen(item)
    return cls(**kwargs)


@dataclass(frozen=True)
class Source:
    path: str
    sha256: str


@dataclass(frozen=True)
class Recipe:
    name: str
    source: str
    sources: tuple[Source, ...] = _section(Source)


@dataclass(frozen=True)
class Model:
    name_or_path: str
    local: bool
    revision: Optional[str]
    dtype: str
    attention: str
    trust_remote_code: bool
    tokenizer: Optional[str]
    # optional keys: the run's own pad/eos tokens, and tokens the vocabulary gains
    pad_token: Optional[str] = None
    eos_token: Optional[str] = None
    add_tokens: Optional[tuple[str, ...]] = None


@dataclass(frozen=True)
class Lora:
    rank: int
    alpha: float
    dropout: float
    targets: Any  # tuple of module names, or ALL_LINEAR where the compiler does not know the architecture
    modules_to_save: tuple[str, ...]
    bias: str
    # how added tokens' rows train: "trainable_token_indices" or "modules_to_save" (set when tokens are added)
    new_tokens: Optional[str] = None


@dataclass(frozen=True)
class Quantization:
    quant: str
    double_quant: bool
    compute_dtype: str


@dataclass(frozen=True)
class Method:
    kind: str
    lora: Optional[Lora] = _section(Lora)
    quantization: Optional[Quantization] = _section(Quantization)


@dataclass(frozen=True)
class Data:
    train: tuple[str, ...]
    eval: Optional[tuple[str, ...]]
    eval_split: float
    format: str
    columns: Mapping[str, str]
    max_length: Optional[int]
    packing: bool
    dedup: str
    near_dedup_threshold: float
    train_on: str
    on_bad_rows: str
    truncation: str
    seed: int
    cache_dir: Optional[str]
    chat_template: Optional[Mapping[str, str]] = None  # {"name": ...} or {"file": ...}
    roles: Optional[Mapping[str, str]] = None  # ShareGPT role -> the data's spelling of it
    max_samples: Optional[int] = None
    eval_rows: Optional[int] = None  # eval_split as a number of rows (eval_split is then 0)
    pad_to_max_length: bool = False  # every batch padded to max_length (the key is written only when set)
    max_prompt_length: Optional[int] = None  # preference formats: prompt tokens kept (their end)


@dataclass(frozen=True)
class Train:
    epochs: Optional[float]
    max_steps: Optional[int]
    lr: float
    schedule: str
    warmup_steps: Optional[int]
    warmup_ratio: Optional[float]
    optimizer: str
    adam_betas: tuple[float, float]
    adam_epsilon: float
    weight_decay: float
    max_grad_norm: float  # 0 turns clipping off
    gradient_checkpointing: bool
    eval_every_steps: Optional[int]
    logging_steps: int
    seed: int
    eval_every_epochs: Optional[float] = None  # converted to steps by the run, which knows the data's size
    # efficiency switches (optional keys; an older plan runs with these defaults)
    chunked_cross_entropy: bool = True
    compile: bool = False
    optimizer_impl: Optional[str] = "auto"  # fused | foreach | None (not torch's AdamW); "auto" only when absent


@dataclass(frozen=True)
class Batch:
    global_batch: int
    micro_batch: int
    grad_accum: int
    data_parallel_world: int
    eval_batch: int  # sequences per rank in evaluation


@dataclass(frozen=True)
class Steps:
    source: str
    steps_per_epoch: Optional[int]
    total_steps: Optional[int]
    train_rows: Optional[int]


@dataclass(frozen=True)
class Precision:
    mixed: str


@dataclass(frozen=True)
class Hardware:
    accelerator: str
    gpu: Optional[str]
    memory_per_gpu: Optional[int]
    gpus_per_node: int
    nodes: int
    cpu_memory: Optional[int]


@dataclass(frozen=True)
class Fsdp:
    sharding: str
    wrap: str
    offload_params: bool


@dataclass(frozen=True)
class Distributed:
    strategy: str
    world_size: int
    zero: Optional[int]
    offload_optimizer: str
    offload_params: str
    nvme_path: Optional[str]
    find_unused_parameters: bool
    fsdp: Optional[Fsdp] = _section(Fsdp)
    timeout_s: Optional[int] = None  # the process group's timeout, when the recipe sets one


@dataclass(frozen=True)
class Checkpoint:
    every_steps: Optional[int]
    keep_last: Optional[int]
    keep_best: Optional[str]
    best_mode: str
    full_state: bool
    every_epochs: Optional[float] = None  # converted to steps by the run, which knows the data's size


@dataclass(frozen=True)
class Wandb:
    project: str
    entity: Optional[str]
    name: Optional[str]
    tags: tuple[str, ...]


@dataclass(frozen=True)
class Tracking:
    backends: tuple[str, ...]
    mlflow_uri: Optional[str]
    wandb: Optional[Wandb] = field(default=None, metadata={"section": Wandb})  # only when wandb is tracked


@dataclass(frozen=True)
class Output:
    runs_dir: str
    merge: bool


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: str


@dataclass(frozen=True)
class TrainingObjective:
    """The training objective: `sft`, or a preference objective with its settings (null where one does not
    apply). `reference`: base (LoRA's adapter-disabled base) | model (a frozen copy) | precomputed | none."""

    kind: str
    beta: Optional[float]
    loss: Optional[str]
    label_smoothing: Optional[float]
    reference: str
    desirable_weight: Optional[float]
    undesirable_weight: Optional[float]
    gamma: Optional[float]
    metrics: tuple[str, ...]


@dataclass(frozen=True)
class Sweep:
    trials: int
    parallel: int
    sampler: str
    pruner: str
    timeout_s: Optional[float]
    storage: str  # sqlite | journal | a database URL
    space: Mapping[str, Mapping[str, Any]]  # field -> {distribution, args, unit}, as written in plan.json
    objective: Objective = _section(Objective)


@dataclass(frozen=True)
class LaunchFiles:
    accelerate: str
    deepspeed: Optional[str]
    hostfile: Optional[str]


@dataclass(frozen=True)
class Launch:
    launcher: str
    nnodes: int
    nproc_per_node: int
    master_addr: str
    master_port: int
    entry_module: str
    env: Mapping[str, str]
    files: LaunchFiles = _section(LaunchFiles)


@dataclass(frozen=True)
class Decision:
    field: str
    value: Any
    reason: str


SECTIONS = {"recipe": Recipe, "model": Model, "method": Method, "data": Data, "train": Train, "batch": Batch,
            "steps": Steps, "precision": Precision, "hardware": Hardware, "distributed": Distributed,
            "checkpoint": Checkpoint, "tracking": Tracking, "output": Output, "sweep": Sweep, "launch": Launch,
            "objective": TrainingObjective}


@dataclass(frozen=True)
class Plan:
    """A loaded, schema-valid plan and the folder its relative paths start from. `text` is plan.json as read
    (a run folder keeps a copy); `raw` gives a fresh dict of it for code that takes plain JSON."""

    text: str
    folder: Path
    schema_version: int
    ftc_version: str
    recipe: Recipe
    model: Model
    method: Method
    data: Data
    train: Train
    batch: Batch
    steps: Steps
    precision: Precision
    hardware: Hardware
    distributed: Distributed
    checkpoint: Checkpoint
    tracking: Tracking
    output: Output
    objective: TrainingObjective
    sweep: Optional[Sweep]
    memory: Optional[Mapping[str, Any]]
    launch: Launch
    auto: tuple[Decision, ...]
    provenance: Mapping[str, str]

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], text: str, folder: Path) -> "Plan":
        sections = {name: None if raw[name] is None else build(kind, raw[name]) for name, kind in SECTIONS.items()}
        return cls(text=text, folder=folder, schema_version=raw["schema_version"], ftc_version=raw["ftc_version"],
                   memory=_frozen(raw["memory"]), auto=tuple(build(Decision, d) for d in raw["auto"]),
                   provenance=_frozen(raw["provenance"]), **sections)

    @property
    def raw(self) -> dict[str, Any]:
        return json.loads(self.text)

    @property
    def recipe_name(self) -> str:
        return self.recipe.name

    def path(self, relative: str) -> Path:
        """A plan path resolved against the plan's folder (absolute paths are kept as they are)."""
        p = Path(relative)
        return p if p.is_absolute() else (self.folder / p).resolve()

    @property
    def runs_dir(self) -> Path:
        return self.path(self.output.runs_dir)

    @property
    def world_size(self) -> int:
        """Processes the plan's batch arithmetic counts (all nodes together)."""
        return self.distributed.world_size

    @property
    def on_cpu(self) -> bool:
        return self.hardware.accelerator == "cpu"


def section_fields(cls) -> set[str]:
    """Field names of a section class (for the test that holds them to the schema)."""
    return {f.name for f in fields(cls)} if is_dataclass(cls) else set()
