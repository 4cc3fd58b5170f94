"""Shared helpers of the multi-process tests: recipes for the tiny model, compiling, running `ftc run`
with a private rendezvous port, reading a run's losses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "examples" / "tiny"

DISTRIBUTED = {
    "ddp": "distributed ddp {}",
    "zero2": "distributed deepspeed {\n  zero = 2\n}",
    "zero3": "distributed deepspeed {\n  zero = 3\n  offload_optimizer = cpu\n  offload_params = cpu\n}",
    "zero3-optimizer-offload": "distributed deepspeed {\n  zero = 3\n  offload_optimizer = cpu\n}",
    "fsdp": "distributed fsdp {}",
    "none": "",
}


LORA = """method lora {
  rank    = 8
  alpha   = 16
  dropout = 0.0
  targets = all_linear
}"""

QLORA = LORA.replace("method lora {", "method qlora {").replace("all_linear\n", "all_linear\n  quant   = nf4\n")


def recipe_text(name: str, strategy: str, *, processes: int = 2, nodes: int = 1, max_steps: int = 4,
                every: int = 2, full: bool = False, qlora: bool = False, objective: str | None = None) -> str:
    """The tiny model with LoRA (fp32, lr 2e-3; `qlora`: on its NF4-quantized base) or full fine-tuning
    (bf16, lr 1e-4), `max_steps` steps of global batch 8 (micro 4): 2 ranks x 4, or 1 rank x 4 x 2.
    `objective`: a preference objective block (`objective dpo {}`) over the tiny preference pairs."""
    train = TINY / "data" / ("preference.jsonl" if objective else "train.jsonl")
    return f"""recipe "{name}"

model "{TINY / 'model'}" {{
  dtype = {"bf16" if full else "fp32"}
}}

{"method full {}" if full else QLORA if qlora else LORA}

{objective or ""}

data {{
  train      = "{train}"
  format     = {"preference" if objective else "chat"}
  max_length = 128
  packing    = false
}}

train {{
  max_steps    = {max_steps} steps
  lr           = {"1e-4" if full else "2e-3"}
  schedule     = constant
  warmup       = 0 steps
  global_batch = 8
  micro_batch  = 4
  optimizer    = adamw
  seed         = 42
  log_every    = 1 steps
}}

hardware {{
  accelerator   = cpu
  gpus_per_node = {processes}
  nodes         = {nodes}
}}

{DISTRIBUTED[strategy]}

checkpoint {{
  every     = {every} steps
  keep_last = 2
}}

output {{
  runs_dir = "runs"
}}
"""


def compile_recipe(root: Path, name: str, strategy: str, **kw) -> Path:
    """Compile into root/build/<name> with `ftc compile`, exactly as a user would; returns the folder."""
    root.mkdir(parents=True, exist_ok=True)
    recipe = root / f"{name}.ftspec"
    recipe.write_text(recipe_text(name, strategy, **kw), encoding="utf-8")
    out = root / "build" / name
    result = subprocess.run([sys.executable, "-m", "ftc", "compile", str(recipe), "-o", str(out)],
                            capture_output=True, text=True, timeout=120, env=base_env())
    assert result.returncode == 0, result.stderr
    return out


def base_env(**extra: str) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
           "DS_ACCELERATOR": "cpu", "PYTHONUNBUFFERED": "1"}
    env.setdefault("TORCH_EXTENSIONS_DIR", str(REPO / ".cache" / "torch_extensions"))  # as the Makefile does
    for key in ("FTC_LAUNCHER", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT", "FTC_RUN_ID", "SLURM_JOB_ID",
                "FTC_FAULT", "RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(key, None)
    env.update(extra)
    return env


def ftc_run(folder: Path, *args: str, timeout: float = 600, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ftc", "run", "--plan", str(folder), *args], cwd=folder,
                          capture_output=True, text=True, timeout=timeout, env=base_env(**env))


def start_ftc_run(folder: Path, *args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ftc", "run", "--plan", str(folder), *args], cwd=folder,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=base_env(**env))


def run_dir(folder: Path, run_id: str) -> Path:
    plan = json.loads((folder / "plan.json").read_text())
    return (folder / plan["output"]["runs_dir"] / plan["recipe"]["name"] / run_id).resolve()


def losses(run: Path) -> dict[int, float]:
    """Training loss by step from the run's metrics.jsonl (rank 0 writes it)."""
    out = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "loss" in record:
            out[record["step"]] = record["loss"]
    return out


def explain(result) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
