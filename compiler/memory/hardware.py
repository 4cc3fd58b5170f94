"""GPU names -> device memory in bytes.

Values are the total memory the driver reports (nvidia-smi / rocm-smi "total"), in MiB, for the
common SKU of each name. The estimate counts the CUDA context itself, so the budget is the total.
Anything not listed is given with `memory_per_gpu`.
"""

from __future__ import annotations

MiB = 2**20
GiB = 2**30

# canonical name -> (MiB, display name)
GPUS: dict[str, tuple[int, str]] = {
    "a100-40gb": (40960, "NVIDIA A100 40GB"),
    "a100-80gb": (81920, "NVIDIA A100 80GB"),
    "a800-80gb": (81920, "NVIDIA A800 80GB"),
    "h100-80gb": (81559, "NVIDIA H100 80GB"),
    "h100-94gb": (95830, "NVIDIA H100 NVL 94GB"),
    "h200": (143771, "NVIDIA H200 141GB"),
    "b200": (183359, "NVIDIA B200 180GB"),
    "l4": (23034, "NVIDIA L4 24GB"),
    "l40s": (46068, "NVIDIA L40S 48GB"),
    "l40": (46068, "NVIDIA L40 48GB"),
    "a10g": (23028, "NVIDIA A10G 24GB"),
    "a10": (23028, "NVIDIA A10 24GB"),
    "a40": (46068, "NVIDIA A40 48GB"),
    "t4": (15360, "NVIDIA T4 16GB"),
    "v100-16gb": (16384, "NVIDIA V100 16GB"),
    "v100-32gb": (32768, "NVIDIA V100 32GB"),
    "rtx-3090": (24576, "NVIDIA GeForce RTX 3090"),
    "rtx-4090": (24564, "NVIDIA GeForce RTX 4090"),
    "rtx-5090": (32607, "NVIDIA GeForce RTX 5090"),
    "rtx-a6000": (49140, "NVIDIA RTX A6000"),
    "rtx-6000-ada": (49140, "NVIDIA RTX 6000 Ada"),
    "mi250": (65536, "AMD Instinct MI250 (one GCD, 64 GB)"),
    "mi250x": (65536, "AMD Instinct MI250X (one GCD, 64 GB)"),
    "mi300x": (196592, "AMD Instinct MI300X 192GB"),
}

ALIASES = {
    "a100": None,  # ambiguous: 40 or 80 GB
    "a100-40g": "a100-40gb", "a100-80g": "a100-80gb", "a100-sxm4-40gb": "a100-40gb",
    "a100-sxm4-80gb": "a100-80gb", "a100-pcie-40gb": "a100-40gb", "a100-pcie-80gb": "a100-80gb",
    "h100": "h100-80gb", "h100-sxm": "h100-80gb", "h100-pcie": "h100-80gb", "h100-nvl": "h100-94gb",
    "h200-141gb": "h200", "l40s-48gb": "l40s", "a10g-24gb": "a10g", "t4-16gb": "t4",
    "v100": None,  # ambiguous: 16 or 32 GB
    "3090": "rtx-3090", "4090": "rtx-4090", "rtx3090": "rtx-3090", "rtx4090": "rtx-4090",
    "5090": "rtx-5090", "rtx5090": "rtx-5090", "b200-180gb": "b200",
    "a6000": "rtx-a6000", "rtxa6000": "rtx-a6000", "mi300": "mi300x",
}


def normalize(name: str) -> str:
    key = name.strip().lower().replace("_", "-").replace(" ", "-")
    for prefix in ("nvidia-", "amd-", "geforce-", "instinct-"):
        if key.startswith(prefix):
            key = key[len(prefix):]
    return key.replace("geforce-", "")


def lookup(name: str) -> str | None:
    """The canonical catalog name, or None when unknown or ambiguous."""
    key = normalize(name)
    if key in GPUS:
        return key
    return ALIASES.get(key)


def gpu_memory(name: str) -> int:
    """Bytes of memory of the named GPU; KeyError when the name is unknown or ambiguous."""
    key = lookup(name)
    if key is None:
        raise KeyError(name)
    return GPUS[key][0] * MiB


# Before Ampere NVIDIA GPUs have no bfloat16 arithmetic; transformers' Trainer refuses `bf16=True` on them.
NO_BF16 = frozenset({"t4", "v100-16gb", "v100-32gb"})


def supports_bf16(name: str) -> bool:
    return lookup(name) not in NO_BF16


def vendor(name: str) -> str:
    return "amd" if GPUS[name][1].startswith("AMD") else "nvidia"


def smallest_holding(nbytes: int, like: str | None = None) -> str | None:
    """The catalog GPU with the least memory that still holds `nbytes`, from the vendor of `like` (a catalog
    name: the same software stack) when one does, or None when none does."""
    holding = [name for mib, name in sorted((mib, name) for name, (mib, _) in GPUS.items()) if mib * MiB >= nbytes]
    known = lookup(like) if like is not None else None
    same = [name for name in holding if known is None or vendor(name) == vendor(known)]
    return (same or holding or [None])[0]


def known_names() -> list[str]:
    return sorted(GPUS)


def is_ambiguous(name: str) -> bool:
    key = normalize(name)
    return key in ALIASES and ALIASES[key] is None
