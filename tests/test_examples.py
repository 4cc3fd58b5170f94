"""Every shipped recipe is a real, checked, formatted use (like torchtune's test over all configs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftc.compiler.frontend import analyze
from ftc.compiler.schema import AUTO
from ftc.compiler.units import Amount

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ALL = sorted(EXAMPLES.glob("*.ftspec"))


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_example_checks_clean(path):
    analysis = analyze(path)
    assert analysis.ok, [f"{d.code} {d.message}" for d in analysis.diagnostics]
    assert not [d for d in analysis.diagnostics if d.severity.value == "warning"]


def recipe(name):
    analysis = analyze(EXAMPLES / name)
    assert analysis.ok
    return analysis.recipe


def test_examples_cover_the_documented_uses():
    full = recipe("llama2-7b-full-zero3.ftspec")
    assert (full.value("method"), full.value("distributed"), full.value("distributed.zero")) == ("full", "deepspeed", 3)
    assert (full.value("hardware.gpu"), full.value("hardware.gpus_per_node"), full.value("hardware.nodes")) == \
        ("a100-80gb", 8, 2)

    lora = recipe("llama2-7b-lora-a100-40gb.ftspec")
    assert (lora.value("method"), lora.value("hardware.gpu"), lora.value("hardware.gpus_per_node")) == \
        ("lora", "a100-40gb", 1)

    qlora = recipe("llama2-7b-qlora-24gb-sweep.ftspec")
    assert qlora.value("method") == "qlora" and qlora.value("method.quant") == "nf4"
    assert qlora.value("hardware.memory_per_gpu") == 24 * 10**9
    assert {p.target for p in qlora.sweep} == {"train.lr", "method.rank", "train.warmup"}

    ddp = recipe("lora-ddp-2gpu.ftspec")
    assert (ddp.value("method"), ddp.value("distributed"), ddp.value("hardware.gpus_per_node")) == ("lora", "ddp", 2)
    assert ddp.provenance("train.lr") == "inherited"

    auto = recipe("llama3-70b-lora-auto.ftspec")
    assert not auto.is_set("distributed") and auto.value("train.micro_batch") is AUTO
    assert (auto.value("method"), auto.world_size(), auto.strategy()) == ("lora", 4, "fsdp")

    tiny = recipe("tiny.ftspec")
    assert tiny.value("hardware.accelerator") == "cpu"
    assert (tiny.resolve_path("model", "tiny/model") / "config.json").is_file()
    assert tiny.value("train.max_steps") == Amount(60, "steps")


def test_preference_examples():
    dpo = recipe("llama3-8b-dpo-lora-a100.ftspec")
    assert (dpo.value("objective"), dpo.value("method"), dpo.value("hardware.gpu")) == ("dpo", "lora", "a100-80gb")
    orpo = recipe("mistral-7b-orpo-qlora-24gb.ftspec")
    assert (orpo.value("objective"), orpo.value("method"), orpo.value("hardware.memory_per_gpu")) == \
        ("orpo", "qlora", 24 * 10**9)
    for name, objective, fmt in (("tiny-dpo.ftspec", "dpo", "preference"),
                                 ("tiny-kto.ftspec", "kto", "unpaired_preference")):
        tiny = recipe(name)
        assert (tiny.value("objective"), tiny.value("data.format"), tiny.value("hardware.accelerator")) == \
            (objective, fmt, "cpu")
