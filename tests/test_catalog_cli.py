"""`ftc catalog`: every model id and GPU name the compiler resolves on its own, as a table or JSON."""

from __future__ import annotations

import json

import pytest

from ftc.cli import main
from ftc.compiler.memory import hardware
from ftc.compiler.models.params import count
from ftc.compiler.models.resolve import ResolvedModel, catalog_ids, resolve_model


def test_json_lists_every_id_and_gpu_as_the_compiler_resolves_them(capsys):
    assert main(["catalog", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [i for row in document["models"] for i in row["ids"]] == catalog_ids()
    for row in document["models"]:
        resolved = resolve_model(row["ids"][0])
        assert isinstance(resolved, ResolvedModel) and resolved.source == "catalog"
        assert row["params"] == count(resolved.architecture, "full").total
        assert row["model_type"] == resolved.architecture.model_type
    assert "granite" in document["model_types"] and {r["model_type"] for r in document["models"]} <= set(
        document["model_types"])
    assert [g["name"] for g in document["gpus"]] == list(hardware.GPUS)
    for gpu in document["gpus"]:
        assert all(hardware.gpu_memory(name) == gpu["memory_bytes"] for name in [gpu["name"], *gpu["aliases"]])


@pytest.mark.parametrize("part, present, absent", [
    ("models", ["meta-llama/Llama-2-7b-hf", "6.74B", "openai/gpt-oss-20b", "starcoder2"], ["a100-80gb"]),
    ("gpus", ["a100-80gb", "79.6 GiB", "h100-nvl"], ["meta-llama/Llama-2-7b-hf"]),
])
def test_table_of_one_part(part, present, absent, capsys):
    assert main(["catalog", part]) == 0
    out = capsys.readouterr().out
    assert all(text in out for text in present) and not any(text in out for text in absent)


def test_unknown_part_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["catalog", "lamas"])
    assert info.value.code == 2 and "invalid choice" in capsys.readouterr().err
