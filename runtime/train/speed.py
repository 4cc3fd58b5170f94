"""The efficiency switches of the plan, applied to the loaded model and the Trainer.

- packed batches run attention per example (varlen.py) instead of over a block-diagonal mask;
- `train.chunked_cross_entropy`: the loss takes the last hidden states and the output head's weight
  (loss.py), so the `tokens × vocab` logits never exist;
- `train.compile`: each decoder layer is compiled by torch.compile (regional compilation: one graph
  reused by every layer, the head and the loss stay eager);
- `train.optimizer_impl`: AdamW's fused or foreach kernel.
Each falls back to the plain path where the model or device does not support it, and says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import loss as chunked
from . import varlen


@dataclass(frozen=True)
class Speedups:
    head: Any = None  # the output head the chunked loss applies, or None (plain loss)
    attention: str | None = None  # the attention implementation set for packed batches, or None (unchanged)
    compiled_layers: int = 0
    notes: tuple[str, ...] = ()


def _base(model):
    """The transformers model under a peft wrapper."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _decoder_layers(model) -> list:
    for name, module in model.named_modules():
        if type(module).__name__.endswith("DecoderLayer"):
            yield module


def apply(plan, model) -> Speedups:
    """Set the model up as the plan's switches say; returns what was applied (for the Trainer and messages)."""
    train = plan.train
    base = _base(model)
    notes = []
    attention = None
    if plan.data.packing and plan.model.attention == "sdpa" and varlen.supported(base.config):
        attention = varlen.register()
        base.set_attn_implementation(attention)
    head = None
    dist = plan.distributed
    sharded = dist.strategy == "fsdp" or (dist.strategy == "deepspeed" and dist.zero == 3)
    if sharded and train.chunked_cross_entropy:
        notes.append("chunked cross-entropy: the output head is sharded (ZeRO-3/FSDP); the plain loss is used")
    elif train.chunked_cross_entropy:
        head = chunked.output_head(base)
        if head is None:
            notes.append(f"chunked cross-entropy: not supported for {base.config.model_type}; the plain loss is used")
    layers = 0
    if train.compile:
        for layer in _decoder_layers(base):
            layer.compile(dynamic=True)
            layers += 1
        if not layers:
            notes.append("compile: no decoder layers found; the model runs eagerly")
    return Speedups(head, attention, layers, tuple(notes))


def optimizer_name(plan, names: dict[str, str]) -> str | None:
    """transformers' `optim` for the plan's optimizer: AdamW's fused kernel where the plan says so, or
    `auto` on a GPU (torch's fused AdamW); foreach otherwise (torch's default for AdamW on CUDA tensors)."""
    name = names.get(plan.train.optimizer)
    impl = plan.train.optimizer_impl
    if name == "adamw_torch" and (impl == "fused" or (impl == "auto" and not plan.on_cpu)):
        return "adamw_torch_fused"
    return name


class ChunkedLossTrainer:
    """Trainer mixin: in training, the model returns its last hidden states and the chunked loss applies
    the output head. Evaluation and prediction keep the model's own loss (they hold no activations)."""

    ftc_loss_head = None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        head = self.ftc_loss_head
        if head is None or return_outputs or "labels" not in inputs or not model.training \
                or self.label_smoother is not None or self.compute_loss_func is not None:
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        labels = inputs["labels"]
        rest = {k: v for k, v in inputs.items() if k != "labels"}
        with chunked.hidden_states_out(head):
            outputs = model(**rest)
        hidden = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        items = num_items_in_batch if self.model_accepts_loss_kwargs else None
        loss = chunked.chunked_cross_entropy(hidden, head.weight, labels, bias=head.bias, num_items_in_batch=items)
        if self.args.average_tokens_across_devices and self.model_accepts_loss_kwargs and items is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        return loss
