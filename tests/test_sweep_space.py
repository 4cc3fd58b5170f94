"""Sampling: each distribution goes to its optuna call, and the drawn value goes back to the compiler as
`--set` text in the language's own spelling, which reads back as the same value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftc.compiler.frontend import analyze
from ftc.compiler.units import Amount
from ftc.compiler.spelling import spell
from ftc.orchestrate.sweep import override, sample
from ftc.runtime.sweep import Dimension, space_from_params, space_from_plan, suggest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TINY = EXAMPLES / "tiny.ftspec"


class RecordingTrial:
    """Stands in for an optuna trial: records the call and answers the low bound / first choice."""

    def __init__(self):
        self.calls = []

    def suggest_float(self, name, low, high, *, log=False):
        self.calls.append(("suggest_float", name, low, high, {"log": log}))
        return low

    def suggest_int(self, name, low, high):
        self.calls.append(("suggest_int", name, low, high, {}))
        return low

    def suggest_categorical(self, name, choices):
        self.calls.append(("suggest_categorical", name, choices, None, {}))
        return choices[0]


@pytest.mark.parametrize("dim, call, text", [
    (Dimension("train.lr", "loguniform", (1e-5, 5e-4)), ("suggest_float", "train.lr", 1e-5, 5e-4, {"log": True}),
     "train.lr=1e-05"),
    (Dimension("method.dropout", "uniform", (0.0, 0.2)), ("suggest_float", "method.dropout", 0.0, 0.2, {"log": False}),
     "method.dropout=0.0"),
    (Dimension("train.warmup", "int", (10, 100), "steps"), ("suggest_int", "train.warmup", 10, 100, {}),
     "train.warmup=10 steps"),
    (Dimension("method.alpha", "int", (8.0, 32.0)), ("suggest_int", "method.alpha", 8, 32, {}), "method.alpha=8"),
    (Dimension("method.rank", "choice", (8, 16, 32)), ("suggest_categorical", "method.rank", [8, 16, 32], None, {}),
     "method.rank=8"),
    (Dimension("train.warmup", "uniform", (0.01, 0.1), "ratio"),
     ("suggest_float", "train.warmup", 0.01, 0.1, {"log": False}), "train.warmup=1%"),
])
def test_distribution_maps_to_its_optuna_call_and_override(dim, call, text):
    trial = RecordingTrial()
    params, overrides = sample(trial, (dim,))
    assert trial.calls == [call]
    assert type(trial.calls[0][2]) is type(call[2])  # suggest_int gets ints, not 8.0
    assert overrides == (text,)
    assert override(dim, params[dim.target]) == text


def test_spelling_of_values():
    assert spell(3.1e-05) == "3.1e-05"
    assert spell(0.0031622776601683794) == "0.0031622776601683794"
    assert spell(37, "steps") == "37 steps"
    assert spell(512, "tokens") == "512 tokens"
    assert spell(0.05, "ratio") == "5%"
    assert spell(0.07 * 1.0000000001, "ratio") == "7.0000000007%"
    assert spell(16) == "16" and spell(True) == "true" and spell("nf4") == "nf4"
    assert spell("a b") == '"a b"'
    assert spell(["q_proj", "v_proj"]) == "[q_proj, v_proj]" and spell([8, 16]) == "[8, 16]"


def test_plan_space_equals_the_compilers_typed_params():
    from ftc.compiler.pipeline import compile_recipe

    recipe = EXAMPLES / "llama2-7b-qlora-24gb-sweep.ftspec"
    compiled = compile_recipe(recipe)
    assert compiled.ok
    from_plan = {d.target: d for d in space_from_plan(json.loads(json.dumps(compiled.plan))["sweep"]["space"])}
    from_params = {d.target: d for d in space_from_params(analyze(recipe).recipe.sweep)}
    assert from_plan == from_params
    assert from_plan["train.warmup"] == Dimension("train.warmup", "int", (10, 100), "steps")
    assert from_plan["method.rank"] == Dimension("method.rank", "choice", (8, 16, 32, 64), None)


def test_drawn_values_read_back_as_the_same_values(tmp_path):
    """Real optuna draws, written as --set text, typed by the real compiler: the recipe gets exactly them."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = (Dimension("train.lr", "loguniform", (1e-5, 5e-3)),
             Dimension("method.dropout", "uniform", (0.0, 0.3)),
             Dimension("method.alpha", "int", (4, 64)),
             Dimension("method.rank", "choice", (4, 8, 16)),
             Dimension("train.warmup", "int", (1, 20), "steps"),
             Dimension("data.max_length", "choice", (64, 128)))
    ratio = Dimension("train.warmup", "uniform", (0.01, 0.2), "ratio")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(4):
        trial = study.ask()
        params, overrides = sample(trial, space)
        analysis = analyze(TINY, overrides)
        assert analysis.ok, [d.message for d in analysis.diagnostics]
        r = analysis.recipe
        assert r.value("train.lr") == params["train.lr"]
        assert r.value("method.dropout") == params["method.dropout"]
        assert r.value("method.alpha") == params["method.alpha"]
        assert r.value("method.rank") == params["method.rank"]
        assert r.value("train.warmup") == Amount(params["train.warmup"], "steps")
        assert r.value("data.max_length") == params["data.max_length"]
        assert all(r.provenance(d.target) == "override" for d in space)
        other = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=trial.number)).ask()
        share = suggest(other, ratio)
        typed = analyze(TINY, (override(ratio, share),)).recipe.value("train.warmup")
        assert typed.unit == "ratio" and typed.value == pytest.approx(share, rel=1e-11)
