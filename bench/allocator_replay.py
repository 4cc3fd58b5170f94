"""How much the CUDA caching allocator reserves beyond what it hands out, for real 70B recipes, without a GPU.

transformers' Llama runs forward and backward on the meta device (shapes only: no memory, no compute),
with gradient checkpointing, LoRA and the 4-bit matmul as the peft (PD) calibration rows ran them in
early 2024. Every storage an operator creates and frees is recorded in order; for the 4-bit rows FSDP's
loading (each unit quantized on the GPU, flattened, sharded, kept or offloaded) goes first. The trace is
replayed through `caching_allocator.CachingAllocator`, which follows the allocator's rules (block
rounding, pools, best fit, splitting, merging), and the peak reserved is printed next to the peak
allocated, beside the allocator slack ftc's estimate has for the row and what the row measured beyond
ftc's estimate. FSDP's gathered units (allocated on their own stream, the same sizes every time) are
outside the trace.

Imitated where the real kernel is CUDA-only, allocation for allocation (`FlashAttention`, `MatMul4Bit`):
flash-attn 2 (`flash_attn_interface.py`, `mha_bwd`: dq/dk/dv, fp32 dq accumulator and softmax_d, expanded
dk/dv for grouped-query heads) and bitsandbytes 0.43 (`MatMul4Bit`: dequantized weight per call, fp32 absmax
of the nested quantization, input and packed weight saved). peft 0.10's LoRA forward for 4-bit layers
(`result.clone()`, then `lora_B(lora_A(dropout(x))) * scaling` added) is `LoraLinear`.

    python bench/allocator_replay.py [--cases PD02 PD05 PD04] [--steps 2]
"""

from __future__ import annotations

import argparse
import sys
import weakref
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

sys.path.insert(0, str(Path(__file__).resolve().parent))
from caching_allocator import CachingAllocator  # noqa: E402
from memory_measure import model_config  # noqa: E402

GiB = 2**30
LLAMA2_70B = model_config("meta-llama/Llama-2-70b-hf", None)  # the catalog's config
# calibration row: (4-bit base, micro-batch, sequence, reentrant checkpointing, loading replayed)
CASES = {
    "PD02": (False, 8, 2048, False, None),  # LoRA, FSDP over 8 GPUs
    "PD05": (True, 2, 2048, True, "sharded"),  # QLoRA, FSDP over 2 GPUs
    "PD04": (True, 2, 2048, True, "offloaded"),  # QLoRA, FSDP over 2 GPUs, parameters offloaded to the CPU
}
ATTENTION_AND_MLP = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class AllocationTrace(TorchDispatchMode):
    """Every new storage an operator returns, in order, and the moment it is freed."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, int, int]] = []  # ("malloc", handle, bytes) / ("free", handle, 0)
        self._refs: dict[int, weakref.ref] = {}

    def known(self, tensors) -> None:
        """Storages that exist before the trace (weights): never recorded, whatever operator returns them."""
        for t in tensors:
            storage = t.untyped_storage()
            self._refs[id(storage)] = weakref.ref(storage)

    def _record(self, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        ref = self._refs.get(id(storage))
        if ref is not None and ref() is storage:
            return
        handle = len(self.events)
        self.events.append(("malloc", handle, storage.nbytes()))

        def freed(_, handle=handle, key=id(storage)):
            self.events.append(("free", handle, 0))
            if self._refs.get(key) is not None and self._refs[key]() is None:
                del self._refs[key]  # not a newer storage that took the same id

        self._refs[id(storage)] = weakref.ref(storage, freed)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.untyped_storage().nbytes() > 0:
                self._record(t)
        return out


class FlashAttention(torch.autograd.Function):
    """flash-attn 2's allocations: out and fp32 log-sum-exp forward; backward as `mha_bwd` allocates."""

    @staticmethod
    def forward(ctx, q, k, v):  # (batch, seq, heads, dim)
        out = torch.empty_like(q, memory_format=torch.contiguous_format)
        lse = q.new_empty((q.shape[0], q.shape[2], q.shape[1]), dtype=torch.float32)
        ctx.save_for_backward(q, k, v, out, lse)
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, lse = ctx.saved_tensors
        b, s, h, d = q.shape
        dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        rounded = -(-s // 128) * 128
        dq_accum = q.new_empty((b, rounded, h, d), dtype=torch.float32)
        softmax_d = q.new_empty((b, h, rounded), dtype=torch.float32)
        groups = h // k.shape[2]
        if groups > 1:  # grouped-query heads: gradients at full heads, then summed into dk, dv
            dk_expanded, dv_expanded = q.new_empty((b, s, h, d)), q.new_empty((b, s, h, d))
            torch.sum(dk_expanded.view(b, s, k.shape[2], groups, d), 3, out=dk)
            torch.sum(dv_expanded.view(b, s, k.shape[2], groups, d), 3, out=dv)
            del dk_expanded, dv_expanded
        del dq_accum, softmax_d
        return dq, dk, dv


def flash_attention(module, query, key, value, attention_mask, **kwargs):
    """transformers' flash_attention_2 entry: (batch, heads, seq, dim) in, (batch, seq, heads, dim) out."""
    out = FlashAttention.apply(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2))
    return out, None


