"""Plain-PyTorch reference of the physics-based RAW noise op: the streams and formulas of
``csrc/ops/physical_noise_math.h`` (read its header comment), written with tensor ops.

The Philox words are the kernels' (:func:`cycleisp_fast.reference.noise.draw`); the Tukey-lambda quantile and
the row normals are evaluated in float64 from the same uniforms and rounded once, so they are the exact values
the float32 kernels approximate within a few ulp; the Poisson counts are the same integers; the parts are summed
in the compute dtype in the kernels' order.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

from cycleisp_fast._dtypes import accumulation_dtype
from cycleisp_fast.reference import noise as _noise

SHOT, GAUSSIAN_READ, TUKEY_READ, ROW, QUANTIZATION, COLOR_BIAS = 1, 2, 4, 8, 16, 32
"""Component bits of ``physical_noise`` (LED's letters p, g, t, r, q, c)."""
COMPONENT_LETTERS = {"p": SHOT, "g": GAUSSIAN_READ, "t": TUKEY_READ, "r": ROW, "q": QUANTIZATION, "c": COLOR_BIAS}
GAIN, SCALE, READ_SCALE, READ_SHAPE, ROW_SCALE, QUANT_STEP = range(6)
"""Columns of the per-image ``params`` tensor ``(N, 6)``."""
PARAM_NAMES = ("gain", "scale", "read_scale", "read_shape", "row_scale", "quant_step")
TUKEY_ROUND = 0xFFFFFFFD
QUANT_ROUND = 0xFFFFFFFE
ROW_ROUND = 0xFFFFFFFF
LOGISTIC_LIMIT = 1e-12
DIFFERENTIABLE_PARAMS = (READ_SCALE, ROW_SCALE, QUANT_STEP)
"""Params with a (pathwise) gradient; gain, scale and read_shape are constants to autograd."""


def tukey_lambda_quantile(u: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """``(u^lam - (1-u)^lam) / lam`` in float64 for u in (0, 1), the logistic ``log(u / (1-u))`` where
    ``|lam| < LOGISTIC_LIMIT``, written with expm1 so that it stays accurate as lam -> 0."""
    u = u.to(torch.float64)
    a, b = torch.log(u), torch.log1p(-u)
    logistic = lam.abs() < LOGISTIC_LIMIT
    safe = torch.where(logistic, torch.ones_like(lam), lam)
    return torch.where(logistic, a - b, (torch.expm1(safe * a) - torch.expm1(safe * b)) / safe)


def tile_words(numel: int, seed: int, offset: int, round_: int, device) -> torch.Tensor:
    """The words of elements 0 .. numel-1 in the tile layout of ``round_`` (that of the Gaussian stream: element
    1024 t + r takes word r // 256 of counter 256 t + r % 256), flat int64."""
    tiles = -(-numel // _noise.TILE)
    counters = torch.arange(tiles * _noise.TILE_COUNTERS, device=device, dtype=torch.int64)
    words = _noise.draw(seed, offset, counters, round_).view(tiles, _noise.TILE_COUNTERS, 4)
    return words.transpose(1, 2).reshape(-1)[:numel]


def row_normals(rows: int, seed: int, offset: int, dtype: torch.dtype, device) -> torch.Tensor:
    """The standard normals of sensor rows 0 .. rows-1 (in float64, from the uniforms of compute dtype ``dtype``):
    the cos branch of Box-Muller of words (0, 1) of round ROW_ROUND."""
    words = _noise.draw(seed, offset, torch.arange(rows, device=device, dtype=torch.int64), ROW_ROUND)
    u = _noise.uniform_open(words, dtype)
    return torch.sqrt(-2.0 * torch.log(u[:, 0])) * torch.cos(2.0 * math.pi * u[:, 1])


def _row_index(shape: Sequence[int], row_phase: Sequence[int], device) -> torch.Tensor:
    """The sensor row index (n * rows + row) of every element of x, shape (N, C, H, 1)."""
    n, c, h, _ = shape
    hh = torch.arange(h, device=device).view(1, 1, h, 1)
    nn = torch.arange(n, device=device).view(n, 1, 1, 1)
    if not row_phase:
        return nn * h + hh + torch.zeros(1, c, 1, 1, dtype=torch.int64, device=device)
    phase = torch.as_tensor(list(row_phase), device=device).view(1, c, 1, 1)
    return nn * (2 * h) + 2 * hh + phase


def physical_noise(
    x: torch.Tensor,
    params: torch.Tensor,
    bias: torch.Tensor,
    row_phase: Sequence[int],
    seed: int,
    offset: int,
    components: int,
    clip_min: Optional[float],
    clip_max: Optional[float],
) -> torch.Tensor:
    """Noisy ``y`` like ``x`` ``(N, C, H, W)``: see ``csrc/ops/physical_noise_math.h``. ``params`` ``(N, 6)`` holds
    gain, scale, read scale, read shape, row scale and quantisation step per image, ``bias`` ``(N, C)`` the
    colour bias (DN); both in the compute dtype. Differentiable in x (the mean's gradient through the Poisson
    part: identity), the read, row and quantisation scales (pathwise) and the bias; none where y ends at a clip
    bound."""
    acc = accumulation_dtype(x.dtype)
    n, c, h, w = x.shape
    numel = x.numel()
    xs = x.to(acc)
    per_image = [params[:, k].to(acc).view(n, 1, 1, 1) for k in range(6)]
    for k in set(range(6)) - set(DIFFERENTIABLE_PARAMS):
        per_image[k] = per_image[k].detach()
    gain, scale, read_scale, read_shape, row_scale, quant_step = per_image
    zero = torch.zeros((), dtype=acc, device=x.device)

    signal = scale * xs
    if components & SHOT:
        with torch.no_grad():
            degenerate = (gain == 0) | signal.isnan()
            rate = signal.to(torch.float64) / torch.where(gain == 0, 1.0, gain).to(torch.float64)
            count = _noise.poisson(rate.expand(n, c, h, w), seed, offset).view(n, c, h, w)
            value = torch.where(degenerate, signal, (gain.to(torch.float64) * count).to(acc))
        shot = _noise._WithIdentityGradient.apply(value, signal)
    else:
        shot = signal

    read = zero
    if components & GAUSSIAN_READ:
        z = _noise.standard_normal(numel, seed, offset, acc, x.device).view(n, c, h, w)
        read = read_scale * z
    if components & TUKEY_READ:
        u = _noise.uniform_open(tile_words(numel, seed, offset, TUKEY_ROUND, x.device), acc).view(n, c, h, w)
        read = read_scale * tukey_lambda_quantile(u, read_shape.to(torch.float64)).to(acc)
    row = zero
    if components & ROW:
        rows = n * (2 * h if row_phase else h)
        z_row = row_normals(rows, seed, offset, acc, x.device).to(acc)[_row_index(x.shape, row_phase, x.device)]
        row = row_scale * z_row
    quant = zero
    if components & QUANTIZATION:
        v = _noise.uniform_open(tile_words(numel, seed, offset, QUANT_ROUND, x.device), acc)
        quant = quant_step * (v - 0.5).to(acc).view(n, c, h, w)
    color = bias.to(acc).view(n, c, 1, 1) if components & COLOR_BIAS else zero
    y = ((((shot + read) + row) + quant) + color) / scale
    return _noise.clip(y, clip_min, clip_max).to(x.dtype)
