"""What the host-RAM estimate assumes about loading, measured with the real loader.

transformers memory-maps a safetensors checkpoint: loaded in its own dtype, the parameters are views of
the file's pages (shared by every process on the node through the page cache), so a process's private
memory barely grows; loaded in another dtype, each process holds its own converted copy. The estimate's
`model_load` counts once per node in the first case and once per loading process in the second.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

pytestmark = pytest.mark.slow

LLAMA = dict(model_type="llama", hidden_size=512, intermediate_size=1408, num_hidden_layers=8, num_attention_heads=8,
             num_key_value_heads=8, vocab_size=32000, max_position_embeddings=512, tie_word_embeddings=False)

# Loads the folder in the given dtype in a fresh process and prints how many parameter bytes are views of
# the checkpoint file's mapping (in /proc/self/maps) and how many live in the process's own memory.
LOAD = """
import sys, torch
from transformers import AutoModelForCausalLM

model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=getattr(torch, sys.argv[2]))
ranges = []
for line in open("/proc/self/maps"):
    if line.rstrip().endswith("model.safetensors"):
        low, high = (int(x, 16) for x in line.split()[0].split("-"))
        ranges.append((low, high))
mapped = private = 0
for p in model.parameters():
    size = p.numel() * p.element_size()
    if any(low <= p.data_ptr() < high for low, high in ranges):
        mapped += size
    else:
        private += size
print(mapped, private)
"""


@pytest.fixture(scope="module")
def bf16_checkpoint(tmp_path_factory):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = tmp_path_factory.mktemp("bf16-checkpoint")
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**LLAMA)).to(torch.bfloat16)
    model.save_pretrained(folder)
    assert json.loads((folder / "config.json").read_text()).get("dtype") == "bfloat16"
    return folder


def _load(folder: Path, dtype: str) -> tuple[int, int]:
    """(parameter bytes mapped from the file, parameter bytes in the process's own memory)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", LOAD, str(folder), dtype], capture_output=True, text=True,
                         env=env, timeout=300, check=True).stdout.split()
    return int(out[-2]), int(out[-1])


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/self/maps")
def test_same_dtype_maps_the_file_and_another_dtype_copies_it(bf16_checkpoint):
    from ftc.compiler.memory.estimate import estimate
    from ftc.compiler.memory.setup import MemorySetup
    from ftc.compiler.models.arch import from_config

    mapped, private = _load(bf16_checkpoint, "bfloat16")
    assert mapped > 0 and private == 0, (mapped, private)  # every parameter a view of the mapped file
    mapped32, private32 = _load(bf16_checkpoint, "float32")
    assert mapped32 == 0 and private32 == 2 * mapped, (mapped32, private32)  # a converted copy of its own

    arch = from_config(json.loads((bf16_checkpoint / "config.json").read_text()))
    assert arch.checkpoint_dtype == "bf16"
    for dtype, shared, own in (("bf16", mapped, 0), ("fp32", 0, private32)):
        load = {c.name: c.bytes for c in estimate(MemorySetup(arch, dtype=dtype, strategy="ddp", dp_world=4,
                                                              gpus_per_node=4)).host}["model_load"]
        assert load == shared + 4 * own  # one mapping per node, or one copy in each of the 4 processes
