#!/usr/bin/env bash
# The GPU half of the estimator's accuracy check, in one command for a machine with a CUDA GPU:
# bench/memory_measure.py's cases (random-init models from the catalog configs, no download) trained for
# a few steps, torch.cuda.max_memory_allocated / max_memory_reserved printed next to the estimate.
#
#   bash bench/gpu_memory.sh [RESULTS.json]
#
# Needs torch with CUDA, transformers and peft where it runs; ftc itself is put on the path, not installed
# (the estimator imports none of those). The QLoRA cases run only where bitsandbytes imports: on a machine
# without it and offline, `make gpu-site` here first, and bring .gpu/ along with the tree.
set -euo pipefail
cd "$(dirname "$0")/.."
results=${1:-memory_measure_cuda.json}
# ftc without installing it: the package layout of pyproject.toml's package-dir, as links
site=$(mktemp -d)
mkdir "$site/ftc"
ln -s "$PWD"/ftc/* "$site/ftc/"
for part in compiler runtime grammar; do ln -s "$PWD/$part" "$site/ftc/$part"; done
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
if [ -d .gpu/site ]; then export PYTHONPATH="$PYTHONPATH:$PWD/.gpu/site"; fi  # after the machine's own
cases=(qwen0.5b-full qwen0.5b-full-gc llama1b-full llama1b-lora qwen3-1.7b-lora llama8b-lora-gc
       gpt2-medium-full opt1.3b-full phi2-lora)
if python3 -c "import bitsandbytes" 2>/dev/null; then
  cases+=(tinyllama-qlora llama8b-qlora)
else
  echo "bitsandbytes not installed: the QLoRA cases are skipped" >&2
fi
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))"
python3 bench/memory_measure.py --device cuda --steps 3 --cases "${cases[@]}" --json "$results"
