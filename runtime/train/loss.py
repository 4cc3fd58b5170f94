"""Chunked linear cross-entropy: the language-model loss without the `tokens × vocab` logits tensor.

The plain loss builds logits for every position (prompt and padding included), upcasts them to fp32 and
keeps them, plus their softmax, for the backward pass: at a 128k vocabulary that is the largest tensor
of a fine-tuning step. Here only the positions that carry a label are projected, a chunk of rows at a
time; each chunk's gradient (softmax minus one-hot, times the head's weight) is taken at once and the
chunk's logits are freed, so at most one chunk of logits exists. The loss and gradients are those of
transformers' causal-LM loss (shift by one, -100 ignored, sum over `num_items_in_batch` or mean).

On CUDA, liger-kernel's fused kernel (Triton) does the same when it is installed.
"""

from __future__ import annotations

from contextlib import contextmanager

IGNORE = -100
from ftc.plan.loss import LOSS_CHUNK_ELEMENTS as CHUNK_ELEMENTS  # noqa: E402  (the estimator's too)


def chunk_rows(vocab: int, elements: int = CHUNK_ELEMENTS) -> int:
    """Rows per chunk so that one chunk of fp32 logits holds at most `elements` values."""
    return max(1, elements // max(1, vocab))


def _function():
    import torch

    class ChunkedLinearCrossEntropy(torch.autograd.Function):
        """Sum of token losses times `scale`; gradients are computed in forward, chunk by chunk."""

        @staticmethod
        def forward(ctx, hidden, weight, bias, targets, rows: int, scale: float, grads: bool):
            need_h = grads and ctx.needs_input_grad[0]
            need_w = grads and ctx.needs_input_grad[1]
            need_b = grads and bias is not None and ctx.needs_input_grad[2]
            total = torch.zeros((), dtype=torch.float32, device=hidden.device)
            grad_h = torch.empty_like(hidden) if need_h else None
            grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
            grad_b = torch.zeros(weight.shape[0], dtype=torch.float32, device=weight.device) if need_b else None
            ctx.dtypes = (weight.dtype, bias.dtype if bias is not None else None)
            weight = weight.to(hidden.dtype)  # an fp32 head under 16-bit compute (QLoRA) works as autocast would
            bias = bias.to(hidden.dtype) if bias is not None else None
            for start in range(0, hidden.shape[0], rows):
                h, t = hidden[start:start + rows], targets[start:start + rows]
                # logits transposed, (vocab, rows): `weight @ h.T` reads the weight as stored, where
                # `h @ weight.T` makes a transposed copy of the whole weight on CPU at every call
                logits = (weight @ h.t()).float()
                if bias is not None:
                    logits += bias.float()[:, None]
                cols = torch.arange(len(t), device=t.device)
                picked = logits[t, cols]
                top = logits.amax(dim=0, keepdim=True)
                probs = logits.sub_(top).exp_()  # in place: the one chunk-sized tensor
                sums = probs.sum(dim=0, keepdim=True)
                total += (top.squeeze(0) + sums.log().squeeze(0) - picked).sum()
                if need_h or need_w or need_b:
                    grad = probs.div_(sums)  # softmax
                    grad[t, cols] -= 1.0
                    grad = grad.mul_(scale).to(hidden.dtype)
                    if need_b:
                        grad_b += grad.float().sum(1)
                    if need_h:
                        grad_h[start:start + rows] = grad.t() @ weight
                    if need_w:
                        grad_w.addmm_(grad.float(), h.float())  # in place: no second weight-sized tensor
                    del grad
                del logits, probs
            ctx.save_for_backward(grad_h, grad_w, grad_b)
            return total * scale

        @staticmethod
        def backward(ctx, grad_out):
            grad_h, grad_w, grad_b = ctx.saved_tensors
            wd, bd = ctx.dtypes
            return (grad_h * grad_out.to(grad_h.dtype) if grad_h is not None else None,
                    (grad_w * grad_out).to(wd) if grad_w is not None else None,
                    (grad_b * grad_out).to(bd) if grad_b is not None else None,
                    None, None, None, None)

    return ChunkedLinearCrossEntropy


_FN: list = []


def _liger(hidden, weight, bias, targets):
    """liger-kernel's fused linear cross-entropy (sum), or None where it is not installed."""
    try:
        from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy
    except ImportError:
        return None
    return liger_fused_linear_cross_entropy(hidden, weight, targets, bias=bias, ignore_index=IGNORE,
                                            reduction="sum")


def chunked_cross_entropy(hidden, weight, labels, *, bias=None, num_items_in_batch=None, rows: int | None = None,
                          use_liger: bool = True):
    """Causal-LM loss from the last hidden states (B, T, H) and the output head's weight (V, H).

    Same value as transformers' `ForCausalLMLoss` on `hidden @ weight.T`: labels shifted left by one,
    -100 ignored, summed and divided by `num_items_in_batch` when given, else averaged."""
    import torch

    shifted = torch.nn.functional.pad(labels, (0, 1), value=IGNORE)[..., 1:].reshape(-1)
    keep = shifted != IGNORE
    h = hidden.reshape(-1, hidden.shape[-1])[keep]
    t = shifted[keep].to(h.device)
    denom = num_items_in_batch if num_items_in_batch is not None else keep.sum()
    denom = float(denom.item() if torch.is_tensor(denom) else denom)
    scale = 1.0 / denom if denom else 0.0  # no trained token in the batch: a zero loss
    if use_liger and h.is_cuda:
        total = _liger(h, weight, bias, t)
        if total is not None:
            return total * scale
    if not _FN:
        _FN.append(_function())
    return _FN[0].apply(h, weight, bias, t, rows or chunk_rows(weight.shape[0]), scale, torch.is_grad_enabled())

@contextmanager
def hidden_states_out(head):
    """Within the block the model's output head passes its input through: the forward pass returns the
    last hidden states as `logits`, and the loss above applies the head itself."""
    head.forward = _passthrough
    try:
        yield
    finally:
        del head.forward


def _passthrough(x):
    return x


# Causal-LM families whose head is a plain Linear applied to the last hidden states, with no scaling,
# soft-capping or auxiliary loss added to the language-model loss.
from ftc.plan.loss import CHUNKED_LOSS_FAMILIES as FAMILIES  # noqa: E402


def output_head(model):
    """The plain Linear output head the chunked loss can take over, or None (the plain loss is used)."""
    import torch

    config = getattr(model, "config", None)
    if config is None or getattr(config, "model_type", "") not in FAMILIES:
        return None
    if getattr(config, "final_logit_softcapping", None) or getattr(config, "logit_scale", None):
        return None
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return head if type(head) is torch.nn.Linear else None
