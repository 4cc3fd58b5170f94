"""CUDA autocast's fp32 policy, applied on a CPU build, for measuring what a GPU run saves for backward.

CPU and CUDA autocast cast matmuls and linears to 16 bit alike, but only CUDA's runs the ops of
ATen's `AT_FORALL_FP32` and `AT_FORALL_FP32_SET_OPT_DTYPE` lists (torch/include/ATen/autocast_mode.h)
in fp32: LayerNorm, `pow`, softmax without a dtype... A CPU build keeps those in 16 bit, so a
LayerNorm model measured under CPU autocast saves less than the same model under the Trainer on a GPU.
`cuda_fp32_policy()` casts the 16-bit floating arguments of those ops (the ones decoder code reaches
from Python) to fp32 before they run, as CUDA autocast's `cached_cast` does, and gives softmax-like
ops without a dtype `dtype=torch.float32`, as `fp32_set_opt_dtype` does.
"""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode

F = torch.nn.functional
LOW = (torch.bfloat16, torch.float16)

# AT_FORALL_FP32: every 16-bit floating argument goes to fp32
CAST_TO_FP32 = {F.layer_norm, torch.layer_norm, F.group_norm, F.rms_norm, torch.pow, torch.Tensor.pow,
                torch.Tensor.__pow__, torch.Tensor.__rpow__, torch.rsqrt, torch.Tensor.rsqrt, torch.exp,
                torch.Tensor.exp, torch.log, torch.Tensor.log, torch.expm1, torch.log1p, F.softplus,
                torch.logsumexp, torch.Tensor.logsumexp, F.cosine_similarity, F.mse_loss, F.l1_loss,
                F.nll_loss, F.binary_cross_entropy_with_logits, F.kl_div}
# AT_FORALL_FP32_SET_OPT_DTYPE: run in fp32 unless the call names a dtype
SET_FP32_DTYPE = {F.softmax, torch.softmax, torch.Tensor.softmax, F.log_softmax, torch.log_softmax,
                  torch.Tensor.log_softmax, torch.cumsum, torch.Tensor.cumsum, torch.sum, torch.Tensor.sum,
                  torch.prod, torch.Tensor.prod}


def _up(value):
    if isinstance(value, torch.Tensor) and value.dtype in LOW:
        return value.float()
    if isinstance(value, (list, tuple)):
        return type(value)(_up(v) for v in value)
    return value


class cuda_fp32_policy(TorchFunctionMode):
    """Use inside `torch.autocast("cpu", dtype=torch.bfloat16)`: the two together follow CUDA autocast."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in CAST_TO_FP32:
            args, kwargs = _up(args), {k: _up(v) for k, v in kwargs.items()}
        elif func in SET_FP32_DTYPE and kwargs.get("dtype") is None and args \
                and isinstance(args[0], torch.Tensor) and args[0].dtype in LOW:
            kwargs["dtype"] = torch.float32
        return func(*args, **kwargs)
