"""The papers' training losses: CycleISP's (the paper's; the official repository has no training code) and
AINDNet's (its Eq. 5-7).

``||.||_1`` is taken as the mean absolute difference (``F.l1_loss``), so the weights do not depend on the crop
size; likewise the asymmetric noise-level loss is a mean over elements (the paper leaves sum or mean open).
CycleISP's ``log_eps`` (1e-3) and joint weight ``beta`` are not fixed by the official code: ``beta`` is required.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from cycleisp_fast.models.aindnet import COARSE_SCALES, estimator_pool

LOG_EPS = 1e-3
"""The floor under RAW values before the log of the RGB2RAW loss (the spec: "1e-3, unconfirmed")."""


def _check_pair(prediction: Tensor, target: Tensor, what: str) -> None:
    if not isinstance(prediction, Tensor) or not isinstance(target, Tensor) or prediction.shape != target.shape:
        raise ValueError(
            f"{what}: prediction and target must be tensors of one shape, got "
            f"{tuple(getattr(prediction, 'shape', ()))} and {tuple(getattr(target, 'shape', ()))}"
        )


def rgb2raw_loss(predicted_raw: Tensor, target_raw: Tensor, log_eps: float = LOG_EPS) -> Tensor:
    """``L_s2r = |R^ - R|_1 + |log(max(R^, eps)) - log(max(R, eps))|_1`` (means): the log term gives dark
    regions a weight comparable to highlights. Packed RAW ``(N, 4, h, w)`` (any equal shapes).

    Shape:
        - predicted_raw, target_raw: ``(N, 4, h, w)``, or any one shape
        - output: ``()``

    Example:
        >>> rgb2raw_loss(torch.full((1, 4, 2, 2), 0.5), torch.full((1, 4, 2, 2), 0.25))  # 0.25 + log(2)
        tensor(0.9431)
    """
    _check_pair(predicted_raw, target_raw, "rgb2raw_loss")
    if not log_eps > 0:
        raise ValueError(f"log_eps must be positive, got {log_eps!r}")
    log_difference = torch.log(predicted_raw.clamp_min(log_eps)) - torch.log(target_raw.clamp_min(log_eps))
    return F.l1_loss(predicted_raw, target_raw) + log_difference.abs().mean()


def raw2rgb_loss(predicted_rgb: Tensor, target_rgb: Tensor) -> Tensor:
    """``L_r2s = |I^ - I|_1`` (mean), for RAW2RGB with its CCM branch. sRGB ``(N, 3, H, W)``.

    Shape:
        - predicted_rgb, target_rgb: ``(N, 3, H, W)``, or any one shape
        - output: ``()``

    Example:
        >>> raw2rgb_loss(torch.full((1, 3, 4, 4), 0.5), torch.full((1, 3, 4, 4), 0.25))
        tensor(0.2500)
    """
    _check_pair(predicted_rgb, target_rgb, "raw2rgb_loss")
    return F.l1_loss(predicted_rgb, target_rgb)


def joint_loss(
    predicted_raw: Tensor,
    target_raw: Tensor,
    predicted_rgb: Tensor,
    target_rgb: Tensor,
    *,
    beta: float,
    log_eps: float = LOG_EPS,
) -> Tensor:
    """``L_joint = beta L_s2r + (1 - beta) L_r2s`` of the joint fine-tuning, ``beta`` in [0, 1]. Pass the
    RAW2RGB output computed from RGB2RAW's prediction, so that RGB2RAW receives gradients from both terms.

    Shape:
        - predicted_raw, target_raw: ``(N, 4, h, w)``; predicted_rgb, target_rgb: ``(N, 3, 2h, 2w)``
        - output: ``()``

    Example:
        >>> raw, rgb = torch.full((1, 4, 2, 2), 0.5), torch.full((1, 3, 4, 4), 0.5)
        >>> joint_loss(raw, raw / 2, rgb, rgb / 2, beta=0.5)  # 0.5 * 0.9431 + 0.5 * 0.25
        tensor(0.5966)
    """
    if not 0 <= beta <= 1:
        raise ValueError(f"beta must be in [0, 1], got {beta!r}")
    return beta * rgb2raw_loss(predicted_raw, target_raw, log_eps) + (1 - beta) * raw2rgb_loss(
        predicted_rgb, target_rgb
    )


ASYMMETRY = 0.25
"""AINDNet's alpha: over-estimating the noise level costs 0.25, under-estimating 0.75 (3x more)."""
SCALE_WEIGHTS = (0.2, 0.8)
"""AINDNet's weights of the full-resolution and the coarse noise-level terms."""
NOISE_LOSS_WEIGHT = 0.05
"""AINDNet's lambda: total synthetic-stage loss = L1 + 0.05 * multi-scale asymmetric loss."""


