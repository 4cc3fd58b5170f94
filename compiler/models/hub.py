"""A model id outside the catalog: its config.json from the hub, when the network is allowed.

Only config.json is fetched (with huggingface_hub, into its cache, so the next check reads it offline), with
a short timeout; nothing here imports torch. `HF_HUB_OFFLINE=1` means no request at all; `HF_ENDPOINT`
names the hub (a mirror, or a test server).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

TIMEOUT_S = 5.0  # seconds to wait for the hub before treating it as unreachable (FTC_HUB_TIMEOUT overrides)
_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class HubAnswer:
    path: Path | None  # the cached config.json, None when the hub did not give one
    reason: str = ""  # why not, for a diagnostic's note
    missing: bool = False  # the hub answered that the repository, revision or file does not exist


def network_allowed() -> bool:
    return not any(os.environ.get(v, "").lower() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def fetch_config(model_id: str, revision: str | None) -> HubAnswer:
    """config.json of `model_id` at `revision` through the hub's file route, cached; never raises."""
    from ftc.compiler.models.resolve import hub_cache_dirs

    endpoint = os.environ.get("HF_ENDPOINT") or None
    timeout = float(os.environ.get("FTC_HUB_TIMEOUT") or TIMEOUT_S)
    return _fetch(model_id, revision or "main", endpoint, str(hub_cache_dirs()[0]), timeout)


@lru_cache(maxsize=64)
def _fetch(model_id: str, revision: str, endpoint: str | None, cache_dir: str, timeout: float) -> HubAnswer:
    try:
        from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
        from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, LocalEntryNotFoundError,
                                            RepositoryNotFoundError, RevisionNotFoundError)
    except ImportError:
        return HubAnswer(None, "huggingface_hub is not installed, so the hub cannot be asked")
    try:  # one HEAD without retries first: an unreachable hub costs one timeout, not a backoff
        get_hf_file_metadata(hf_hub_url(model_id, "config.json", revision=revision, endpoint=endpoint),
                             timeout=timeout, endpoint=endpoint, retry_on_errors=False)
        path = hf_hub_download(model_id, "config.json", revision=revision, cache_dir=cache_dir,
                               endpoint=endpoint, etag_timeout=timeout)
        return HubAnswer(Path(path))
    except GatedRepoError:
        return HubAnswer(None, f"`{model_id}` is gated on the hub: log in (`huggingface-cli login`) with an "
                               "account that was granted access")
    except LocalEntryNotFoundError as exc:  # (an EntryNotFoundError, but raised when the hub did not answer)
        return HubAnswer(None, f"the hub did not answer ({_first_line(exc)})")
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as exc:
        what = {RevisionNotFoundError: f"revision `{revision}`"}.get(type(exc), "repository")
        if isinstance(exc, EntryNotFoundError):
            what = "config.json"
        return HubAnswer(None, f"the hub has no {what} for `{model_id}`", missing=True)
    except Exception as exc:  # noqa: BLE001 - unreachable, timed out, refused: the check goes on without it
        return HubAnswer(None, f"the hub did not answer ({type(exc).__name__}: {_first_line(exc)})")


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
