"""`ftc.lock`: what the folder was compiled from and what it holds, as sha256 hashes.

JSON has no comments and DeepSpeed rejects unknown keys, so provenance lives here: the recipe and every
`extends` file (hashes of their bytes), the ftc version, and one hash per generated file. `ftc compile
--check` and reviewers use it to see that the folder matches its sources.
"""

from __future__ import annotations

import hashlib

from .canonical import dumps_json


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def lock_file(plan: dict, files: dict[str, bytes]) -> str:
    recipe = plan["recipe"]
    lock = {
        "lock_version": 1,
        "ftc_version": plan["ftc_version"],
        "schema_version": plan["schema_version"],
        "recipe": {"name": recipe["name"], "source": recipe["source"]},
        "sources": [dict(entry) for entry in recipe.get("sources", [])],
        "artifacts": {name: sha256(data) for name, data in sorted(files.items())},
    }
    return dumps_json(lock)
