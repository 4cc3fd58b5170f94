"""DeepSpeed ZeRO's per-rank memory, measured on CPU over gloo, next to the estimate.

Two ranks train a small random-initialized Llama (or BLOOM) under `deepspeed.initialize` with the
`ds_config.json` the compiler emits for such a recipe (`compiler/emit/deepspeed.py`: bf16 or an fp32
engine, overlap_comm and contiguous_gradients, gradient accumulation, the Trainer's torch AdamW as a
client optimizer; two cases shrink reduce_bucket_size so buckets fill within backward), and the loop the
engine runs under the Trainer (forward, `engine.backward`, `engine.step`). Rank 0 counts
live storages at their current size (`live_tensors.LiveStorageBytes`) from before `deepspeed.initialize`,
so the engine's own buffers (fp32 master partitions, reduction buckets) are in the count; the peak is
taken over the training steps, which is what CUDA's `max_memory_allocated` would report there.

    python bench/deepspeed_memory_measure.py [--cases NAME ...]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ftc.compiler.emit.deepspeed import ds_config
from ftc.compiler.memory.estimate import estimate
from ftc.compiler.memory.setup import MemorySetup
from ftc.compiler.models.arch import from_config
from two_ranks import rank0_peak, report, with_lora, write_peak

# Large enough (158M parameters) that the model states are not lost beside DeepSpeed's reduction buckets,
# which are allocated at the full reduce_bucket_size (5e8 elements) whatever the model.
LLAMA = dict(model_type="llama", hidden_size=1024, intermediate_size=2752, num_hidden_layers=8, num_attention_heads=16,
             num_key_value_heads=8, vocab_size=32000, max_position_embeddings=1024, tie_word_embeddings=False,
             rms_norm_eps=1e-5)

# A BLOOM with a vocabulary-sized tied embedding: the shape of the calibration rows PE06/PE07 (fp32 LoRA).
BLOOM = dict(model_type="bloom", hidden_size=1024, n_layer=8, n_head=16, vocab_size=64000, tie_word_embeddings=True)

# name -> (config, setup fields); LoRA: rank 8 on every linear unless the case names its targets
CASES = {
    "zero1-full": (LLAMA, dict(method="full", zero=1, micro_batch=2, seq_len=128)),
    "zero2-full": (LLAMA, dict(method="full", zero=2, micro_batch=2, seq_len=128)),
    "zero3-full": (LLAMA, dict(method="full", zero=3, micro_batch=2, seq_len=128)),
    "zero3-full-long": (LLAMA, dict(method="full", zero=3, micro_batch=4, seq_len=512)),
    "zero1-full-accumulating": (LLAMA, dict(method="full", zero=1, micro_batch=2, seq_len=128, grad_accum=2)),
    "zero2-full-accumulating": (LLAMA, dict(method="full", zero=2, micro_batch=2, seq_len=128, grad_accum=2)),
    "zero2-full-small-buckets": (LLAMA, dict(method="full", zero=2, micro_batch=4, seq_len=512,
                                             reduce_bucket_size=20_000_000)),
    "zero3-full-small-buckets": (LLAMA, dict(method="full", zero=3, micro_batch=4, seq_len=512,
                                             reduce_bucket_size=20_000_000)),
    "zero2-lora": (LLAMA, dict(method="lora", zero=2, micro_batch=2, seq_len=128)),
    "zero3-lora": (LLAMA, dict(method="lora", zero=3, micro_batch=2, seq_len=128)),
    # an fp32 engine (no bf16 section), as the peft example behind PE07 ran it, without its offload
    "zero3-lora-fp32-bloom": (BLOOM, dict(method="lora", zero=3, micro_batch=8, seq_len=64, dtype="fp32",
                                          mixed_precision="no", lora_targets=("query_key_value",),
                                          lora_dropout=0.1, attention="eager")),
}


def plan_for(fields: dict) -> dict:
    """The parts of a plan `ds_config` reads, for a 2-rank recipe."""
    b, accumulation = fields["micro_batch"], fields.get("grad_accum", 1)
    return {"distributed": {"strategy": "deepspeed", "zero": fields["zero"], "offload_optimizer": "none",
                            "offload_params": "none"},
            "batch": {"global_batch": 2 * b * accumulation, "micro_batch": b, "grad_accum": accumulation},
            "train": {"max_grad_norm": 1.0, "logging_steps": 10**6},
            "precision": {"mixed": fields.get("mixed_precision", "bf16")}}


def _rank(rank: int, port: int, config: dict, fields: dict, out: str) -> None:
    os.environ.update(DS_ACCELERATOR="cpu", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2")
    import deepspeed
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    import memory_measure
    from live_tensors import LiveStorageBytes

    deepspeed.init_distributed(dist_backend="gloo", verbose=False)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model, vocab = memory_measure.build(config, with_lora(fields), "cpu")
    counter = LiveStorageBytes()
    counter.track(list(model.parameters()) + list(model.buffers()))
    with counter:
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, foreach=True)
        settings = ds_config(plan_for(fields))
        if "reduce_bucket_size" in fields:  # smaller than DeepSpeed's default: buckets fill within backward
            settings["zero_optimization"]["reduce_bucket_size"] = fields["reduce_bucket_size"]
        engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=settings)
        engine.train()
        counter.reset_peak()
        b, s = fields["micro_batch"], fields["seq_len"]
        for _ in range(2 * fields.get("grad_accum", 1)):  # two optimizer steps; the engine steps at the boundary
            ids = torch.randint(0, vocab, (b, s))
            loss = engine(input_ids=ids, labels=ids).loss
            engine.backward(loss)
            engine.step()
    if rank == 0:
        write_peak(out, counter.peak)
    engine.destroy()
    torch.distributed.destroy_process_group()


def measure(config: dict, fields: dict) -> int:
    """Peak live bytes of rank 0 over two DeepSpeed training steps on 2 CPU ranks."""
    return rank0_peak(_rank, config, fields, "ftc-deepspeed-")


def estimate_for(config: dict, fields: dict):
    """The estimator on the same engine and loop (DeepSpeed, 2 ranks; bf16 unless the case says)."""
    fields = dict({"dtype": "bf16", "mixed_precision": "bf16"}, **with_lora(fields))
    per_rank = fields["micro_batch"] * fields.pop("grad_accum", 1)
    return estimate(MemorySetup(from_config(config), padded_batches=False, strategy="deepspeed", dp_world=2,
                                gpus_per_node=2, sequences_per_rank=per_rank, **fields))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    args = parser.parse_args(argv)
    report(((name, *CASES[name]) for name in args.cases), measure, estimate_for)
    return 0


if __name__ == "__main__":
    sys.exit(main())
