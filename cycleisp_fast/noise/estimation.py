"""Noise-level estimation for packed RAW: ``(shot, read)`` of ``variance = shot * x + read`` from one noisy image,
for RAW files whose metadata has no noise profile (CycleISP's raw denoiser needs the variance map; its issue #21).

The energy of a normalised high-pass residual in flat 8x8 blocks is compared with the blocks' brightness: blocks
touching clipped samples are dropped, the rest binned by brightness, texture rejected per bin (a clipped mean
started from the lower quartile), and a weighted line ``shot * level + read >= 0`` fitted, in the style of Foi et
al. 2008. Texture as faint as the noise cannot be told from it and biases the estimate upwards.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from cycleisp_fast.checks import check_tensor
from cycleisp_fast.noise.levels import NoiseLevels

_HIGH_PASS = torch.tensor([1.0, -2.0, 1.0], dtype=torch.float64)
_HIGH_PASS_2D = torch.outer(_HIGH_PASS, _HIGH_PASS) / 6  # sums to 0, squares sum to 1
NOISE_BLOCK = 8
"""Side of the blocks of residual whose energies the noise estimate compares, in packed pixels."""
_BINS = 16
_MIN_BLOCKS_PER_BIN = 8
_OUTLIER_RATIO = 2.0
"""Blocks with more than this many times their bin's noise energy are texture (flat 8x8 blocks of the residual
have about 17 degrees of freedom: 2x the mean is 3 standard deviations up)."""


def _weighted_line_fit(levels: Tensor, variances: Tensor, weights: Tensor) -> tuple[float, float]:
    """``(shot, read) >= 0`` minimising ``sum weights * (shot * levels + read - variances)**2``."""
    design = torch.stack([levels, torch.ones_like(levels)], dim=1) * weights.sqrt()[:, None]
    target = variances * weights.sqrt()
    shot, read = torch.linalg.lstsq(design, target[:, None]).solution.flatten().tolist()
    if read < 0:  # the best line through the origin
        shot, read = float((weights * levels * variances).sum() / (weights * levels.square()).sum()), 0.0
    if shot < 0:  # the best constant
        shot, read = 0.0, float((weights * variances).sum() / weights.sum())
    return max(shot, 0.0), read


def _flat_energy(energies: Tensor) -> tuple[Tensor, int]:
    """The mean energy of the flat blocks among ``energies`` (one brightness bin) and how many there are: from the
    lower quartile, the mean of the blocks below ``_OUTLIER_RATIO`` times the current mean, iterated (a fixed point
    within 1% of the flat blocks' mean; texture in up to three quarters of the blocks is rejected if it has more
    than twice their energy)."""
    mean = torch.quantile(energies, 0.25)
    for _ in range(6):
        kept = energies[energies <= _OUTLIER_RATIO * mean]
        mean = kept.mean()
    return mean, kept.numel()


def _fit_noise_line(levels: Tensor, variances: Tensor, counts: Tensor) -> tuple[float, float]:
    """``(shot, read)`` of the line through the bins' ``(level, variance)``: weighted least squares, reweighted
    by the fitted variances; bins above ``_OUTLIER_RATIO`` times the line (texture that filled them) are dropped
    and the line refitted."""
    keep = torch.ones_like(levels, dtype=torch.bool)
    while True:
        floor = max(float(variances[keep].max()) * 1e-6, 1e-12)
        weights = counts[keep] / variances[keep].clamp_min(floor).square()
        for _ in range(3):
            shot, read = _weighted_line_fit(levels[keep], variances[keep], weights)
            weights = counts[keep] / (shot * levels[keep] + read).clamp_min(floor).square()
        outliers = keep & (variances > _OUTLIER_RATIO * (shot * levels + read))
        if not outliers.any() or int((keep & ~outliers).sum()) < 2:
            return shot, read
        keep &= ~outliers


def estimate_raw_noise(packed: Tensor, *, pooled: bool = False) -> NoiseLevels:
    """Estimates the heteroscedastic noise ``variance = shot * x + read`` of packed RAW images.

    In the spirit of Foi et al. 2008 ("Practical Poissonian-Gaussian noise modeling and fitting for single-image
    raw-data"). For each of the four CFA planes: a 3x3 high-pass residual ``r``, the outer product of second
    differences normalised so that ``Var r = sigma**2`` for i.i.d. noise (it cancels flat areas, ramps and any
    signal that varies along one axis only, such as straight horizontal or vertical edges), and the local 3x3
    mean ``m``. Both are cut into 8x8 blocks; a block's level is its mean ``m`` and its energy its mean ``r**2``
    (the noise variance at that level where the block is smooth). Blocks touching a clipped sample are dropped:
    one >= 1 (saturated), or <= 0 when the image has no negative sample (clipped at 0; unclipped RAW keeps its
    noise below the black level, and those samples are used). The blocks of all four planes are sorted by level
    into up to 16 bins of equal count; in each, texture is rejected by a clipped mean of the energies (blocks
    above twice the mean of the others are dropped), which gives the bin's variance. A line ``shot * level +
    read`` is fitted to the bins by weighted least squares (weights ``count / variance**2``, the inverse variance
    of each estimate, with the fitted variances), with ``shot, read >= 0``; bins more than twice above the line
    are dropped and the line refitted.

    Limits: texture whose residual energy is comparable to the noise's cannot be told from it and biases the
    estimate up; an image of nearly one brightness cannot tell shot from read noise, though the fitted variance is
    right at that brightness.

    Args:
        packed: ``(N, 4, h, w)`` (or one ``(4, h, w)``) float in about [0, 1], ``h, w >= 10``.
        pooled: one estimate from the blocks of all N images together, for crops of one photograph (SIDD's 32
            blocks of an image share its noise level); a crop too dark or small to fit a line alone still counts.

    Returns:
        :class:`~cycleisp_fast.noise.NoiseLevels` of ``(N,)`` float64 tensors on the CPU (``(1,)`` when pooled).

    Example::

        levels = estimate_raw_noise(crops, pooled=True)  # crops (32, 4, 128, 128) -> levels.shot (1,)
    """
    if isinstance(packed, Tensor) and packed.dim() == 3:
        packed = packed[None]
    check_tensor(packed, "packed", shape_doc="(N, 4, h, w) packed RGGB in [0, 1]", channels=4)
    if not isinstance(pooled, bool):
        raise TypeError(f"pooled must be a bool, got {type(pooled).__name__}")
    n, _, height, width = packed.shape
    rows, cols = (height - 2) // NOISE_BLOCK * NOISE_BLOCK, (width - 2) // NOISE_BLOCK * NOISE_BLOCK
    if rows == 0 or cols == 0:
        raise ValueError(
            f"packed must be at least {NOISE_BLOCK + 2}x{NOISE_BLOCK + 2} to estimate its noise, got {height}x{width}"
        )
    planes = packed.detach().to("cpu", torch.float64).reshape(n * 4, 1, height, width)
    clipped_at_zero = (planes.reshape(n, -1) >= 0).all(dim=1).repeat_interleave(4).view(n * 4, 1, 1, 1)
    clipped = (planes >= 1) | ((planes <= 0) & clipped_at_zero)
    fits = 1 if pooled else n

    def blocks(window_map: Tensor, pool) -> Tensor:  # a map over 3x3 windows -> one value per block, (fits, -1)
        return pool(window_map[..., :rows, :cols], NOISE_BLOCK).reshape(fits, -1)

    energies = blocks(F.conv2d(planes, _HIGH_PASS_2D.view(1, 1, 3, 3)).square(), F.avg_pool2d)
    levels = blocks(F.avg_pool2d(planes, 3, stride=1), F.avg_pool2d)
    clipped = blocks(F.max_pool2d(clipped.double(), 3, stride=1), F.max_pool2d) > 0
    shots, reads = [], []
    for index in range(fits):
        keep = ~clipped[index]
        image_levels, image_energies = levels[index][keep], energies[index][keep]
        bins = min(_BINS, image_levels.numel() // _MIN_BLOCKS_PER_BIN)
        if bins < 2:
            which = f"the {n} images of packed together have" if pooled else f"image {index} of packed has"
            raise ValueError(
                f"{which} too few unclipped {NOISE_BLOCK}x{NOISE_BLOCK} blocks "
                f"({image_levels.numel()}) to estimate its noise; need {2 * _MIN_BLOCKS_PER_BIN}"
            )
        bin_levels, bin_variances, counts = [], [], []
        for chunk in torch.tensor_split(torch.argsort(image_levels), bins):
            variance, count = _flat_energy(image_energies[chunk])
            bin_levels.append(image_levels[chunk].mean())
            bin_variances.append(variance)
            counts.append(count)
        shot, read = _fit_noise_line(
            torch.stack(bin_levels), torch.stack(bin_variances), torch.tensor(counts, dtype=torch.float64)
        )
        shots.append(shot)
        reads.append(read)
    return NoiseLevels(torch.tensor(shots, dtype=torch.float64), torch.tensor(reads, dtype=torch.float64))