def asymmetric_noise_loss(estimate: Tensor, target: Tensor, alpha: float = ASYMMETRY) -> Tensor:
    """``mean(|alpha - 1[estimate - target < 0]| (estimate - target)^2)``, CBDNet's asymmetric loss (any equal
    shapes): under-estimates weigh ``1 - alpha``, over-estimates ``alpha``.

    Shape:
        - estimate, target: any one shape
        - output: ``()``

    Example:
        >>> target = torch.full((4,), 2.0)
        >>> asymmetric_noise_loss(target - 1, target), asymmetric_noise_loss(target + 1, target)
        (tensor(0.7500), tensor(0.2500))
    """
    _check_pair(estimate, target, "asymmetric_noise_loss")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    difference = estimate - target
    weight = torch.where(difference < 0, 1 - alpha, alpha)
    return (weight * difference.square()).mean()


def multiscale_asymmetric_loss(
    noise_map: Tensor,
    coarse: Tensor,
    target_sigma: Tensor,
    *,
    weights: tuple[float, float] = SCALE_WEIGHTS,
    alpha: float = ASYMMETRY,
) -> Tensor:
    """AINDNet's Eq. 5: ``w1 L_asym(noise_map, sigma) + w_s L_asym(coarse, pool_s(sigma))``.

    noise_map, target_sigma: ``(N, 3, H, W)``, the estimate and the true per-pixel noise std; coarse: the
    estimator's coarse map at scale ``s`` = 8 or 4, read from its shape. The coarse target is ``sigma`` pooled as
    the estimator pools (:func:`~cycleisp_fast.models.aindnet.estimator_pool`: the ``s x s`` mean at multiples
    of ``s``, TF 'SAME' windows at other sizes).

    Shape:
        - noise_map, target_sigma: ``(N, 3, H, W)``; coarse: ``(N, 3, ceil(ceil(H/4)/2), ceil(ceil(W/4)/2))`` at
          s = 8 (``(N, 3, ceil(H/4), ceil(W/4))`` at s = 4)
        - output: ``()``

    Example:
        >>> sigma = torch.full((1, 3, 16, 16), 0.1)
        >>> multiscale_asymmetric_loss(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 2, 2), sigma)  # 0.75 * 0.1^2
        tensor(0.0075)
    """
    _check_pair(noise_map, target_sigma, "multiscale_asymmetric_loss")
    targets = {scale: estimator_pool(target_sigma, scale) for scale in COARSE_SCALES}
    target = next((t for t in targets.values() if isinstance(coarse, Tensor) and t.shape == coarse.shape), None)
    if target is None:
        expected = " or ".join(str(tuple(t.shape)) for t in targets.values())
        raise ValueError(
            f"coarse must be target_sigma {tuple(target_sigma.shape)} at the estimator's coarse scale, "
            f"{expected}; got {tuple(getattr(coarse, 'shape', ()))}"
        )
    full_weight, coarse_weight = weights
    return full_weight * asymmetric_noise_loss(noise_map, target_sigma, alpha) + coarse_weight * asymmetric_noise_loss(
        coarse, target, alpha
    )


def aindnet_synthetic_loss(
    denoised: Tensor,
    clean: Tensor,
    noise_map: Tensor,
    coarse: Tensor,
    target_sigma: Tensor,
    *,
    lam: float = NOISE_LOSS_WEIGHT,
    alpha: float = ASYMMETRY,
) -> Tensor:
    """AINDNet's synthetic-noise stage (Eq. 6): ``|denoised - clean|_1 + lam * multiscale_asymmetric_loss``.
    Pass ``model(noisy, return_noise_map=True)``'s three outputs and the true noise std map.

    Shape:
        - denoised, clean, noise_map, target_sigma: ``(N, 3, H, W)``; coarse: as for
          :func:`multiscale_asymmetric_loss`
        - output: ``()``

    Example:
        >>> clean, sigma = torch.rand(1, 3, 16, 16), torch.full((1, 3, 16, 16), 0.1)
        >>> aindnet_synthetic_loss(clean, clean, torch.zeros_like(sigma), torch.zeros(1, 3, 2, 2), sigma)
        tensor(0.0004)
    """
    _check_pair(denoised, clean, "aindnet_synthetic_loss")
    return F.l1_loss(denoised, clean) + lam * multiscale_asymmetric_loss(noise_map, coarse, target_sigma, alpha=alpha)


def aindnet_real_loss(denoised: Tensor, clean: Tensor) -> Tensor:
    """AINDNet's real-noise stage (Eq. 7, both TF and RT): ``|denoised - clean|_1`` only.

    Shape:
        - denoised, clean: ``(N, 3, H, W)``, or any one shape
        - output: ``()``

    Example:
        >>> aindnet_real_loss(torch.full((1, 3, 4, 4), 0.5), torch.full((1, 3, 4, 4), 0.25))
        tensor(0.2500)
    """
    _check_pair(denoised, clean, "aindnet_real_loss")
    return F.l1_loss(denoised, clean)
