"""Model ids outside the catalog: config.json from the hub when the network is allowed (a loopback server
through HF_ENDPOINT), cached for the next check; offline, W0701 names the closest catalog id and says how to
provide a config; a misspelt catalog id is an error; `auto` without an estimate takes the safe end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from ftc.compiler.frontend import analyze
from ftc.compiler.models.resolve import closest_catalog_id
from ftc.compiler.pipeline import compile_recipe

from hub_server import HubServer

LLAMA3_8B = {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
             "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
             "tie_word_embeddings": False, "max_position_embeddings": 8192}
# ftc check/estimate in a fresh process: huggingface_hub reads its settings at import; torch must stay out
PROBE = ("import sys; from ftc.cli import main; rc = main(sys.argv[1:]); "
         "sys.stderr.write('HEAVY ' + ' '.join(m for m in ('torch', 'transformers') if m in sys.modules)); sys.exit(rc)")


def recipe(tmp_path, model: str, extra: str = "hardware { gpu = a100-80gb }") -> str:
    (tmp_path / "train.jsonl").write_text('{"text": "hello"}\n' * 16)
    path = tmp_path / "r.ftspec"
    path.write_text(f'model "{model}" {{}}\nmethod lora {{}}\ndata {{ train = "train.jsonl" }}\n'
                    f'train {{ lr = 1e-4; global_batch = 8 }}\n{extra}\n')
    return str(path)


def run_ftc(args, *, endpoint: str, cache, offline: bool = False):
    env = dict(os.environ, HF_HUB_OFFLINE="1" if offline else "0", HF_ENDPOINT=endpoint, HF_HUB_CACHE=str(cache),
               FTC_HUB_TIMEOUT="2")
    env.pop("TRANSFORMERS_OFFLINE", None)
    done = subprocess.run([sys.executable, "-c", PROBE, *args], env=env, capture_output=True, text=True, timeout=120)
    heavy = done.stderr.rsplit("HEAVY", 1)[-1].split()
    return done.returncode, done.stdout, done.stderr, heavy


def test_an_id_outside_the_catalog_resolves_from_the_hub_config_then_from_the_cache(tmp_path):
    path = recipe(tmp_path, "NousResearch/Meta-Llama-3-8B")
    cache = tmp_path / "hub-cache"
    with HubServer({"NousResearch/Meta-Llama-3-8B": LLAMA3_8B}) as hub:
        code, out, err, heavy = run_ftc(["estimate", "--json", path], endpoint=hub.url, cache=cache)
        files = [p for _, p in hub.requests if "/resolve/" in p]
    assert code == 0, err
    assert heavy == []  # torch never imported
    document = json.loads(out)
    assert document["fits"] is True and document["peak_bytes_per_gpu"] > 16 * 2**30  # an 8B model, estimated
    assert "W0701" not in [d["code"] for d in document["diagnostics"]]
    assert files and all(p.endswith("/resolve/main/config.json") for p in files)  # config.json only
    assert list(cache.glob("models--NousResearch--Meta-Llama-3-8B/snapshots/*/config.json"))
    # the server is gone, the hub is not even allowed: the cached config answers
    code, out, err, _ = run_ftc(["estimate", "--json", path], endpoint=hub.url, cache=cache, offline=True)
    assert code == 0 and json.loads(out)["peak_bytes_per_gpu"] == document["peak_bytes_per_gpu"], err


def test_the_hub_without_the_model_and_an_unreachable_hub(tmp_path):
    cache = tmp_path / "hub-cache"
    with HubServer({}) as hub:
        code, _, err, _ = run_ftc(["check", recipe(tmp_path, "meta-llama/Llama-3.1-8B-Instruc")],
                                  endpoint=hub.url, cache=cache)
        assert code == 1 and "error[E0721]" in err and "the hub has no repository" in err
        assert "did you mean `meta-llama/Llama-3.1-8B-Instruct`?" in err
        url = hub.url
    started = time.monotonic()  # nothing listens there any more: a warning, quickly
    code, _, err, _ = run_ftc(["check", recipe(tmp_path, "someone/new-model-7b")], endpoint=url, cache=cache)
    assert code == 0 and "warning[W0701]" in err and "the hub did not answer" in err
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("name, closest", [
    ("NousResearch/Meta-Llama-3-8B", "meta-llama/Meta-Llama-3-8B"),
    ("unsloth/llama-3-8b-Instruct-bnb-4bit", "meta-llama/Meta-Llama-3-8B-Instruct"),
    ("unsloth/gemma-2-9b-it-bnb-4bit", "google/gemma-2-9b-it"),
    ("Qwen/Qwen2-0.5B", "Qwen/Qwen2.5-0.5B"),  # a different model, not a typo: numbers differ
])
def test_offline_w0701_names_the_closest_catalog_id_and_how_to_provide_a_config(tmp_path, name, closest):
    assert closest_catalog_id(name) == (closest, False)
    (warning,) = [d for d in analyze(recipe(tmp_path, name)).diagnostics if d.code == "W0701"]
    assert f"`{closest}`" in warning.help
    assert "config.json" in warning.help and f"huggingface-cli download {name} config.json" in warning.help


@pytest.mark.parametrize("name, meant", [("meta-llama/Llama-3.1-8B-Instruc", "meta-llama/Llama-3.1-8B-Instruct"),
                                         ("Qwen/Qwen2.5-7B-Instrcut", "Qwen/Qwen2.5-7B-Instruct"),
                                         ("mistralai/Mistral-7B-v0.1x", "mistralai/Mistral-7B-v0.1")])
def test_a_misspelt_catalog_id_is_an_error(tmp_path, name, meant):
    errors = [d for d in analyze(recipe(tmp_path, name)).diagnostics if d.is_error]
    assert [d.code for d in errors] == ["E0721"] and errors[0].help == f"did you mean `{meant}`?"
    assert errors[0].span.line == 1


def test_auto_without_an_estimate_takes_the_safe_end(tmp_path):
    compiled = compile_recipe(recipe(tmp_path, "someone/new-model-7b"), out_dir=tmp_path / "out")
    assert compiled.plan["batch"]["micro_batch"] == 1
    assert compiled.plan["train"]["gradient_checkpointing"] is True
    assert [d.code for d in compiled.diagnostics].count("W0722") == 2
    # a known model still gets the estimator's choice, and a cpu run its fixed rule
    known = compile_recipe(recipe(tmp_path, "HuggingFaceTB/SmolLM2-135M"), out_dir=tmp_path / "out")
    assert known.plan["batch"]["micro_batch"] > 1 and "W0722" not in [d.code for d in known.diagnostics]
