"""The efficiency switches: `data.packing` when the recipe does not say, `train.chunked_cross_entropy`,
`train.compile` and `train.optimizer_impl`, each resolved into the plan (with its reason when ftc chose).

Packing when not set: on when the examples are short next to `max_length`, so that unpacked rows would be
mostly padding. The length is estimated from the first rows of the local training files (characters of
the text fields at 4 characters a token, plus a few tokens of template per message), without the
tokenizer: the compile path reads no model files and imports no data library.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from ftc.compiler.lower.builder import Lowering
from ftc.compiler.memory.activations import CHUNKED_LOSS_FAMILIES
from ftc.compiler.memory.compat import PACKING_NOT_SEPARATED
from ftc.compiler.schema import AUTO

PACKABLE_FORMATS = ("text", "completion", "instruction", "chat")
SAMPLE_ROWS = 2000
SAMPLE_BYTES = 4 * 2**20
CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4  # role markers and separators of a chat template
SHORT_SHARE = 0.25  # packing pays when the median example fills less than a quarter of a row


def _row_tokens(row) -> int:
    """Estimated tokens of one JSON row: its strings at 4 characters a token, plus template per message."""
    chars, messages = 0, 0
    stack = [row]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            chars += len(item)
        elif isinstance(item, dict):
            messages += "role" in item or "from" in item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return chars // CHARS_PER_TOKEN + TOKENS_PER_MESSAGE * max(messages, 1)


def sample_lengths(path: Path) -> list[int] | None:
    """Estimated token lengths of the first rows of a JSON-lines file; None when they cannot be read cheaply."""
    if path.suffix.lower() != ".jsonl" or not path.is_file():
        return None
    lengths = []
    try:
        with path.open("rb") as f:
            head = f.read(SAMPLE_BYTES)
    except OSError:
        return None
    for line in head.splitlines()[:SAMPLE_ROWS]:
        try:
            lengths.append(_row_tokens(json.loads(line)))
        except ValueError:
            continue
    return lengths or None


def decide_packing(lw: Lowering) -> bool:
    """`data.packing` as written, or decided from the data's lengths (recorded in plan["auto"] with why)."""
    r = lw.recipe
    value = r.value("data.packing", AUTO)
    if value is not AUTO:
        return bool(value)
    fmt, max_length = r.value("data.format"), r.value("data.max_length")
    if fmt not in PACKABLE_FORMATS:
        return False
    if r.value("data.pad_to_max_length", False) is True:
        return lw.decide("data.packing", False, "not set, and `pad_to_max_length = true` asks for unpacked rows "
                         "of a fixed shape")
    arch = lw.architecture
    if arch is not None and arch.model_type in PACKING_NOT_SEPARATED:
        return lw.decide("data.packing", False, f"not set: transformers' {arch.model_type} attention does not "
                                                "separate packed examples")
    if not isinstance(max_length, int):
        return lw.decide("data.packing", False, "not set, and `max_length` is not set: rows are padded per batch")
    files = [r.local_path("data.train", v) for v in (r.value("data.train") or ())]
    samples = [sample_lengths(p) for p in files if p is not None]
    if not samples or any(s is None for s in samples) or len(samples) != len(files):
        return lw.decide("data.packing", False, "not set, and the example lengths cannot be sampled from the "
                         "training files (only local .jsonl files are): rows are padded per batch")
    median = int(statistics.median(x for s in samples for x in s))
    if median <= SHORT_SHARE * max_length:
        return lw.decide("data.packing", True,
                         f"not set: the median example is ~{median} tokens (estimated from the first rows), under a "
                         f"quarter of max_length {max_length}, so unpacked rows would be mostly padding; packed "
                         f"examples still attend only to themselves")
    return lw.decide("data.packing", False, f"not set: the median example is ~{median} tokens (estimated), at least "
                                            f"a quarter of max_length {max_length}; rows are padded per batch")


def train_switches(lw: Lowering, distributed, hardware) -> dict:
    """The plan's `train.chunked_cross_entropy`, `compile` and `optimizer_impl`, from the lowered
    `distributed` (with its ZeRO stage) and `hardware` sections."""
    r = lw.recipe
    dist = distributed or {}
    chunked = chunked_loss_on(r, lw.architecture, dist.get("strategy"), dist.get("zero"))
    on_cpu = (hardware or {}).get("accelerator") == "cpu"
    if r.value("train.optimizer", "adamw") != "adamw" or dist.get("strategy") == "deepspeed":
        impl = None  # not torch's AdamW: DeepSpeed runs its own fused Adam; the others have one kernel
    else:
        impl = "fused" if fused_optimizer_on(r, on_cpu, dist.get("strategy")) else "foreach"
    return {"chunked_cross_entropy": bool(chunked), "compile": bool(r.value("train.compile", False)),
            "optimizer_impl": impl}


def chunked_loss_requested(recipe, arch) -> bool:
    """`train.chunked_cross_entropy` unless false, for the families whose head the chunked loss takes over, under
    the `sft` objective (TRL's preference trainers compute their own log-probs)."""
    return recipe.value("train.chunked_cross_entropy", AUTO) is not False and arch is not None \
        and arch.model_type in CHUNKED_LOSS_FAMILIES and recipe.value("objective", "sft") == "sft"


def chunked_loss_on(recipe, arch, strategy: str | None, zero: int | None) -> bool:
    """Whether the run uses the chunked loss: requested (or `auto`) for a supported family, and the output head
    not sharded (ZeRO-3, FSDP), where the plain loss lets the wrapper gather it."""
    sharded = strategy == "fsdp" or (strategy == "deepspeed" and zero == 3)
    return chunked_loss_requested(recipe, arch) and not sharded


def fused_optimizer_on(recipe, on_cpu: bool, strategy: str | None) -> bool:
    """Whether the run's AdamW is torch's fused kernel (DeepSpeed runs its own optimizer)."""
    impl = recipe.value("train.optimizer_impl", "auto")
    if strategy == "deepspeed" or recipe.value("train.optimizer", "adamw") != "adamw":
        return False
    return impl == "fused" or (impl == "auto" and not on_cpu)
