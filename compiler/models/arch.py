"""Architecture facts from a `config.json` dict: the family's builder, then the checks a model's sizes pass.

`from_config` is the one entry point; the layout types live in `layout.py` and the builders in
`families.py`.
"""

from __future__ import annotations

from dataclasses import replace

from ftc.compiler.models.families import BUILDERS
from ftc.compiler.models.layout import Architecture, ArchitectureError, InvalidConfig

SUPPORTED_TYPES = tuple(BUILDERS)


def from_config(config: dict) -> Architecture:
    """Build the Architecture for a config.json dict; raises ArchitectureError when not understood,
    a value of the wrong type or size included (a hand-edited config must not crash the compiler)."""
    if not isinstance(config, dict):
        raise ArchitectureError("the config is not a JSON object")
    model_type = config.get("model_type")
    builder = BUILDERS.get(model_type) if isinstance(model_type, str) else None
    if builder is None:
        raise ArchitectureError(f"model_type {model_type!r} is not supported "
                                f"(supported: {', '.join(SUPPORTED_TYPES)})")
    try:
        arch = builder(config)
    except ArchitectureError:
        raise
    except (TypeError, ValueError, ArithmeticError, AttributeError, LookupError) as exc:
        raise InvalidConfig(f"the {model_type} config has a value ftc cannot read: {exc}") from exc
    return replace(_checked(arch), checkpoint_dtype=_checkpoint_dtype(config))


CHECKPOINT_DTYPES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}


def _checkpoint_dtype(config: dict) -> str | None:
    """`torch_dtype` (or transformers 5's `dtype`) as the recipe spells dtypes; None when absent or other."""
    value = config.get("dtype", config.get("torch_dtype"))
    return CHECKPOINT_DTYPES.get(value) if isinstance(value, str) else None


def _checked(arch: Architecture) -> Architecture:
    """Sizes a model can have: positive, and query heads in whole groups per key/value head."""
    for name in ("hidden", "layers", "intermediate", "heads", "kv_heads", "head_dim", "vocab"):
        value = getattr(arch, name)
        if value <= 0:
            raise InvalidConfig(f"the {arch.model_type} config gives {name} = {value}; it must be positive")
    if arch.heads % arch.kv_heads:
        raise InvalidConfig(f"the {arch.model_type} config has {arch.heads} attention heads, not a multiple "
                            f"of its {arch.kv_heads} key/value heads")
    if any(m.d_in <= 0 or m.d_out <= 0 for m in arch.layer_linears + arch.tower_linears):
        raise InvalidConfig(f"the {arch.model_type} config gives a projection of size zero or less")
    return arch