class MatMul4Bit(torch.autograd.Function):
    """bitsandbytes 0.43 `MatMul4Bit`: the weight dequantized to 16 bits for every matmul, forward and backward."""

    @staticmethod
    def _dequantize(packed, shape):
        absmax = packed.new_empty(shape[0] * shape[1] // 64, dtype=torch.float32)  # nested absmax, dequantized
        weight = packed.new_empty(shape, dtype=torch.bfloat16)
        del absmax
        return weight

    @staticmethod
    def forward(ctx, x, packed, shape):
        ctx.shape = shape
        ctx.save_for_backward(x, packed)  # bitsandbytes 0.43 keeps A although grad_B is not computed
        return torch.nn.functional.linear(x, MatMul4Bit._dequantize(packed, shape))

    @staticmethod
    def backward(ctx, grad):
        _, packed = ctx.saved_tensors
        return torch.matmul(grad, MatMul4Bit._dequantize(packed, ctx.shape)), None, None


class Linear4bit(torch.nn.Module):
    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        self.shape = (linear.out_features, linear.in_features)
        # NF4 codes in bf16 storage (quant_storage=bf16): four codes per element
        self.packed = torch.nn.Parameter(linear.weight.new_empty(linear.weight.numel() // 4), requires_grad=False)

    def forward(self, x):
        return MatMul4Bit.apply(x, self.packed, self.shape)


class LoraLinear(torch.nn.Module):
    """peft 0.10 LoRA around a frozen base (its 4-bit variant clones the base output first)."""

    def __init__(self, base: torch.nn.Module, in_features: int, out_features: int, rank: int, dropout: float,
                 clone: bool) -> None:
        super().__init__()
        self.base_layer, self.clone = base, clone
        self.lora_A = torch.nn.Linear(in_features, rank, bias=False, dtype=torch.bfloat16)
        self.lora_B = torch.nn.Linear(rank, out_features, bias=False, dtype=torch.bfloat16)
        self.dropout = torch.nn.Dropout(dropout)

    def forward(self, x):
        result = self.base_layer(x)
        if self.clone:
            result = result.clone()
        return result + self.lora_B(self.lora_A(self.dropout(x))) * 2.0


def build(layers: int, quantized: bool, reentrant: bool):
    import transformers

    fields = {key: value for key, value in LLAMA2_70B.items() if key != "model_type"}
    config = transformers.LlamaConfig(**dict(fields, num_hidden_layers=layers), use_cache=False)
    transformers.AttentionInterface.register("attention_imitation", flash_attention)
    config._attn_implementation = "attention_imitation"
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(config).to(torch.bfloat16)
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        for layer in model.model.layers:
            for parent in (layer.self_attn, layer.mlp):
                for name, child in list(parent.named_children()):
                    if isinstance(child, torch.nn.Linear):
                        base = Linear4bit(child) if quantized else child
                        setattr(parent, name, LoraLinear(base, child.in_features, child.out_features, 8, 0.1,
                                                         clone=quantized))
    model.train()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": reentrant})
    model.enable_input_require_grads()
    return model


def trace_steps(model, batch: int, seq: int, steps: int) -> list[tuple[str, int, int]]:
    trace = AllocationTrace()
    trace.known(model.parameters())
    with trace:
        for _ in range(steps):
            ids = torch.zeros((batch, seq), dtype=torch.long, device="meta")
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            for parameter in model.parameters():
                parameter.grad = None
            del loss
    return trace.events


def loading_events(config: dict, ranks: int, keep_shards: bool) -> list[tuple[str, object, int]]:
    """FSDP1 wrapping a 4-bit model unit by unit, as `_init_param_handle_from_module` runs for each: the unit
    moves to the GPU, where bitsandbytes quantizes each weight (16-bit copy, packed codes, fp32 absmax, the
    nested 8-bit absmax and its fp32 scales kept), the unit's parameters are flattened into one tensor and
    its shard is kept on the GPU (`keep_shards`) or moved to the CPU. The root unit (embeddings, head) last."""
    h, i, kv, vocab = (config[k] for k in ("hidden_size", "intermediate_size", "num_key_value_heads", "vocab_size"))
    kv = kv * h // config["num_attention_heads"]
    shapes = dict(q_proj=(h, h), k_proj=(kv, h), v_proj=(kv, h), o_proj=(h, h), gate_proj=(i, h), up_proj=(i, h),
                  down_proj=(h, i))
    events: list[tuple[str, object, int]] = []

    def malloc(size: int) -> tuple:
        events.append(("malloc", ("load", len(events)), size))
        return events[-1][1]

    def free(handle) -> None:
        events.append(("free", handle, 0))

    def flatten_and_shard(parameters: list, size: int) -> None:
        flat = malloc(size)
        for handle in parameters:
            free(handle)
        if keep_shards:
            malloc(-(-size // ranks))
        free(flat)

    for _ in range(config["num_hidden_layers"]):
        packed = []
        for out_features, in_features in (shapes[name] for name in ATTENTION_AND_MLP):
            n = out_features * in_features
            weight, codes = malloc(2 * n), malloc(n // 2)
            absmax = malloc(n // 64 * 4)
            malloc(n // 64), malloc(n // 64 // 256 * 4)  # quant state: kept for the whole run
            free(absmax), free(weight)
            packed.append(codes)
        norms = [malloc(2 * h), malloc(2 * h)]
        flatten_and_shard(packed + norms, sum(o * i_ // 2 for o, i_ in shapes.values()) + 4 * h)
    root = [malloc(2 * vocab * h), malloc(2 * vocab * h), malloc(2 * h)]
    flatten_and_shard(root, 4 * vocab * h + 2 * h)
    return events


def replay(events) -> CachingAllocator:
    allocator, handles = CachingAllocator(), {}
    for kind, handle, size in events:
        if kind == "malloc":
            handles[handle] = allocator.malloc(size)
        elif handle in handles:
            allocator.free(handles.pop(handle))
    return allocator


def estimated_slack(case: str) -> tuple[float, float]:
    """ftc's allocator slack for the calibration row, and what the row measured minus ftc's estimate."""
    import estimator_accuracy

    model, _, fields, _ = estimator_accuracy.ROWS[case]
    value, result = estimator_accuracy.ours(case, model, "nvml", fields)
    measured = estimator_accuracy.measured_values()[case]
    return result.component("allocator_slack") / GiB, measured - value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    args = parser.parse_args(argv)
    print("GiB per GPU; replayed: the training steps (and loading where named) on the compute stream")
    print(f"{'case':6} {'loading':>10} {'allocated':>10} {'reserved':>9} {'slack':>7} {'ftc slack':>10} "
          f"{'row gap':>8}")
    for name in args.cases:
        quantized, batch, seq, reentrant, loading = CASES[name]
        model = build(LLAMA2_70B["num_hidden_layers"], quantized, reentrant)
        events = trace_steps(model, batch, seq, args.steps)
        if loading:
            events = loading_events(LLAMA2_70B, 2, keep_shards=loading == "sharded") + events
        allocator = replay(events)
        alloc, res = allocator.peak_allocated / GiB, allocator.peak_reserved / GiB
        ours, gap = estimated_slack(name)
        print(f"{name:6} {loading or '-':>10} {alloc:10.2f} {res:9.2f} {res - alloc:7.2f} {ours:10.2f} {gap:+8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
