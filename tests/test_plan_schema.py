"""The plan contract stays in one piece: the JSON Schema is valid, and docs/plan.md names every key it has."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((REPO / "plan" / "schema.json").read_text())
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
    from ftc.plan import SCHEMA_VERSION

    assert SCHEMA["properties"]["schema_version"] == {"const": SCHEMA_VERSION}


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


def _object(schema: dict) -> dict:
    return next(v for v in schema.get("anyOf", [schema]) if v.get("type") == "object")


def test_typed_sections_hold_exactly_the_schema_keys():
    """ftc.plan's frozen sections and plan/schema.json name the same keys, at every level they type."""
    from ftc.plan import sections

    for name, cls in sections.SECTIONS.items():
        schema = _object(SCHEMA["properties"][name])
        assert sections.section_fields(cls) == set(schema["properties"]), name
        for field in dataclasses.fields(cls):
            nested = field.metadata.get("section")
            if nested is not None:
                sub = schema["properties"][field.name]
                sub = _object(sub["items"] if sub.get("type") == "array" else sub)
                assert sections.section_fields(nested) == set(sub["properties"]), f"{name}.{field.name}"
    top = {f.name for f in dataclasses.fields(sections.Plan)} - {"text", "folder"}
    assert top == set(SCHEMA["properties"])


def test_schema_version_is_defined_once():
    from ftc.plan import SCHEMA_VERSION, read_schema

    assert read_schema()["properties"]["schema_version"] == {"const": SCHEMA_VERSION}
    code = [p for d in ("plan", "compiler", "runtime", "ftc") for p in (REPO / d).rglob("*.py")]
    hits = [p for p in code if re.search(r"^SCHEMA_VERSION\s*=", p.read_text(), re.M)]
    assert [p.relative_to(REPO).as_posix() for p in hits] == ["plan/contract.py"]


def test_hand_written_plan_cases_validate():
    from plan_cases import cases

    from ftc.plan import plan_errors

    for name, plan in cases().items():
        assert plan_errors(plan) == [], name
