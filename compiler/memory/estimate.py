"""Per-GPU memory of one training rank, component by component (formulas: docs/memory.md).

The peak is the static state (weights, adapters, gradients, optimizer, master weights, reduce
buffers) plus the largest of four phases: forward/backward (gathered parameters, saved activations,
one recomputed layer, logits and loss), the optimizer step, the end of backward (where the embedding's
gradient meets the head's) and the eval pass. Constants that are
calibrated rather than derived are the three at the top; nothing is tuned per model.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ftc.compiler.memory.activations import (LOSS_BYTES_CHUNKED, LOSS_CHUNK_ELEMENTS, eval_bytes, fp32_layer_norm_extra,
                                             layer_and_checkpoint_bytes, layer_fixed_bytes, loss_bytes_per_logit,
                                             norm_bytes)
from ftc.compiler.memory.layer_families import TORCH_LAYER_NORMS, compute_bytes
from ftc.compiler.memory.optimizer import optimizer_state_bytes, step_transient_bytes
from ftc.compiler.memory.preference import doubled, holds_reference, reference_forward_bytes
from ftc.compiler.memory.setup import DTYPE_BYTES, MemorySetup
from ftc.compiler.models.params import count

GiB = 2**30
CUDA_CONTEXT_BYTES = int(0.5 * GiB)  # context + kernels with lazy module loading (PyTorch PR #86509: 287 MB)
COLLECTIVE_BUFFER_BYTES = int(0.5 * GiB)  # NCCL communicators and workspaces when world > 1
ALLOCATOR_SLACK = 0.15  # reserved − allocated, as a share of the tensor peak (calibrated: docs/memory.md)

NF4_DQ_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)  # 0.5159: 4-bit codes, 8-bit absmax per 64, fp32 per 256 blocks
NF4_BYTES = 0.5 + 4 / 64  # 0.5625: fp32 absmax per block of 64
DS_MAX_LIVE_PARAMETERS = 1_000_000_000
UNMODELED = (
    "torch.compile fusion (usually lowers activations)",
    "fragmentation beyond the allocator-slack share (variable-length batches)",
)


@dataclass(frozen=True)
class Component:
    name: str
    bytes: int
    note: str = ""
    phase: str = ""  # set on off-peak components (the phase they belong to) and on host RAM read while loading


@dataclass(frozen=True)
class MemoryEstimate:
    components: tuple[Component, ...]  # on the GPU at the peak; they sum to peak_bytes
    off_peak: tuple[Component, ...]  # GPU phases that are not the peak (reported, not added; `phase` set)
    host: tuple[Component, ...]  # host RAM per node
    paged_bytes: int  # bitsandbytes paged optimizer state: managed memory, outside the allocator
    tensor_peak_bytes: int  # live tensors: what torch.cuda.max_memory_allocated reports
    peak_bytes: int  # the device footprint: tensors + allocator slack + context
    cpu_bytes_per_node: int
    peak_phase: str  # "forward/backward" | "optimizer step" | "end of backward" | "eval pass"
    params_total: int
    params_trainable: int
    unmodeled: tuple[str, ...] = field(default=UNMODELED)
    nvme: tuple[Component, ...] = ()  # bytes offloaded to NVMe per node

    @property
    def host_peak_phase(self) -> str:
        """`loading` or `training`: when host RAM per node peaks (training on a tie)."""
        training = sum(c.bytes for c in host_in_phase(self.host, TRAINING))
        return TRAINING if training == self.cpu_bytes_per_node else LOADING

    def component(self, name: str) -> int:
        for c in self.components + self.off_peak:
            if c.name == name:
                return c.bytes
        return 0

    @property
    def model_state_bytes(self) -> int:
        """Weights, adapters, gradients, optimizer states and master weights on the GPU."""
        names = ("weights", "quant_state", "adapters", "gradients", "optimizer_states", "master_weights")
        return sum(c.bytes for c in self.components + self.off_peak if c.name in names)


# host RAM's two phases: the checkpoint is read (loading) before the training state exists
LOADING, TRAINING = "loading", "training"


def host_in_phase(host: tuple[Component, ...] | list[Component], phase: str) -> list[Component]:
    """Host components alive in `phase`: offloaded weights in both (ZeRO-3's partitions exist while the
    checkpoint loads); the checkpoint read only while loading; the rest (optimizer state, buffers) in training."""
    if phase == LOADING:
        return [c for c in host if c.phase == LOADING or c.name == "weights"]
    return [c for c in host if c.phase != LOADING]


def _model_load(s: MemorySetup, model_bytes: int) -> Component:
    """The checkpoint read while loading, per node. A checkpoint in the recipe's dtype is memory-mapped:
    the node's processes share its pages (page cache). Another dtype is converted into each loading
    process's own memory: every rank under DDP or ZeRO 0-2; one under FSDP (rank 0 loads, the others
    start empty) or ZeRO-3 (converted as it is copied into the gathered parameters on the GPU)."""
    stored = s.arch.checkpoint_dtype
    if s.method == "qlora" or stored in (None, s.dtype):
        note = "read once per node (memory-mapped, page cache)"
        if stored is None and s.method != "qlora":
            note += f"; checkpoint dtype unknown, taken as {s.dtype}"
        return Component("model_load", model_bytes, note, phase=LOADING)
    loaders = 1 if s.shard_stage == 3 else s.ranks_per_node
    return Component("model_load", loaders * model_bytes,
                     f"{stored} checkpoint converted to {s.dtype} in the memory of {loaders} process"
                     + ("es" if loaders > 1 else "") + " per node", phase=LOADING)


def _host_peak(host: list[Component]) -> int:
    return max(sum(c.bytes for c in host_in_phase(host, phase)) for phase in (LOADING, TRAINING))


class _Ledger:
    """The components of one estimate as they are placed: on the GPU, in host RAM, on NVMe."""

    def __init__(self, s: MemorySetup):
        self.s, self.n = s, s.shards
        self.gpu: list[Component] = []
        self.host: list[Component] = []
        self.nvme: list[Component] = []
        self.off_peak: list[Component] = []  # phase components outside the peak phase

    def place(self, name: str, total: int, shard: bool, offload: bool, note: str, device: str = "cpu") -> None:
        s, n = self.s, self.n
        per_rank = total // n if shard else total
        if offload:
            if device == "nvme":  # NVMe holds the bytes; host RAM keeps only staging buffers
                self.nvme.append(Component(name, per_rank * s.ranks_per_node, note + ", offloaded to NVMe"))
            else:
                self.host.append(Component(name, per_rank * s.ranks_per_node, note + ", offloaded to host"))
            self.gpu.append(Component(name, 0, "offloaded"))
        else:
            self.gpu.append(Component(name, per_rank, note + (f", /{n} ranks" if shard and n > 1 else "")))


@dataclass(frozen=True)
class _Sizes:
    """Bytes per value that every part of the estimate shares."""

    deepspeed_mixed: bool  # DeepSpeed casts the module to its 16-bit dtype
    p_bytes: int  # a base weight, in the model dtype
    adapter_bytes: int
    t_bytes: int  # a trainable parameter (and its gradient)


def estimate(setup: MemorySetup) -> MemoryEstimate:
    """The per-rank memory estimate of `setup`. Pure; no I/O."""
    s = setup
    counts = count(s.arch, s.method, s.lora_rank, s.lora_targets, s.modules_to_save, s.trainable_tokens)
    deepspeed_mixed = s.strategy == "deepspeed" and (s.mixed_precision != "no" or s.dtype != "fp32")
    p_bytes = DTYPE_BYTES[s.dtype]
    adapter_bytes = 2 if deepspeed_mixed else DTYPE_BYTES[s.adapter_dtype]  # DeepSpeed casts the module to 16 bit
    t_bytes = (2 if deepspeed_mixed else p_bytes) if s.method == "full" else adapter_bytes
    sizes = _Sizes(deepspeed_mixed, p_bytes, adapter_bytes, t_bytes)
    ledger = _Ledger(s)
    weight_bytes, base_dtype_bytes = _weights(ledger, counts, sizes)
    grads_in_phases, states, paged, state_dtype, offload_opt = _training_state(ledger, counts, sizes)
    gather_bytes = 2 if s.sharded_mixed_precision else base_dtype_bytes
    backward_buffers, reductions = _buffers(ledger, counts.trainable, sizes)
    phase_name = _phases(ledger, counts, sizes, gather_bytes, grads_in_phases, backward_buffers, reductions,
                         state_dtype, offload_opt)
    gpu, host = ledger.gpu, ledger.host
    tensor_peak = sum(c.bytes for c in gpu)
    slack = int(tensor_peak * ALLOCATOR_SLACK)
    gpu.append(Component("allocator_slack", slack, f"{ALLOCATOR_SLACK:.0%} of live tensors (caching allocator)"))
    context = CUDA_CONTEXT_BYTES + (COLLECTIVE_BUFFER_BYTES if s.dp_world > 1 else 0)
    gpu.append(Component("cuda_context", context, "CUDA context, kernels" + (", NCCL" if s.dp_world > 1 else "")))
    paged_bytes = states if paged else 0
    _host_ram(ledger, paged_bytes, counts.base * p_bytes if s.method != "qlora" else weight_bytes)
    unmodeled = UNMODELED
    if s.method == "qlora" and s.strategy == "fsdp" and s.offload_params != "none":
        unmodeled += ("FSDP parameter offload of frozen 4-bit weights: one published run (peft's Llama-2-70B "
                      "example, nvidia-smi) read ~4 GiB above this estimate, unattributed (docs/memory.md §5)",)
    return MemoryEstimate(tuple(gpu), tuple(ledger.off_peak), tuple(host), paged_bytes, tensor_peak,
                          tensor_peak + slack + context, _host_peak(host), phase_name,
                          counts.total, counts.trainable, unmodeled, tuple(ledger.nvme))


def _weights(ledger: _Ledger, counts, sizes: _Sizes) -> tuple[int, int]:
    """The base weights (4-bit codes and quant state under QLoRA) and the adapters; (weight bytes, the
    bytes per base value)."""
    s = ledger.s
    stage = s.shard_stage
    if s.method == "qlora":
        q_bytes = NF4_DQ_BYTES if s.double_quant else NF4_BYTES
        rest = 4 if s.kbit_fp32_upcast else 2
        weight_bytes = int(counts.quantized * q_bytes) + counts.unquantized * rest
        note = f"{counts.quantized:,} params {s.quant}{'+dq' if s.double_quant else ''} " \
               f"({q_bytes:.4f} B), {counts.unquantized:,} at {rest} B"
        base_dtype_bytes = 2
        if stage == 3 and s.quant_library == "bitsandbytes":
            # Sharding and offload move only the packed 4-bit codes: bitsandbytes keeps each layer's quant
            # state (absmax, nested absmax) on the module, outside the shards, whole on every rank
            # (bitsandbytes nn/modules.py fix_4bit_weight_quant_state_from_module).
            state = int(counts.quantized * (q_bytes - 0.5))
            weight_bytes -= state
            note = f"{counts.quantized:,} params as 4-bit codes (0.5 B), {counts.unquantized:,} at {rest} B"
            ledger.gpu.append(Component("quant_state", state, f"4-bit quant state ({q_bytes - 0.5:.4f} B/param), "
                                        "whole on every rank"))
    else:
        w = 2 if sizes.deepspeed_mixed else sizes.p_bytes  # DeepSpeed casts the whole module to its 16-bit dtype
        weight_bytes = counts.base * w
        note = f"{counts.base:,} params × {w} B"
        base_dtype_bytes = w
    offload_params = s.offload_params != "none" and stage == 3
    ledger.place("weights", weight_bytes, stage == 3, offload_params, note, s.offload_params)
    if s.method != "full":
        ledger.place("adapters", counts.trainable * sizes.adapter_bytes, stage == 3, offload_params,
                     f"{counts.lora:,} LoRA + {counts.saved_copies:,} saved-module params × {sizes.adapter_bytes} B",
                     s.offload_params)
    if holds_reference(s):  # a frozen copy of the base for the reference forward (preference objectives)
        ledger.place("reference_weights", counts.base * base_dtype_bytes, stage == 3, offload_params,
                     f"frozen reference copy, {counts.base:,} params × {base_dtype_bytes} B", s.offload_params)
    return weight_bytes, base_dtype_bytes


def _training_state(ledger: _Ledger, counts, sizes: _Sizes):
    """Gradients, optimizer state and master weights; (gradients that live only in phases, optimizer state
    bytes, whether paged, the state dtype's bytes, whether the optimizer is offloaded)."""
    s, trainable, stage, gpu = ledger.s, counts.trainable, ledger.s.shard_stage, ledger.gpu
    # DeepSpeed offloads optimizer state with its fp32 gradients; FSDP CPUOffload moves params, grads, state
    offload_opt = (s.offload_optimizer != "none" and s.strategy == "deepspeed") or \
        (s.strategy == "fsdp" and s.offload_params != "none")
    opt_device = s.offload_optimizer if s.strategy == "deepspeed" else "cpu"
    if s.optimizer_in_backward:
        gpu.append(Component("gradients", 0, "freed by the optimizer step fused into backward"))
    else:
        # DeepSpeed's bf16 optimizer at stage 0 accumulates gradients in fp32; offloaded gradients are fp32
        g_bytes = 4 if offload_opt or (sizes.deepspeed_mixed and stage == 0 and s.dtype == "bf16") else sizes.t_bytes
        # ZeRO-1 keeps whole gradients only while it accumulates them: with one micro-batch per step they are
        # reduced into the rank's partition within backward, as at stage 2 (measured on the engine)
        sharded = stage >= 2 or (s.strategy == "deepspeed" and stage == 1 and not s.accumulates)
        ledger.place("gradients", trainable * g_bytes, sharded, offload_opt, f"{trainable:,} trainable × {g_bytes} B",
                     opt_device)
    grads_in_phases = []
    preallocated = s.strategy == "deepspeed" and stage in (0, 3)
    if gpu[-1].name == "gradients" and gpu[-1].bytes and not preallocated and not s.accumulates:
        # zero_grad(set_to_none) frees them after each step and backward creates them as activations die:
        # none exist at the start of backward, all at the optimizer step (ZeRO-1/2: their partition buffer
        # from the first reduction to the step). DeepSpeed preallocates its gradient buffers at stages 0 and 3,
        # and accumulation keeps them from one micro-batch to the next: both stay static.
        grads_in_phases = [gpu.pop()]
    state_dtype = 4 if (sizes.deepspeed_mixed or sizes.t_bytes == 4) else sizes.t_bytes
    states, paged = optimizer_state_bytes(s, trainable, state_dtype, counts)
    if paged:
        gpu.append(Component("optimizer_states", 0, f"{s.optimizer}: paged, outside the allocator"))
    else:
        ledger.place("optimizer_states", states, stage >= 1, offload_opt, f"{s.optimizer}", opt_device)
    if sizes.deepspeed_mixed:
        ledger.place("master_weights", trainable * 4, stage >= 1, offload_opt, "fp32 copy of the trainable params",
                     opt_device)
    return grads_in_phases, states, paged, state_dtype, offload_opt


def _buffers(ledger: _Ledger, trainable: int, sizes: _Sizes) -> tuple[list[Component], list[Component]]:
    """Communication buffers: static ones placed on the GPU; (those alive during backward, those at the end
    of backward's last reduction)."""
    s, stage = ledger.s, ledger.s.shard_stage
    backward_buffers: list[Component] = []
    reductions: list[Component] = []  # the end of backward's last reduction
    if s.strategy == "deepspeed" and stage >= 1:
        # DeepSpeed allocates its gradient-reduction (IPG) buffers at the full reduce_bucket_size, however few
        # parameters train, in the engine's dtype: one at stage 3, with the optimizer, kept (stage3.py,
        # contiguous_gradients); two (overlap_comm) at stages 1-2, at each backward, and the gradients are
        # views into them until the step frees both (stage_1_and_2.py). All-gathers write in place.
        buffers = 2 if stage < 3 else 1
        engine_bytes = 2 if sizes.deepspeed_mixed else 4  # the engine's (and its gradients') dtype
        buckets = Component("zero_buckets", s.reduce_bucket_size * engine_bytes * buffers,
                            f"{buffers} × reduce_bucket_size ({s.reduce_bucket_size:.0e} elements) gradient buffer")
        (ledger.gpu if stage == 3 else backward_buffers).append(buckets)
        # each reduction flattens the bucket's gradients into one new tensor (allreduce_bucket at stages 1-2,
        # reduce_scatter_coalesced at 3): at the end of backward, and within it when the gradients overflow a
        # bucket (measured: bench/deepspeed_memory_measure.py)
        flush = Component("reduce_copy", min(trainable, s.reduce_bucket_size) * engine_bytes,
                          "one bucket's gradients, flattened for the reduction")
        reductions = [flush] + (backward_buffers if stage < 3 else [])
        if trainable > s.reduce_bucket_size:
            backward_buffers.append(flush)
    elif s.strategy == "ddp" and s.dp_world > 1:
        ledger.gpu.append(Component("ddp_buckets", trainable * sizes.t_bytes,
                                    "DDP gradient buckets (a second gradient copy)"))
    if s.method == "qlora":
        largest = max((m.d_in * m.d_out for m, _ in s.arch.all_linears if m.quantizable), default=0)
        ledger.gpu.append(Component("dequant_buffer", largest * 2, "one 4-bit matrix dequantized for its matmul"))
    return backward_buffers, reductions


def _phases(ledger: _Ledger, counts, sizes: _Sizes, gather_bytes: int, grads_in_phases, backward_buffers,
            reductions, state_dtype: int, offload_opt: bool) -> str:
    """What lives only in one phase of a step; the heaviest phase joins the GPU total, the others are kept
    as `off_peak`. Returns the peak phase's name."""
    s, trainable = ledger.s, counts.trainable
    gathered = _gathered_units(s, counts, gather_bytes, sizes.t_bytes) if s.gathers_params else []
    train = _activation_phase(doubled(s), counts.lora > 0)  # chosen and rejected: two sequences per example
    reference = reference_forward_bytes(s)
    if reference:
        train.append(Component("reference_forward", reference, "reference log-probs, no saved activations: "
                               "b·2·s·V × (compute + 4) B"))
    step = step_transient_bytes(s, trainable, state_dtype, offload_opt, gradient_bytes=sizes.t_bytes)
    evaluation = eval_bytes(doubled(s)) if s.evaluates else 0
    if evaluation:
        evaluation_phase = [c for c in gathered if c.name == "gathered_params"]
    else:
        evaluation_phase = []
    end_of_backward = _end_of_backward(s, sizes.t_bytes, gather_bytes, grads_in_phases, trainable)
    phases = [("forward/backward", gathered + backward_buffers + train),
              ("optimizer step", grads_in_phases + [Component("optimizer_step", step, "optimizer update temporaries")]),
              ("end of backward", end_of_backward + (backward_buffers if end_of_backward else [])),
              ("last gradient reduction", reductions),
              ("eval pass", evaluation_phase + [Component("eval_pass", evaluation,
                                                     "no-grad forward: one layer's working set or the loss")])]
    phase_name, _ = max(phases, key=lambda p: sum(c.bytes for c in p[1]))
    for name, comps in phases:
        if name == phase_name:
            ledger.gpu.extend(comps)
        else:
            ledger.off_peak.extend(replace(c, phase=name) for c in comps)
    return phase_name


def _host_ram(ledger: _Ledger, paged_bytes: int, load_bytes: int) -> None:
    """Host RAM per node: paged optimizer state, offload staging, and loading the model."""
    s, host = ledger.s, ledger.host
    if paged_bytes:
        host.append(Component("paged_optimizer_states", paged_bytes * s.ranks_per_node,
                              "may spill from GPU to host under pressure"))
    if any(c.name != "paged_optimizer_states" for c in host):
        host.append(Component("offload_buffers", int(0.5 * sum(c.bytes for c in host)),
                              "pinned staging, 1.5× headroom as DeepSpeed's estimator"))
    host.append(_model_load(s, load_bytes))


def _fsdp1_root(s: MemorySetup) -> int:
    """Parameters of FSDP1's root unit when it is sharded: the embedding, the head and the final norm,
    which transformer-layer wrapping (accelerate's TRANSFORMER_BASED_WRAP) leaves outside every layer.
    FSDP never reshards the root after forward (torch fsdp/_runtime_utils.py `_post_forward_reshard`:
    `not state._is_root`), so it stays gathered from the first forward to the end of backward."""
    if s.strategy != "fsdp" or s.fsdp_version != 1 or not s.gathers_params:
        return 0
    a = s.arch  # (a vision tower's embeddings and projector, when there is one, stay in the root too)
    return a.vocab * a.hidden * (1 if a.tied else 2) + a.hidden + a.tower_other_params


def _gathered_units(s: MemorySetup, counts, gather_bytes: int, t_bytes: int) -> list[Component]:
    """Parameters gathered whole while their layers run (ZeRO-3, FSDP full shard, parameter offload), and
    in full fine-tuning their unsharded gradients before the reduce-scatter. They exist only between the
    first forward and the end of backward: none at the optimizer step.

    FSDP1 keeps its root unit (embeddings, head) gathered throughout (`_fsdp1_root`); the module weights are
    views of the flat parameter, so autograd holds the head's gradient from the start of backward until
    the embedding's arrives (split backward). FSDP2 as accelerate and torchtune build it shards the
    embedding and the head as their own units, gathered only while used."""
    a = s.arch
    grad_bytes = min(t_bytes, gather_bytes)
    if s.method == "qlora":
        layer_q = sum(m.weight_params for m in a.layer_linears if m.quantizable)
        layer_bytes = layer_q // 2 + (a.layer_params - layer_q) * 2  # 4-bit codes
    else:
        layer_bytes = a.layer_params * gather_bytes
    full = s.method == "full"
    root = _fsdp1_root(s)
    if root:
        params = 2 * layer_bytes + root * gather_bytes
        note = "the root unit (embeddings, head) and two layers (current + prefetch)"
        grads = (a.vocab * a.hidden + a.layer_params) * grad_bytes if full else 0
        grads_note = "the head's gradient (held until the embedding's) and one layer's unsharded gradients"
    else:
        params = 2 * max(layer_bytes, a.vocab * a.hidden * gather_bytes)
        note = "two gathered layers (current + prefetch)"
        if s.strategy == "deepspeed":  # DeepSpeed keeps gathered params live up to stage3_max_live_parameters
            live = min(DS_MAX_LIVE_PARAMETERS, counts.base) * gather_bytes
            if live > params:
                params, note = live, "gathered params up to stage3_max_live_parameters (1e9)"
        grads = max(a.layer_params, a.vocab * a.hidden) * grad_bytes if full else 0
        grads_note = "one layer's unsharded gradients"
    out = [Component("gathered_params", params, note)]
    if grads:
        out.append(Component("unsharded_gradients", grads, grads_note))
    return out


def _activation_phase(s: MemorySetup, lora: bool) -> list[Component]:
    a = s.arch
    tokens = s.micro_batch * s.seq_len
    per_layer, resid = layer_and_checkpoint_bytes(s, lora)
    compute = compute_bytes(s)
    layer = int(per_layer * tokens) + layer_fixed_bytes(s)
    head_in = tokens * norm_bytes(a, compute)  # the final norm
    if s.cuda_fp32_ops and a.model_type in TORCH_LAYER_NORMS:  # in fp32, read by the head
        head_in += tokens * fp32_layer_norm_extra(a.hidden, compute, norms=1, readers=1)
    if a.embedding_dropout:  # and, below the layers, the embedding dropout's mask
        head_in += tokens * a.hidden * compute
    if s.qlora_fp32_residual and compute == 2:
        # the fp32 head is frozen, so autocast's 16-bit copy of it is not cached but saved for the backward
        # of the logits matmul (measured: bench/memory_measure.py --device cpu, llama8b-qlora)
        head_in += a.vocab * a.hidden * compute
    per_logit = compute + LOSS_BYTES_CHUNKED if s.chunked_loss else loss_bytes_per_logit(compute)
    if s.loop_keeps_fp32_logits:
        per_logit += 4
    logits = tokens * a.vocab * per_logit
    loss_note = f"b·s·V × {per_logit} B"
    if s.chunked_ce_used:
        logits, loss_note = linear_cross_entropy_bytes(s, tokens, compute)
    workspace = tokens * (a.hidden * 4 + 2 * a.intermediate * compute)  # gradients flowing through a layer
    if s.attention == "eager":
        workspace += 4 * a.heads * s.seq_len * tokens  # fp32 scores before softmax
    out = []
    if s.gradient_checkpointing:
        kept = a.layers if not s.activation_offload else 2
        out.append(Component("activations", int(kept * tokens * resid) + head_in,
                             f"checkpointed layer inputs ({kept} layers × b·s·h)"))
        recompute = layer + workspace
        if logits >= recompute:
            out.append(Component("logits_loss", logits, loss_note))
        else:
            out.append(Component("layer_recompute", recompute, "one layer recomputed in backward + its gradients"))
    else:
        kept = a.layers if not s.activation_offload else 2
        out.append(Component("activations", kept * layer + head_in,
                             f"{kept} layers × {per_layer:,.0f} B/token × {tokens:,} tokens"))
        out.append(Component("logits_loss", max(logits, workspace), loss_note))
    return out


def linear_cross_entropy_bytes(s: MemorySetup, tokens: int, compute: int) -> tuple[int, str]:
    """ftc's chunked loss (runtime/train/loss.py): one chunk of fp32 logits, turned into the softmax gradient in
    place, next to its 16-bit original or cast (4 + compute B per element; 4 B in fp32); the hidden states'
    gradient kept for backward; in full fine-tuning, the head's fp32 gradient accumulator."""
    a = s.arch
    rows = min(tokens, max(1, LOSS_CHUNK_ELEMENTS // a.vocab))
    per = 4 + (compute if compute < 4 else 0)
    total = rows * a.vocab * per + tokens * a.hidden * compute
    if s.method == "full":
        total += a.vocab * a.hidden * 4
    return total, f"chunked cross-entropy: {rows:,} rows × V × {per} B + b·s·h gradient"


def _end_of_backward(s: MemorySetup, t_bytes: int, gather_bytes: int, grads: list[Component],
                     trainable: int) -> list[Component]:
    """Where the embedding's gradient meets the head's, in full fine-tuning.

    FSDP1: the root's module weights are views of its flat parameter, so the split's backward
    concatenates the head's and the embedding's gradients into a new flat gradient while both still
    exist (two copies of the root's gradients), with the root still gathered (measured on CPU over gloo:
    tests/test_memory_fsdp.py). Unsharded, a trained embedding tied to the head gets two gradients: the
    head's lands in `.grad` first, and the embedding's dense gradient is added out of place, so three
    vocabulary-sized gradients meet (measured: bench/memory_measure.py, Llama-3.2-1B)."""
    a = s.arch
    if s.method != "full" or s.optimizer_in_backward:
        return []
    root = _fsdp1_root(s)
    if root:
        grad_bytes = min(t_bytes, gather_bytes)
        copies = 3 * a.vocab * a.hidden if a.tied else 2 * root
        # the root's own gradient is not yet reduced to its shard
        grads = [Component(g.name, g.bytes - g.bytes * root // trainable, g.note) for g in grads]
        return grads + [Component("gathered_params", root * gather_bytes, "the root unit, gathered until the end "
                                  "of backward"),
                        Component("root_gradients", copies * grad_bytes, "the embedding's and head's gradients and "
                                  "their concatenation into the root's flat gradient")]
    if not a.tied or s.shard_stage >= 2:
        return []
    return grads + [Component("tied_gradient_sum", 2 * a.vocab * a.hidden * t_bytes,
                              "the tied embedding's own gradient and its sum with the head's")]
