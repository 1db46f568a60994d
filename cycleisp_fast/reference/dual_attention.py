"""The tail of CycleISP's Dual Attention Block (DAB) in plain PyTorch, as the official code computes it.

After the DAB's body has produced ``res`` (N, C, H, W) from the block input ``x``::

    s_sa = sigmoid(conv3x3_nobias(cat([max_c res, mean_c res])))           # (N, 1, H, W), spatial attention
    s_ca = sigmoid(W2 relu(W1 avgpool(res) + b1) + b2)                       # (N, C, 1, 1), channel attention
    out  = conv1x1(cat([res * s_sa, res * s_ca], dim=1), proj_w, proj_b) + x

(``ChannelPool`` puts the max first, then the mean; the SA conv has no bias; the CA reduction r is given by
the weight shapes.) Every step runs in the input dtype, as the official modules do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def channel_pool(res: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` -> ``(N, 2, H, W)``: the channel-wise max, then the channel-wise mean."""
    return torch.cat((torch.max(res, 1)[0].unsqueeze(1), torch.mean(res, 1).unsqueeze(1)), dim=1)


def spatial_attention_scale(res: torch.Tensor, sa_weight: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` res, ``(1, 2, 3, 3)`` weight -> ``(N, 1, H, W)`` scale in (0, 1)."""
    return torch.sigmoid(F.conv2d(channel_pool(res), sa_weight, padding=1))


def channel_attention_scale(
    res: torch.Tensor, ca_w1: torch.Tensor, ca_b1: torch.Tensor, ca_w2: torch.Tensor, ca_b2: torch.Tensor
) -> torch.Tensor:
    """``(N, C, H, W)`` res and the MLP ``(C/r, C, 1, 1)``, ``(C/r,)``, ``(C, C/r, 1, 1)``, ``(C,)`` ->
    ``(N, C, 1, 1)`` scale in (0, 1)."""
    hidden = F.relu(F.conv2d(F.adaptive_avg_pool2d(res, 1), ca_w1, ca_b1))
    return torch.sigmoid(F.conv2d(hidden, ca_w2, ca_b2))


def dual_attention(
    res: torch.Tensor,
    x: torch.Tensor,
    sa_weight: torch.Tensor,
    ca_w1: torch.Tensor,
    ca_b1: torch.Tensor,
    ca_w2: torch.Tensor,
    ca_b2: torch.Tensor,
    proj_w: torch.Tensor,
    proj_b: torch.Tensor,
) -> torch.Tensor:
    """``conv1x1(cat([SA(res), CA(res)])) + x``: ``(N, C, H, W)`` res and x -> ``(N, C, H, W)``."""
    sa = res * spatial_attention_scale(res, sa_weight)
    ca = res * channel_attention_scale(res, ca_w1, ca_b1, ca_w2, ca_b2)
    return F.conv2d(torch.cat([sa, ca], dim=1), proj_w, proj_b) + x
