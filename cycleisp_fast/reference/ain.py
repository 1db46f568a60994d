"""Adaptive instance normalization (AINDNet's AIN) in plain PyTorch, as the official code computes it.

``y = (x - mu) / sqrt(var + eps) * (1 + gamma) + beta``, with mu and the biased variance var taken per
sample and channel over H x W (``tf.nn.moments`` over the spatial axes: ``F.instance_norm``'s statistics,
written out so that a 1 x 1 plane is allowed), and gamma, beta pixel-wise. AINDNet follows every AIN with
LeakyReLU(0.02): ``negative_slope`` fuses it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cycleisp_fast._dtypes import accumulation_dtype


def adaptive_instance_norm(
    x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float = 1e-5, negative_slope: float | None = None
) -> torch.Tensor:
    """``(N, C, H, W)`` x, gamma, beta -> ``(N, C, H, W)``; statistics in float32 (float64 for float64)."""
    acc_dtype = accumulation_dtype(x.dtype)
    x_acc = x.to(acc_dtype)
    var, mean = torch.var_mean(x_acc, dim=(2, 3), keepdim=True, correction=0)
    out = (x_acc - mean) * torch.rsqrt(var + eps) * (1 + gamma.to(acc_dtype)) + beta.to(acc_dtype)
    if negative_slope is not None:
        out = F.leaky_relu(out, negative_slope)
    return out.to(x.dtype)
