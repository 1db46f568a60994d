"""Image-quality metrics, batched: PSNR and SSIM per image of ``(N, C, H, W)`` tensors.

Both follow scikit-image, which the CycleISP scripts call: :func:`psnr` is ``peak_signal_noise_ratio`` and
:func:`ssim` is ``structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
channel_axis=0)`` (Wang et al. 2004, what CycleISP's ``batch_SSIM`` meant to compute). Both compute in float64.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from cycleisp_fast.ops._checks import check_tensor

SSIM_SIGMA = 1.5
"""Standard deviation of the Gaussian window, in pixels."""
SSIM_RADIUS = int(3.5 * SSIM_SIGMA + 0.5)
"""The window's radius, 5: scipy's Gaussian truncated at 3.5 sigma, as scikit-image sets it; an 11x11 window."""
SSIM_K1, SSIM_K2 = 0.01, 0.03
"""The stabilising constants: ``C1 = (K1 * data_range)**2``, ``C2 = (K2 * data_range)**2``."""


def _check_pair(x: Tensor, y: Tensor, data_range: float) -> None:
    check_tensor(x, "x", shape_doc="(N, C, H, W)")
    check_tensor(y, "y", shape_doc="(N, C, H, W)")
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape (N, C, H, W), got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.numel() == 0:
        raise ValueError(f"x and y must be non-empty, got shape {tuple(x.shape)}")
    if isinstance(data_range, bool) or not isinstance(data_range, (int, float)) or not data_range > 0:
        raise ValueError(f"data_range must be a positive number (1.0 for images in [0, 1]), got {data_range!r}")


def psnr(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio of each image, in dB: ``10 log10(data_range**2 / mse)``.

    Args:
        x, y: ``(N, C, H, W)`` floating tensors of the same shape (e.g. restored and clean, in [0, 1]).
        data_range: the span of valid values (1.0 for [0, 1]).

    Returns:
        ``(N,)`` float64; ``inf`` where the two images are identical (mse 0), as scikit-image gives.
    """
    _check_pair(x, y, data_range)
    mse = (x.double() - y.double()).square().mean(dim=(1, 2, 3))
    return 10 * torch.log10(data_range ** 2 / mse)  # x / 0 = inf for identical images


def gaussian_window(dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> Tensor:
    """The 1-D SSIM window ``(2 * SSIM_RADIUS + 1,)``: ``exp(-k**2 / (2 sigma**2))`` normalised to sum 1."""
    offsets = torch.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=dtype, device=device)
    window = torch.exp(-offsets.square() / (2 * SSIM_SIGMA ** 2))
    return window / window.sum()


def ssim(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """Structural similarity of each image (Wang et al. 2004), the mean over its channels.

    Local means, variances and the covariance are Gaussian-weighted (11x11 window, sigma 1.5), with population
    (not sample) covariance; ``C1 = (0.01 * data_range)**2``, ``C2 = (0.03 * data_range)**2``. The SSIM map is
    averaged over the pixels whose window lies inside the image, as scikit-image does (it filters with reflected
    borders, then crops them away: only whole windows remain).

    Args:
        x, y: ``(N, C, H, W)`` floating tensors of the same shape, ``H, W >= 11``.
        data_range: the span of valid values (1.0 for [0, 1]).

    Returns:
        ``(N,)`` float64 in [-1, 1].
    """
    _check_pair(x, y, data_range)
    size = 2 * SSIM_RADIUS + 1
    if min(x.shape[-2:]) < size:
        raise ValueError(f"x and y must be at least {size}x{size} pixels for SSIM's {size}x{size} window, "
                         f"got {x.shape[-2]}x{x.shape[-1]}")
    n, c, h, w = x.shape
    window = gaussian_window(device=x.device)

    def local_mean(image: Tensor) -> Tensor:  # (N*C*5, 1, H, W) -> the valid part, separably
        image = F.conv2d(image, window.view(1, 1, size, 1))
        return F.conv2d(image, window.view(1, 1, 1, size))

    x64, y64 = x.double().reshape(n * c, 1, h, w), y.double().reshape(n * c, 1, h, w)
    moments = local_mean(torch.cat([x64, y64, x64 * x64, y64 * y64, x64 * y64]))
    mean_x, mean_y, mean_xx, mean_yy, mean_xy = moments.chunk(5)
    var_x, var_y = mean_xx - mean_x * mean_x, mean_yy - mean_y * mean_y
    cov_xy = mean_xy - mean_x * mean_y
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    ssim_map = ((2 * mean_x * mean_y + c1) * (2 * cov_xy + c2)
                / ((mean_x * mean_x + mean_y * mean_y + c1) * (var_x + var_y + c2)))
    return ssim_map.reshape(n, c, -1).mean(dim=2).mean(dim=1)


def mean_finite(values: Tensor) -> float:
    """The mean of the finite entries of ``values`` (PSNRs of identical images are ``inf``; CycleISP's
    ``batch_PSNR`` skips them too); ``nan`` when there is none."""
    finite = values[torch.isfinite(values)]
    return float(finite.double().mean()) if finite.numel() else math.nan
