"""The starter recipe `ftc init` writes: every block a first run needs, a comment per block, `auto` where
a user cannot know the value yet (micro-batch, checkpointing, the distributed strategy), and values that
check cleanly for each method and for a CPU-only machine."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODEL = "meta-llama/Llama-3.1-8B"
DEFAULT_GPU = "a100-80gb"
DEFAULT_DATA = "data/train.jsonl"
METHODS = ("lora", "qlora", "full")
CPU = "cpu"
LR = {"lora": "2e-4", "qlora": "2e-4", "full": "1e-5"}


@dataclass(frozen=True)
class Answers:
    model: str = DEFAULT_MODEL
    gpu: str = DEFAULT_GPU  # a catalog name, or `cpu` for a machine without GPUs
    gpus: int = 1
    method: str = "lora"
    data: str = DEFAULT_DATA  # as written in the recipe: relative to the recipe file
    data_format: str = "chat"
    name: str = "my-finetune"

    @property
    def cpu(self) -> bool:
        return self.gpu.lower() == CPU


def sniff_format(path: Path) -> str | None:
    """The data format the first row of a JSON-lines file suggests (None when it cannot be read)."""
    try:
        with path.open(encoding="utf-8") as handle:
            row = json.loads(handle.readline())
    except (OSError, ValueError):
        return None
    if not isinstance(row, dict):
        return None
    for keys, fmt in ((("messages", "conversations"), "chat"), (("instruction",), "instruction"),
                      (("prompt", "completion"), "completion"), (("text",), "text")):
        if any(key in row for key in keys):
            return fmt
    return None


def _method(a: Answers) -> list[str]:
    if a.method == "full":
        return ["# How the model is adapted: every weight is trained (the most memory; see `ftc estimate`).",
                "method full {}"]
    lines = ["# How the model is adapted: small LoRA adapters are trained on a frozen base"
             + (" loaded in 4 bits (QLoRA)." if a.method == "qlora" else "."),
             f"method {a.method} {{", "  rank    = 16", "  alpha   = 32", "  dropout = 0.05"]
    if a.method == "qlora":
        lines.append("  quant   = nf4")
    return lines + ["}"]


def _hardware(a: Answers) -> list[str]:
    if a.cpu:
        return ["# What the run gets: processes on this machine's CPUs (no GPU, no memory budget to check).",
                "hardware {", "  accelerator = cpu", "}"]
    lines = ["# What the run gets: the GPU (its memory is the budget `ftc check` proves the run fits) and how many.",
             "hardware {", f"  gpu           = {a.gpu}", f"  gpus_per_node = {a.gpus}", "}", "",
             "# How the ranks share the work: auto picks DDP, DeepSpeed ZeRO or FSDP from the memory estimate.",
             "distributed auto {}"]
    return lines


def render(a: Answers) -> str:
    """The recipe text, formatted as `ftc fmt` would write it."""
    dtype = "fp32" if a.cpu else "bf16"
    length, batch, epochs = ("256", "8", "1") if a.cpu else ("2048", "16", "3")
    lines = [f"# Starter recipe written by `ftc init`. `ftc check` validates it, `ftc estimate` shows the memory per",
             "# GPU, `ftc run` trains; `ftc explain CODE` explains any diagnostic.",
             f'recipe "{a.name}"', "",
             "# The base model: a hub id (resolved from the catalog or the Hugging Face cache) or a local folder.",
             f"model {json.dumps(a.model)} {{", f"  dtype = {dtype}", "}", ""]
    lines += _method(a) + [""]
    lines += ["# The training data (relative to this file); 5% is held out for evaluation.",
              "data {", f"  train      = {json.dumps(a.data)}", f"  format     = {a.data_format}",
              "  eval_split = 5%", f"  max_length = {length}", "}", "",
              "# The optimization. `auto`: the largest micro-batch that fits, checkpointing only when needed.",
              "train {", f"  epochs                 = {epochs}", f"  lr                     = {LR[a.method]}",
              "  warmup                 = 3%", f"  global_batch           = {batch}",
              "  micro_batch            = auto", "  gradient_checkpointing = auto"]
    if a.method == "full" and not a.cpu and a.gpus == 1:  # Adam's fp32 state is the largest part on one GPU
        lines.append("  optimizer              = adamw_8bit")
    lines += ["}", ""]
    lines += _hardware(a) + [""]
    lines += ["# Checkpoints: the newest two, and the best by evaluation loss.",
              "checkpoint {", "  keep_last = 2", "  keep_best = eval_loss", "}"]
    return "\n".join(lines) + "\n"
