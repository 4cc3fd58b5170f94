"""Find a model's architecture: local folder, Hugging Face cache, catalog, then the hub's config.json.

Order: a folder (relative to the recipe) holding `config.json`; the hub cache snapshot for the
id and revision; the built-in catalog; when the network is allowed, config.json from the hub (hub.py).
Anything else is a `ModelNotFound` the checker turns into a located diagnostic, with the catalog id the
name is closest to.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path

from ftc.compiler.models.arch import from_config
from ftc.compiler.models.layout import Architecture, ArchitectureError, InvalidConfig


@dataclass(frozen=True)
class ResolvedModel:
    name: str  # as written in the recipe
    source: str  # "local" | "hf-cache" | "catalog" | "hub"
    config_path: str | None  # the config.json read, None for the catalog
    architecture: Architecture


@dataclass(frozen=True)
class ModelNotFound:
    name: str
    reason: str
    suggestion: str | None = None  # a catalog id close to the name
    unusable_folder: bool = False  # a local folder the run could not load either (missing, no or bad config.json)
    misspelt: bool = False  # `suggestion` is a catalog id this name misspells (same organisation and numbers)
    not_on_hub: bool = False  # the hub answered that it has no such model


@lru_cache(maxsize=1)
def catalog_entries() -> tuple[dict, ...]:
    """The built-in catalog as written: entries of `ids` (the first the one checked) and `config`; read once."""
    text = resources.files("ftc.compiler.models").joinpath("catalog.json").read_text(encoding="utf-8")
    return tuple(json.loads(text)["models"])


@lru_cache(maxsize=1)
def catalog() -> dict[str, dict]:
    """Lower-cased id -> config dict."""
    return {model_id.lower(): entry["config"] for entry in catalog_entries() for model_id in entry["ids"]}


def catalog_ids() -> list[str]:
    return [i for entry in catalog_entries() for i in entry["ids"]]


def hub_cache_dirs() -> list[Path]:
    """Where huggingface_hub keeps downloads, in its own order of precedence."""
    dirs = []
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            dirs.append(Path(os.environ[var]))
    hf_home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface")
    dirs.append(Path(hf_home) / "hub")
    return dirs


def _cached_config(model_id: str, revision: str | None) -> Path | None:
    if "/" not in model_id:
        return None
    folder = "models--" + model_id.replace("/", "--")
    for cache in hub_cache_dirs():
        repo = cache / folder
        if not repo.is_dir():
            continue
        ref = repo / "refs" / (revision or "main")
        if ref.is_file():
            candidate = repo / "snapshots" / ref.read_text().strip() / "config.json"
            if candidate.is_file():
                return candidate
        candidate = repo / "snapshots" / (revision or "") / "config.json"
        if revision and candidate.is_file():
            return candidate
        snapshots = sorted((repo / "snapshots").glob("*/config.json")) if (repo / "snapshots").is_dir() else []
        if snapshots and not revision:
            return snapshots[-1]
    return None


def _shown(path: Path) -> str:
    """A path as a message shows it: relative to the working directory when it lies under it."""
    relative = os.path.relpath(os.path.abspath(path))
    return str(path) if relative.startswith("..") else relative


def _from_file(name: str, path: Path, source: str) -> ResolvedModel | ModelNotFound:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(config, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        return ModelNotFound(name, f"cannot read {_shown(path)}: {exc}", unusable_folder=source == "local")
    config = config.get("text_config", config) if "model_type" not in config else config
    try:
        return ResolvedModel(name, source, str(path), from_config(config))
    except InvalidConfig as exc:  # a local folder the run could not load either
        return ModelNotFound(name, f"{_shown(path)}: {exc}", unusable_folder=source == "local")
    except ArchitectureError as exc:
        return ModelNotFound(name, str(exc))


def local_path(name: str, base_dir: str | os.PathLike | None) -> Path:
    """Where `name` would be as a local folder: `~` expanded, relative to `base_dir` (the recipe's folder)."""
    expanded = os.path.expanduser(name)
    return Path(expanded) if os.path.isabs(expanded) else Path(base_dir or ".") / expanded


def is_local_model(name: str, base_dir: str | os.PathLike | None) -> bool:
    """A folder next to the recipe (or a name spelled as a path) is local; anything else is a hub id."""
    return name.startswith((".", "/", "~")) or local_path(name, base_dir).is_dir()


def resolve_model(name: str, base_dir: str | os.PathLike | None = None,
                  revision: str | None = None) -> ResolvedModel | ModelNotFound:
    """Resolve `name` (hub id or local folder) to its architecture; the network only for an id that nothing
    local knows, and only when it is allowed."""
    if is_local_model(name, base_dir):
        local = local_path(name, base_dir)
        if not local.is_dir():
            return ModelNotFound(name, f"no folder {_shown(local)}", unusable_folder=True)
        config = local / "config.json"
        if config.is_file():
            return _from_file(name, config, "local")
        return ModelNotFound(name, f"the folder {_shown(local)} has no config.json", unusable_folder=True)
    cached = _cached_config(name, revision if revision not in (None, "main") else None)
    if cached is not None:
        return _from_file(name, cached, "hf-cache")
    entry = catalog().get(name.lower())
    if entry is not None:
        return ResolvedModel(name, "catalog", None, from_config(entry))
    from ftc.compiler.models import hub

    guess, misspelt = closest_catalog_id(name)
    where = f"`{name}` is not a local folder, not in the Hugging Face cache and not in the built-in catalog"
    if not hub.network_allowed():
        return ModelNotFound(name, where + " (HF_HUB_OFFLINE=1: the hub was not asked)", guess, misspelt=misspelt)
    answer = hub.fetch_config(name, revision)
    if answer.path is not None:
        resolved = _from_file(name, answer.path, "hub")
        return replace(resolved, unusable_folder=False) if isinstance(resolved, ModelNotFound) else resolved
    return ModelNotFound(name, f"{where}; {answer.reason}", guess, misspelt=misspelt and not answer.path,
                         not_on_hub=answer.missing)


# Suffixes re-uploads add to an original's name: quantized copies, GGUF/AWQ/GPTQ exports, Unsloth's builds.
_COPY_SUFFIX = re.compile(r"(-unsloth)?(-bnb)?-(4|8)bit$|-(gguf|awq|gptq|gptq-int4|gptq-int8|fp8|exl2|mlx)$",
                          re.IGNORECASE)


def _base_name(model_id: str) -> str:
    """The name without its organisation and without a copy's suffix, lower-cased."""
    base = model_id.rpartition("/")[2]
    while _COPY_SUFFIX.search(base):
        base = _COPY_SUFFIX.sub("", base)
    return base.lower()


def closest_catalog_id(name: str) -> tuple[str | None, bool]:
    """(catalog id, misspelt): the original a re-upload copies (`NousResearch/Meta-Llama-3-8B` ->
    `meta-llama/Meta-Llama-3-8B`), else the id whose name is within two edits. `misspelt` when the
    organisation and every number agree, so only letters differ (`meta-llama/Llama-3.1-8B-Instruc`):
    `Qwen/Qwen2-0.5B` is a different model than `Qwen/Qwen2.5-0.5B`, not a typo of it."""
    from ftc.compiler.diagnostics import edit_distance

    by_base: dict[str, str] = {}
    for entry in catalog_entries():
        for model_id in entry["ids"]:  # a short alias (`Llama-3-8B-Instruct`) stands for its hub id
            hub_ids = [i for i in entry["ids"] if "/" in i]
            hub_id = model_id if "/" in model_id else next(
                (i for i in hub_ids if _base_name(i).endswith(_base_name(model_id))), hub_ids[0] if hub_ids else model_id)
            by_base.setdefault(_base_name(model_id), hub_id)
    base = _base_name(name)
    if base in by_base:
        return by_base[base], False
    scored = sorted((edit_distance(base, other), other) for other in by_base)
    if not scored or scored[0][0] > 3:
        return None, False
    distance, other = scored[0]
    found = by_base[other]
    same_org = name.rpartition("/")[0].lower() == found.rpartition("/")[0].lower()
    misspelt = same_org and distance <= 2 and re.findall(r"\d+", base) == re.findall(r"\d+", other)
    return found, misspelt
