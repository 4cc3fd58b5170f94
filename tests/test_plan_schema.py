"""The plan contract stays in one piece: the JSON Schema is valid, and docs/plan.md names every key it has."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((REPO / "compiler" / "plan.schema.json").read_text())
DOC = (REPO / "docs" / "plan.md").read_text()


def _keys(schema: dict, prefix: str = "", depth: int = 2):
    for variant in schema.get("anyOf", [schema]):
        for key, sub in variant.get("properties", {}).items():
            yield prefix + key
            if depth > 1:
                yield from _keys(sub, prefix + key + ".", depth - 1)


def test_schema_is_valid_draft_2020_12():
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["properties"]["schema_version"] == {"const": 1}


@pytest.mark.parametrize("key", sorted(set(_keys(SCHEMA))))
def test_every_schema_key_is_documented(key):
    name = key.rsplit(".", 1)[-1]
    assert f'"{name}"' in DOC or f"`{name}`" in DOC, f"docs/plan.md does not mention `{key}`"


def test_top_level_keys_are_all_required():
    assert sorted(SCHEMA["required"]) == sorted(SCHEMA["properties"])
    assert SCHEMA["additionalProperties"] is False


def test_schema_rejects_auto_and_broken_batch_types():
    jsonschema = pytest.importorskip("jsonschema")
    from plan_cases import plan_with

    validator = jsonschema.Draft202012Validator(SCHEMA)
    assert validator.is_valid(plan_with())
    assert not validator.is_valid(plan_with(batch={"micro_batch": "auto"}))
    assert not validator.is_valid(plan_with(distributed={"zero": "auto"}))
    assert not validator.is_valid(plan_with(train={"gradient_checkpointing": "auto"}))
    assert not validator.is_valid(plan_with(launch={"env": {"bad name": "x"}}))
