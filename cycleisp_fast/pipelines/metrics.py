"""Image-quality metrics, batched: PSNR and SSIM per image of ``(N, C, H, W)`` tensors.

:func:`psnr` and :func:`ssim` follow scikit-image, which the CycleISP scripts call: ``peak_signal_noise_ratio`` and
``structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=0)``
(Wang et al. 2004, what CycleISP's ``batch_SSIM`` meant to compute). :func:`ssim_matlab` is MATLAB's ``ssim``,
with which MPRNet, Restormer and most papers since score SIDD (``evaluate_SIDD.m``); MATLAB's ``psnr`` is
:func:`psnr`. All compute in float64.

Example::

    psnr(denoised, clean), ssim(denoised, clean), ssim_matlab(denoised, clean)  # each (N,) float64
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from cycleisp_fast.checks import check_tensor

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
        x: ``(N, C, H, W)`` floating tensor, e.g. the restored images in [0, 1].
        y: ``(N, C, H, W)`` floating tensor of ``x``'s shape, e.g. the clean images.
        data_range: the span of valid values (1.0 for [0, 1]).

    Returns:
        ``(N,)`` float64; ``inf`` where the two images are identical (mse 0), as scikit-image gives.
    """
    _check_pair(x, y, data_range)
    mse = (x.double() - y.double()).square().mean(dim=(1, 2, 3))
    return 10 * torch.log10(data_range**2 / mse)  # x / 0 = inf for identical images


def gaussian_window(dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> Tensor:
    """The 1-D SSIM window ``(2 * SSIM_RADIUS + 1,)``: ``exp(-k**2 / (2 sigma**2))`` normalised to sum 1."""
    offsets = torch.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=dtype, device=device)
    window = torch.exp(-offsets.square() / (2 * SSIM_SIGMA**2))
    return window / window.sum()


def _ssim_map(x64: Tensor, y64: Tensor, local_mean: Callable[[Tensor], Tensor], data_range: float) -> Tensor:
    """Wang et al.'s SSIM map of two float64 tensors, ``local_mean`` giving the weighted local means (applied to
    ``x, y, x*x, y*y, x*y`` stacked on the first axis)."""
    moments = local_mean(torch.cat([x64, y64, x64 * x64, y64 * y64, x64 * y64]))
    mean_x, mean_y, mean_xx, mean_yy, mean_xy = moments.chunk(5)
    var_x, var_y = mean_xx - mean_x * mean_x, mean_yy - mean_y * mean_y
    cov_xy = mean_xy - mean_x * mean_y
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    return (
        (2 * mean_x * mean_y + c1)
        * (2 * cov_xy + c2)
        / ((mean_x * mean_x + mean_y * mean_y + c1) * (var_x + var_y + c2))
    )


def ssim(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """Structural similarity of each image (Wang et al. 2004), the mean over its channels.

    Local means, variances and the covariance are Gaussian-weighted (11x11 window, sigma 1.5), with population
    (not sample) covariance; ``C1 = (0.01 * data_range)**2``, ``C2 = (0.03 * data_range)**2``. The SSIM map is
    averaged over the pixels whose window lies inside the image, as scikit-image does (it filters with reflected
    borders, then crops them away: only whole windows remain).

    Args:
        x: ``(N, C, H, W)`` floating tensor, ``H, W >= 11``, e.g. the restored images.
        y: ``(N, C, H, W)`` floating tensor of ``x``'s shape, e.g. the clean images.
        data_range: the span of valid values (1.0 for [0, 1]).

    Returns:
        ``(N,)`` float64 in [-1, 1].
    """
    _check_pair(x, y, data_range)
    size = 2 * SSIM_RADIUS + 1
    if min(x.shape[-2:]) < size:
        raise ValueError(
            f"x and y must be at least {size}x{size} pixels for SSIM's {size}x{size} window, "
            f"got {x.shape[-2]}x{x.shape[-1]}"
        )
    n, c, h, w = x.shape
    window = gaussian_window(device=x.device)

    def local_mean(image: Tensor) -> Tensor:  # (N*C*5, 1, H, W) -> the valid part, separably
        image = F.conv2d(image, window.view(1, 1, size, 1))
        return F.conv2d(image, window.view(1, 1, 1, size))

    x64, y64 = x.double().reshape(n * c, 1, h, w), y.double().reshape(n * c, 1, h, w)
    ssim_map = _ssim_map(x64, y64, local_mean, data_range)
    return ssim_map.reshape(n, c, -1).mean(dim=2).mean(dim=1)


def ssim_matlab(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """SSIM of each image as MATLAB's ``ssim(A, ref)`` (Image Processing Toolbox, default options) computes it for
    the ``H x W x C`` array of a ``(C, H, W)`` image.

    MATLAB treats a 3-D array, an RGB image included, as a volume (``DataFormat`` ``"SSS"``, its default): the
    local statistics are Gaussian-weighted over x, y *and the channel axis* (sigma 1.5, ``2 * ceil(3 * 1.5) + 1
    = 11`` taps along each axis, the same taps as :func:`gaussian_window`), with replicated borders
    (``Padding "replicate"``, so the 3 channels of an RGB image are padded with copies of the first and last),
    population moments, ``C1 = (0.01 L)**2``, ``C2 = (0.03 L)**2`` (L = ``data_range``: 1 for single/double
    images, 255 for uint8, which gives the same value as the uint8 image / 255 with L = 1), and the SSIM map is
    averaged over every pixel and channel, borders included. One channel is MATLAB's 2-D ``ssim``. Not the mean of
    per-channel SSIMs, and not scikit-image's :func:`ssim` (reflected borders, cropped from the mean).

    Matches MATLAB up to rounding: MATLAB computes single inputs in single precision, this in float64.

    Args:
        x: ``(N, C, H, W)`` floating tensor, MATLAB's ``A`` (e.g. the restored images, in [0, 1]).
        y: ``(N, C, H, W)`` floating tensor of ``x``'s shape, MATLAB's ``ref`` (e.g. the clean images).
        data_range: the span of valid values (1.0 for [0, 1]).

    Returns:
        ``(N,)`` float64.
    """
    _check_pair(x, y, data_range)
    n, c, h, w = x.shape
    size = 2 * SSIM_RADIUS + 1
    window = gaussian_window(device=x.device)

    def local_mean(volume: Tensor) -> Tensor:  # (M, 1, C, H, W), same size: replicated borders, separable taps
        volume = F.pad(volume, (SSIM_RADIUS,) * 6, mode="replicate")
        for shape in ((1, 1, size, 1, 1), (1, 1, 1, size, 1), (1, 1, 1, 1, size)):
            volume = F.conv3d(volume, window.view(shape))
        return volume

    x64, y64 = x.double().reshape(n, 1, c, h, w), y.double().reshape(n, 1, c, h, w)
    ssim_map = _ssim_map(x64, y64, local_mean, data_range)
    return ssim_map.reshape(n, -1).mean(dim=1)


def mean_finite(values: Tensor) -> float:
    """The mean of the finite entries of ``values`` (PSNRs of identical images are ``inf``; CycleISP's
    ``batch_PSNR`` skips them too); ``nan`` when there is none."""
    finite = values[torch.isfinite(values)]
    return float(finite.double().mean()) if finite.numel() else math.nan
