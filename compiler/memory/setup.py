"""The estimator's input: everything that changes per-GPU memory, as one frozen value."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ftc.compiler.models.layout import Architecture

METHODS = ("full", "lora", "qlora")
OPTIMIZERS = ("adamw", "adamw_8bit", "paged_adamw_8bit", "paged_adamw", "sgd", "adafactor")
STRATEGIES = ("none", "ddp", "deepspeed", "fsdp")
DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}


@dataclass(frozen=True)
class MemorySetup:
    arch: Architecture
    method: str = "full"  # full | lora | qlora
    lora_rank: int = 16
    lora_targets: tuple[str, ...] | str = ("q_proj", "k_proj", "v_proj", "o_proj")  # or "all_linear"
    lora_dropout: float = 0.0
    modules_to_save: tuple[str, ...] = ()
    trainable_tokens: int = 0  # added tokens whose rows LoRA trains through peft's trainable_token_indices
    quant: str = "nf4"  # nf4 | fp4 (qlora)
    double_quant: bool = True
    dtype: str = "bf16"  # weights as loaded: bf16 | fp16 | fp32
    mixed_precision: str = "bf16"  # autocast: bf16 | fp16 | no
    optimizer: str = "adamw"
    micro_batch: int = 1
    # Sequences one rank takes per optimizer step (global batch / data-parallel world); more than
    # micro_batch means gradient accumulation. 0: unknown, taken as accumulating.
    sequences_per_rank: int = 0
    seq_len: int = 2048
    gradient_checkpointing: bool = False
    # Rows of unequal length in a batch (unpacked data, or packed rows not filled to max_length) carry a
    # padding mask; the worst batch has one.
    padded_batches: bool = True
    attention: str = "sdpa"  # sdpa | eager | flash_attention_2
    strategy: str = "none"  # none | ddp | deepspeed | fsdp
    zero: int = 0  # DeepSpeed stage
    fsdp_sharding: str = "full_shard"  # full_shard | shard_grad_op | hybrid_shard | no_shard
    # 1: FSDP1 wrapped per transformer layer (accelerate's TRANSFORMER_BASED_WRAP, what the runtime emits for
    # GPUs): embeddings and head stay in the root unit. 2: fully_shard with embeddings and head as own units.
    fsdp_version: int = 1
    offload_optimizer: str = "none"  # none | cpu | nvme
    offload_params: str = "none"  # none | cpu | nvme
    dp_world: int = 1
    gpus_per_node: int = 1
    nodes: int = 1
    evaluates: bool = False
    eval_batch: int = 0  # sequences per rank in an evaluation forward; 0: micro_batch
    # The training objective (compiler/objectives.py): a preference objective runs two sequences per example
    # (chosen and rejected; KTO's completion and its KL completion), and DPO/KTO a reference forward.
    objective: str = "sft"  # sft | dpo | orpo | kto | simpo
    reference: str = "none"  # auto | model | precomputed | none (ORPO, SimPO: reference-free)
    # Where the layers run: CUDA autocast runs more ops in fp32 than CPU autocast (cuda_fp32_ops).
    device: str = "cuda"  # cuda | cpu
    # How the runtime prepares a QLoRA model: peft's prepare_model_for_kbit_training casts every
    # non-4-bit parameter (embeddings, head, norms) to fp32.
    kbit_fp32_upcast: bool = True
    adapter_dtype: str = "fp32"  # peft casts 16-bit adapters to fp32 (autocast_adapter_dtype=True)
    # bitsandbytes keeps the 4-bit quant state outside FSDP/ZeRO-3 shards; torchao's NF4 tensor (torchtune)
    # shards it with the codes.
    quant_library: str = "bitsandbytes"  # bitsandbytes | torchao
    # ftc's chunked linear cross-entropy (`train.chunked_cross_entropy`) requested for a supported family: no
    # tokens × vocab logits, unless ZeRO-3 or FSDP shards the head (then the plain loss runs: `chunked_ce_used`).
    linear_cross_entropy: bool = False
    compiled: bool = False  # `train.compile`: stated as not modelled (the eager model's activations are counted)
    # Not produced by the compiler; they describe published runs the estimator is compared with.
    chunked_loss: bool = False
    optimizer_in_backward: bool = False
    fused_optimizer: bool = False  # torch AdamW(fused=True): no foreach temporaries at the step
    activation_offload: bool = False
    # The loop holds the model's output through backward, and with it the logits, in fp32 as transformers
    # before 4.45 returned them (the Answer.AI FSDP-QLoRA benchmark loop).
    loop_keeps_fp32_logits: bool = False
    # DeepSpeed's reduce_bucket_size (elements): its default, which the emitted ds_config keeps.
    reduce_bucket_size: int = 500_000_000

    @property
    def chunked_ce_used(self) -> bool:
        sharded = self.strategy == "fsdp" or (self.strategy == "deepspeed" and self.zero == 3)
        return self.linear_cross_entropy and not sharded

    def with_(self, **changes) -> "MemorySetup":
        return replace(self, **changes)

    @property
    def sharded_mixed_precision(self) -> bool:
        """DeepSpeed or FSDP mixed precision: the layers run in 16 bit, whatever the weights were loaded in."""
        return self.strategy in ("deepspeed", "fsdp") and self.mixed_precision != "no"

    @property
    def autocast(self) -> bool:
        """The forward runs under torch.autocast: accelerate wraps it for bf16/fp16, except under DeepSpeed,
        whose engine casts the module (adapters included) to its 16-bit dtype instead."""
        return self.mixed_precision != "no" and self.strategy != "deepspeed"

    @property
    def cuda_fp32_ops(self) -> bool:
        """CUDA autocast runs LayerNorm, `pow` and softmax without a dtype in fp32 (ATen's AT_FORALL_FP32
        lists) where CPU autocast keeps them in 16 bit. It changes what is saved where their inputs are
        16 bit and autocast is on: accelerate wraps the forward in it for bf16/fp16 except under DeepSpeed."""
        sixteen_bit = not self.qlora_fp32_residual and (self.dtype != "fp32" or self.sharded_mixed_precision)
        return self.device == "cuda" and self.autocast and sixteen_bit

    @property
    def qlora_fp32_residual(self) -> bool:
        """QLoRA after peft's kbit preparation: embeddings, norms and head in fp32, so the residual stream
        is fp32 (DeepSpeed/FSDP mixed precision keeps it 16 bit)."""
        return self.method == "qlora" and self.kbit_fp32_upcast and not self.sharded_mixed_precision

    @property
    def accumulates(self) -> bool:
        """Gradients outlive a micro-batch (accumulation, or a batch size not known)."""
        return self.sequences_per_rank == 0 or self.sequences_per_rank > self.micro_batch

    @property
    def shard_stage(self) -> int:
        """ZeRO-equivalent partitioning: DeepSpeed's stage, 3 for FSDP, 0 otherwise."""
        if self.strategy == "deepspeed":
            return self.zero
        if self.strategy == "fsdp":
            return {"full_shard": 3, "hybrid_shard": 3, "shard_grad_op": 2}.get(self.fsdp_sharding, 0)
        return 0

    @property
    def max_shard_stage(self) -> int:
        """The highest ZeRO-equivalent stage the runtime can run: QLoRA's uint8-packed 4-bit weights can be
        neither partitioned by ZeRO-3 nor flattened by FSDP1 (E0416, E0419)."""
        return 2 if self.method == "qlora" else 3

    @property
    def gathers_params(self) -> bool:
        """Whole layers are gathered from shards or from host memory to run: stage 3 over more than one
        rank, or with parameters offloaded."""
        return self.shard_stage == 3 and (self.shards > 1 or self.offload_params != "none")

    @property
    def shards(self) -> int:
        if self.shard_stage == 0:
            return 1
        if self.strategy == "fsdp" and self.fsdp_sharding == "hybrid_shard":
            return max(1, min(self.gpus_per_node, self.dp_world))  # sharded within a node, replicated across
        return max(1, self.dp_world)

    @property
    def ranks_per_node(self) -> int:
        return max(1, min(self.gpus_per_node, self.dp_world))
