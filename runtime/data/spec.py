"""The `data` section of the plan as a frozen value, checked once at the door."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import DataError

FORMATS = ("text", "completion", "instruction", "chat", "preference", "unpaired_preference")
DEDUP = ("none", "exact", "near")
TRAIN_ON = ("all", "completions")
ON_BAD_ROWS = ("error", "skip")
TRUNCATION = ("right", "left", "drop")
OPTIONAL = ("chat_template", "roles", "max_samples", "eval_rows")  # in the plan only when the recipe sets them


def _as_list(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


@dataclass(frozen=True)
class DataSpec:
    train: tuple[str, ...]
    eval: tuple[str, ...]
    eval_split: float
    format: str
    columns: tuple[tuple[str, str], ...]
    max_length: int
    max_prompt_length: int | None  # preference formats: prompt tokens kept (their end)
    packing: bool
    dedup: str
    near_dedup_threshold: float
    train_on: str
    on_bad_rows: str
    truncation: str
    seed: int
    cache_dir: str | None
    # keys the plan holds only when the recipe sets them (absent means unset, not a default)
    chat_template: tuple[tuple[str, str], ...] = ()  # (("name", "chatml"),) or (("file", "path"),)
    roles: tuple[tuple[str, str], ...] = ()  # (role, the name the data uses for it)
    max_samples: int | None = None  # training rows kept after dedup, before the split
    eval_rows: int | None = None  # eval_split as a row count
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def from_plan(cls, data: dict) -> "DataSpec":
        """Build from the plan's `data` section, which holds every setting (the compiler wrote the language's
        defaults into it; none is restated here). Unknown keys are kept aside but not used."""
        if not isinstance(data, dict):
            raise DataError("the plan's `data` section must be an object")
        known = [f for f in cls.__dataclass_fields__ if f != "extra"]
        missing = [k for k in known if k not in data and k not in OPTIONAL]
        if missing:
            raise DataError(f"the plan's `data` section lacks {', '.join(missing)}; recompile the recipe")
        columns = data["columns"]
        if not isinstance(columns, dict):
            raise DataError("data.columns must map roles to column names")
        if data["max_length"] is None:
            raise DataError("data.max_length is not set; recompile the recipe")
        roles = data.get("roles") or {}
        template = data.get("chat_template") or {}
        if not isinstance(roles, dict) or not isinstance(template, dict):
            raise DataError("data.roles and data.chat_template must be objects")
        spec = cls(
            train=_as_list(data["train"]),
            eval=_as_list(data["eval"]),
            eval_split=float(data["eval_split"]),
            format=str(data["format"]),
            columns=tuple(sorted((str(k), str(v)) for k, v in columns.items())),
            max_length=int(data["max_length"]),
            max_prompt_length=None if data.get("max_prompt_length") is None else int(data["max_prompt_length"]),
            packing=bool(data["packing"]),
            dedup=str(data["dedup"]),
            near_dedup_threshold=float(data["near_dedup_threshold"]),
            train_on=str(data["train_on"]),
            on_bad_rows=str(data["on_bad_rows"]),
            truncation=str(data["truncation"]),
            seed=int(data["seed"]),
            cache_dir=data["cache_dir"],
            chat_template=tuple(sorted((str(k), str(v)) for k, v in template.items() if v is not None)),
            roles=tuple(sorted((str(k), str(v)) for k, v in roles.items())),
            max_samples=None if data.get("max_samples") is None else int(data["max_samples"]),
            eval_rows=None if data.get("eval_rows") is None else int(data["eval_rows"]),
            extra={k: v for k, v in data.items() if k not in known},
        )
        spec.check()
        return spec

    def check(self) -> None:
        if not self.train:
            raise DataError("data.train names no source")
        for name, value, allowed in (("format", self.format, FORMATS), ("dedup", self.dedup, DEDUP),
                                     ("train_on", self.train_on, TRAIN_ON),
                                     ("on_bad_rows", self.on_bad_rows, ON_BAD_ROWS),
                                     ("truncation", self.truncation, TRUNCATION)):
            if value not in allowed:
                raise DataError(f"data.{name} = {value!r} is not one of {', '.join(allowed)}")
        if not 0.0 <= self.eval_split < 1.0:
            raise DataError(f"data.eval_split = {self.eval_split} must be in [0, 1)")
        if self.max_length < 2:
            raise DataError(f"data.max_length = {self.max_length} is too small")
        for name, value in (("max_samples", self.max_samples), ("eval_rows", self.eval_rows)):
            if value is not None and value < 1:
                raise DataError(f"data.{name} = {value} must be at least 1")
        if not 0.0 < self.near_dedup_threshold <= 1.0:
            raise DataError(f"data.near_dedup_threshold = {self.near_dedup_threshold} must be in (0, 1]")

    @property
    def column_map(self) -> dict[str, str]:
        return dict(self.columns)

    @property
    def role_names(self) -> dict[str, str]:
        """The data's name for a role -> the role (`roles { assistant = "gpt" }` -> {"gpt": "assistant"})."""
        return {name: role for role, name in self.roles}

    @property
    def template_spec(self) -> dict | None:
        return dict(self.chat_template) or None

    def key_fields(self) -> dict:
        """The settings that change the prepared data (the cache key); sources are hashed separately."""
        d = asdict(self)
        for k in ("train", "eval", "cache_dir", "extra"):
            d.pop(k)
        return d
