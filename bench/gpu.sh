#!/usr/bin/env bash
# The GPU benchmark in one command (under 8 minutes on one H100): `ftc run` against a plain transformers
# Trainer script on random-init Llama 1B (full, LoRA, QLoRA) and 8B (LoRA, QLoRA) from the catalog configs,
# no download; useful tokens/s, MFU, and the estimator's peak against torch.cuda.max_memory_allocated.
#
#   bash bench/gpu.sh [--steps 12] [--cases llama1b-full ...]
#
# Needs torch with CUDA, transformers, peft and datasets where it runs (the project's `train` extra); the
# QLoRA cases need bitsandbytes (`make gpu-site` here first on an offline machine without it, and bring
# .gpu/ along). Prints a Markdown table for docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d .gpu/site ]; then export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD/.gpu/site"; fi
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
py=python3
if [ -x .venv/bin/python ]; then py=.venv/bin/python; fi
cases=()
if ! "$py" -c "import bitsandbytes" 2>/dev/null; then
  echo "bitsandbytes not installed: the QLoRA cases are skipped" >&2
  cases=(--cases llama1b-full llama1b-lora llama8b-lora)
fi
exec timeout 470 "$py" bench/gpu_throughput.py "${cases[@]}" "$@"
