"""CycleISP's training losses (the paper's; the official repository has no training code).

``||.||_1`` is taken as the mean absolute difference (``F.l1_loss``), so the weights do not depend on the crop
size. ``log_eps`` (1e-3) and the joint weight ``beta`` are not fixed by the official code: ``beta`` is required.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

LOG_EPS = 1e-3
"""The floor under RAW values before the log of the RGB2RAW loss (the spec: "1e-3, unconfirmed")."""


def _check_pair(prediction: Tensor, target: Tensor, what: str) -> None:
    if not isinstance(prediction, Tensor) or not isinstance(target, Tensor) or prediction.shape != target.shape:
        raise ValueError(f"{what}: prediction and target must be tensors of one shape, got "
                         f"{tuple(getattr(prediction, 'shape', ()))} and {tuple(getattr(target, 'shape', ()))}")


def rgb2raw_loss(predicted_raw: Tensor, target_raw: Tensor, log_eps: float = LOG_EPS) -> Tensor:
    """``L_s2r = |R^ - R|_1 + |log(max(R^, eps)) - log(max(R, eps))|_1`` (means): the log term gives dark
    regions a weight comparable to highlights. Packed RAW ``(N, 4, h, w)`` (any equal shapes)."""
    _check_pair(predicted_raw, target_raw, "rgb2raw_loss")
    if not log_eps > 0:
        raise ValueError(f"log_eps must be positive, got {log_eps!r}")
    log_difference = torch.log(predicted_raw.clamp_min(log_eps)) - torch.log(target_raw.clamp_min(log_eps))
    return F.l1_loss(predicted_raw, target_raw) + log_difference.abs().mean()


def raw2rgb_loss(predicted_rgb: Tensor, target_rgb: Tensor) -> Tensor:
    """``L_r2s = |I^ - I|_1`` (mean), for RAW2RGB with its CCM branch. sRGB ``(N, 3, H, W)``."""
    _check_pair(predicted_rgb, target_rgb, "raw2rgb_loss")
    return F.l1_loss(predicted_rgb, target_rgb)


def joint_loss(predicted_raw: Tensor, target_raw: Tensor, predicted_rgb: Tensor, target_rgb: Tensor, *,
               beta: float, log_eps: float = LOG_EPS) -> Tensor:
    """``L_joint = beta L_s2r + (1 - beta) L_r2s`` of the joint fine-tuning, ``beta`` in [0, 1]. Pass the
    RAW2RGB output computed from RGB2RAW's prediction, so that RGB2RAW receives gradients from both terms."""
    if not 0 <= beta <= 1:
        raise ValueError(f"beta must be in [0, 1], got {beta!r}")
    return beta * rgb2raw_loss(predicted_raw, target_raw, log_eps) + (1 - beta) * raw2rgb_loss(predicted_rgb, target_rgb)
