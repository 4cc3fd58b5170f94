"""FSDP's per-rank memory, measured on CPU over gloo, next to the estimate.

Two ranks wrap a small random-initialized Llama the way accelerate's FSDP1 does for the runtime's GPU
plans (TRANSFORMER_BASED_WRAP, FULL_SHARD, BACKWARD_PRE prefetch, use_orig_params, bf16 mixed
precision; peft's wrap policy for LoRA, as the Trainer installs it) and train two steps the way the
Trainer does (autocast, backward, foreach AdamW, zero_grad(set_to_none)). Rank 0 counts live storages
at their current size (`live_tensors.LiveStorageBytes`: FSDP gathers and frees by resizing storages),
which is what CUDA's `max_memory_allocated` would count on a GPU.

The `peft-example` cases replay instead the stack of peft's FSDP QLoRA example (the calibration rows
PD04/PD05, early 2024) without its CUDA kernels: a checkpoint loaded 4-bit with bf16 quant storage and no
k-bit preparation, reentrant checkpointing, LoRA (rank 8, dropout 0.1) on every linear, FSDP1 with
`use_orig_params=False` and bf16 buffers.

    python bench/fsdp_memory_measure.py [--cases NAME ...]
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from pathlib import Path

from ftc.compiler.memory.estimate import estimate
from ftc.compiler.memory.setup import MemorySetup
from ftc.compiler.models.arch import from_config
from two_ranks import rank0_peak, report, with_lora, write_peak

LLAMA = dict(model_type="llama", hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=8,
             num_key_value_heads=4, vocab_size=16384, max_position_embeddings=1024, tie_word_embeddings=False,
             rms_norm_eps=1e-5)

PEFT_EXAMPLE = dict(method="qlora", lora_dropout=0.1, kbit_fp32_upcast=False, gradient_checkpointing=True)

# name -> (config changes, setup fields). Short sequences put the peak at the end of backward, where the
# root unit's gradients meet; long ones put it in the forward/backward.
CASES = {
    "full": ({}, dict(method="full", micro_batch=1, seq_len=32)),
    "full-tied": ({"tie_word_embeddings": True}, dict(method="full", micro_batch=1, seq_len=32)),
    "full-long": ({}, dict(method="full", micro_batch=4, seq_len=256)),
    "full-long-checkpointing": ({}, dict(method="full", micro_batch=4, seq_len=256, gradient_checkpointing=True)),
    "lora": ({}, dict(method="lora", micro_batch=1, seq_len=32)),
    "lora-long-checkpointing": ({}, dict(method="lora", micro_batch=4, seq_len=256, gradient_checkpointing=True)),
    "peft-example": ({}, dict(PEFT_EXAMPLE, micro_batch=4, seq_len=256)),
    # a wider layer and a smaller vocabulary put the peak in the recomputed layer, not the loss
    "peft-example-wide": ({"hidden_size": 512, "intermediate_size": 1408, "vocab_size": 2048},
                          dict(PEFT_EXAMPLE, micro_batch=2, seq_len=512)),
}


def _rank(rank: int, port: int, config: dict, fields: dict, out: str) -> None:
    import torch
    import torch.distributed as dist
    from torch.distributed.fsdp import BackwardPrefetch, MixedPrecision, ShardingStrategy
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

    sys.path.insert(0, str(Path(__file__).parent))
    import memory_measure
    from live_tensors import LiveStorageBytes

    torch.manual_seed(0)
    torch.set_num_threads(1)
    peft_example = fields["method"] == "qlora"
    # built before the process group: the 4-bit model is saved and reloaded, and save_pretrained writes on
    # global rank 0 only
    model, vocab = memory_measure.build(config, with_lora(fields), "cpu", reentrant=peft_example)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    policy = functools.partial(transformer_auto_wrap_policy, transformer_layer_cls={type(base.model.layers[0])})
    if fields["method"] != "full":
        from peft.utils.other import fsdp_auto_wrap_policy

        policy = fsdp_auto_wrap_policy(model)  # what the Trainer installs for a peft model
    wrapped = FSDP(model, auto_wrap_policy=policy, sharding_strategy=ShardingStrategy.FULL_SHARD,
                   device_id=torch.device("cpu"), backward_prefetch=BackwardPrefetch.BACKWARD_PRE,
                   use_orig_params=not peft_example, limit_all_gathers=True,
                   mixed_precision=MixedPrecision(param_dtype=torch.bfloat16, reduce_dtype=torch.bfloat16,
                                                  buffer_dtype=torch.bfloat16 if peft_example else None))
    wrapped.train()
    optimizer = torch.optim.AdamW([p for p in wrapped.parameters() if p.requires_grad], lr=1e-5, foreach=True)
    counter = LiveStorageBytes()
    counter.track(list(wrapped.parameters()) + list(wrapped.buffers()))
    counter.track(p for module in wrapped.modules() if isinstance(module, FSDP) for p in module.params)
    with counter:
        memory_measure.train_steps(wrapped, optimizer, vocab, fields["micro_batch"], fields["seq_len"], 2, "cpu")
    if rank == 0:
        write_peak(out, counter.peak)
    dist.destroy_process_group()


def measure(config: dict, fields: dict) -> int:
    """Peak live bytes of rank 0 over two FSDP training steps on 2 CPU ranks."""
    return rank0_peak(_rank, config, fields, "ftc-fsdp-")


def estimate_for(config: dict, fields: dict):
    """The estimator on the same wrapping and loop (FSDP1, 2 ranks, one micro-batch per step)."""
    return estimate(MemorySetup(from_config(config), dtype="bf16", mixed_precision="bf16", padded_batches=False,
                                strategy="fsdp", fsdp_version=1, dp_world=2, gpus_per_node=2,
                                sequences_per_rank=fields["micro_batch"], **with_lora(fields)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    args = parser.parse_args(argv)
    rows = ((name, dict(LLAMA, **CASES[name][0]), CASES[name][1]) for name in args.cases)
    report(rows, measure, estimate_for)
    return 0


if __name__ == "__main__":
    sys.exit(main())
