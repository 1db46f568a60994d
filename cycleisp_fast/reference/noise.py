"""Plain-PyTorch reference of the seeded noise ops: the same Philox streams and formulas as
``csrc/ops/noise_math.h`` (read its header comment for the stream layout), written with tensor ops.

Philox runs in int64 tensors (32x32-bit products are split in 16-bit halves so nothing overflows); the
Box-Muller transform is evaluated in float64 from the same uniforms and rounded once, so it is the exact
value the float32 kernels approximate within a few ulp. The Poisson draws follow the kernels' float64
arithmetic operation for operation, so they are the same integers.
"""

from __future__ import annotations

import math

import torch

from cycleisp_fast._dtypes import accumulation_dtype

MASK32 = 0xFFFFFFFF
TILE = 1024
TILE_COUNTERS = 256
INVERSION_LIMIT = 10.0
MAX_POISSON_ROUNDS = 1 << 16
HETEROSCEDASTIC_GAUSSIAN, POISSON_GAUSSIAN, HETEROSCEDASTIC_SENSITIVITY = 0, 1, 2
"""The models of ``noise_sample``; the third is the first's d y / d variance, z / (2 sigma), for its backward."""


def _mulhilo(a: torch.Tensor, multiplier: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(high, low) 32-bit halves of a * multiplier for int64 tensors holding uint32 values."""
    t = (a & 0xFFFF) * multiplier
    u = (a >> 16) * multiplier + (t >> 16)
    return u >> 16, ((u & 0xFFFF) << 16) | (t & 0xFFFF)


def philox4x32_10(c0, c1, c2, c3, k0: int, k1: int) -> tuple[torch.Tensor, ...]:
    """Philox4x32-10 of counters (c0, c1, c2, c3) (int64 tensors of uint32 values, broadcastable) under the
    key (k0, k1); returns the four output words as int64 tensors."""
    for _ in range(10):
        hi0, lo0 = _mulhilo(c0, 0xD2511F53)
        hi1, lo1 = _mulhilo(c2, 0xCD9E8D57)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0, k1 = (k0 + 0x9E3779B9) & MASK32, (k1 + 0xBB67AE85) & MASK32
    return c0, c1, c2, c3


def draw(seed: int, offset: int, counter_index: torch.Tensor, round_: int) -> torch.Tensor:
    """The four words (shape ``counter_index.shape + (4,)``, int64) of counters ``(j, round, offset)``."""
    j = counter_index.to(torch.int64)
    zeros = torch.zeros_like(j)
    words = philox4x32_10(
        j & MASK32, (j >> 32) & MASK32, zeros + round_, zeros + offset, seed & MASK32, (seed >> 32) & MASK32
    )
    return torch.stack(words, dim=-1)


def uniform_open(words: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Uniforms in (0, 1) from words: 23-bit for float32 compute, 32-bit for float64 (exact in float64)."""
    if dtype == torch.float64:
        return (words.to(torch.float64) + 0.5) * 2.0**-32
    return ((words >> 9).to(torch.float64) + 0.5) * 2.0**-23


def standard_normal(numel: int, seed: int, offset: int, dtype: torch.dtype, device) -> torch.Tensor:
    """The Gaussian stream (round 0) of elements 0 .. numel-1, flat, in ``dtype`` (float32 or float64)."""
    tiles = -(-numel // TILE)
    counters = torch.arange(tiles * TILE_COUNTERS, device=device, dtype=torch.int64)
    u = uniform_open(draw(seed, offset, counters, 0), dtype).view(tiles, TILE_COUNTERS, 4)
    radius = torch.sqrt(-2.0 * torch.log(u[..., 0::2]))  # (tiles, 256, 2): pairs (0, 1) and (2, 3)
    angle = 2.0 * math.pi * u[..., 1::2]
    z = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=-1)  # (tiles, 256, pair, 2)
    z = z.reshape(tiles, TILE_COUNTERS, 4).transpose(1, 2)  # word w = 2 pair + (0 cos | 1 sin)
    return z.reshape(-1)[:numel].to(dtype)


def _uniform52(words: torch.Tensor) -> torch.Tensor:
    """(w0 * 2^32 + w1) >> 12 (52 bits), plus one half, times 2^-52: exact in float64, in (0, 1)."""
    bits = (words[..., 0] << 20) | (words[..., 1] >> 12)
    return (bits.to(torch.float64) + 0.5) * 2.0**-52


def log_factorial(k: torch.Tensor) -> torch.Tensor:
    """log(k!) for float64 integers k >= 0 as the kernels compute it: the log of the exact product below 10,
    Stirling's series with three correction terms above."""
    factorial = torch.ones_like(k)
    for j in range(2, 10):
        factorial = torch.where(k >= j, factorial * j, factorial)
    small = k < 10.0
    kk = torch.where(small, torch.full_like(k, 10.0), k)
    log_arg = torch.log(torch.where(small, factorial, kk))
    inv = 1.0 / kk
    inv2 = inv * inv
    series = inv * (1.0 / 12.0 - inv2 * (1.0 / 360.0 - inv2 * (1.0 / 1260.0)))
    return torch.where(small, log_arg, (kk + 0.5) * log_arg - kk + 0.91893853320467274 + series)


def _poisson_inversion(rate: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    k = torch.zeros_like(rate)
    p = torch.exp(-rate)
    cdf = p.clone()
    active = u > cdf
    while bool(active.any()):
        k = torch.where(active, k + 1.0, k)
        p = torch.where(active, p * (rate / k), p)
        nxt = cdf + p
        stalled = active & (nxt == cdf)
        cdf = torch.where(active & ~stalled, nxt, cdf)
        active = active & ~stalled & (u > cdf)
    return k


def _poisson_ptrs(rate: torch.Tensor, index: torch.Tensor, seed: int, offset: int) -> torch.Tensor:
    b = 0.931 + 2.53 * torch.sqrt(rate)
    a = -0.059 + 0.02483 * b
    inv_alpha = 1.1239 + 1.1328 / (b - 3.4)
    v_r = 0.9277 - 3.6224 / (b - 2.0)
    log_rate = torch.log(rate)
    k = torch.zeros_like(rate)
    pending = torch.ones_like(rate, dtype=torch.bool)
    for attempt in range(2 * MAX_POISSON_ROUNDS):
        if not bool(pending.any()):
            break
        sel = pending.nonzero().squeeze(1)
        words = draw(seed, offset, index[sel], 1 + attempt // 2)
        pair = 2 * (attempt % 2)
        u, v = uniform_open(words[:, pair], torch.float64), uniform_open(words[:, pair + 1], torch.float64)
        r, a_, b_ = rate[sel], a[sel], b[sel]
        centred = u - 0.5
        us = 0.5 - centred.abs()
        cand = torch.floor((2.0 * a_ / us + b_) * centred + r + 0.43)
        squeeze = (us >= 0.07) & (v <= v_r[sel])
        hopeless = (cand < 0.0) | ((us < 0.013) & (v > us))
        lhs = torch.log(v * inv_alpha[sel] / (a_ / (us * us) + b_))
        rhs = -r + cand * log_rate[sel] - log_factorial(cand.clamp(min=0.0))
        accepted = squeeze | (~hopeless & (lhs <= rhs))
        k[sel] = cand
        pending[sel[accepted]] = False
    return k


def poisson(rate: torch.Tensor, seed: int, offset: int) -> torch.Tensor:
    """Poisson draws of the float64 rates of a flat tensor (element i uses counter index i); rate <= 0 or NaN
    gives 0, an infinite rate infinity."""
    rate = rate.reshape(-1).to(torch.float64)
    index = torch.arange(rate.numel(), device=rate.device, dtype=torch.int64)
    k = torch.zeros_like(rate)
    small = (rate > 0) & (rate < INVERSION_LIMIT)
    if bool(small.any()):
        words = draw(seed, offset, index[small], 1)
        k[small] = _poisson_inversion(rate[small], _uniform52(words))
    k[rate == math.inf] = math.inf
    large = (rate >= INVERSION_LIMIT) & (rate < math.inf)
    if bool(large.any()):
        k[large] = _poisson_ptrs(rate[large], index[large], seed, offset)
    return k


class _WithIdentityGradient(torch.autograd.Function):
    """``value``, with the gradient flowing to ``x`` as if it were ``x`` (the straight-through ``value + (x -
    x.detach())`` without its ``inf - inf = NaN`` at infinite x)."""

    @staticmethod
    def forward(value: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return value.clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return None, grad


def noise_sample(
    x: torch.Tensor,
    shot: torch.Tensor,
    read: torch.Tensor,
    seed: int,
    offset: int,
    model: int,
    clip_min: float | None,
    clip_max: float | None,
) -> torch.Tensor:
    """Noisy ``y`` like ``x`` (any shape); ``shot``/``read`` are 1-D per-plane values (P dividing numel,
    element i in plane i // (numel // P)) in the compute dtype. model 0: ``x + sqrt(max(shot x + read, 0)) z``;
    model 1: ``shot Poisson(max(x, 0) / shot) + sqrt(read) z`` (``x + sqrt(read) z`` where shot == 0);
    model 2: model 0's d y / d variance, ``z / (2 sqrt(shot x + read))`` (0 where the variance is <= 0).
    Differentiable as the fused ops: pathwise for model 0 (0 where the variance is <= 0), the mean's gradient
    (identity in x) for model 1, none where y ends at a clip bound."""
    acc = accumulation_dtype(x.dtype)
    flat = x.reshape(-1).to(acc)
    per_plane = flat.numel() // shot.numel()
    shot_e = shot.to(acc).repeat_interleave(per_plane)
    read_e = read.to(acc).repeat_interleave(per_plane)
    z = standard_normal(flat.numel(), seed, offset, acc, x.device)
    if model in (HETEROSCEDASTIC_GAUSSIAN, HETEROSCEDASTIC_SENSITIVITY):
        variance = shot_e * flat + read_e
        positive = variance > 0
        sigma = torch.sqrt(torch.where(positive, variance, torch.ones_like(variance)))  # no inf gradient at 0
        if model == HETEROSCEDASTIC_SENSITIVITY:
            return torch.where(positive, z / (2 * sigma), 0.0).to(x.dtype).view(x.shape)
        y = flat + torch.where(positive, sigma, 0.0) * z
    else:
        with torch.no_grad():
            gaussian = torch.sqrt(read_e) * z
            rate = flat.to(torch.float64) / shot_e.to(torch.float64)
            poissonian = (shot_e.to(torch.float64) * poisson(rate, seed, offset)).to(acc)
            value = torch.where((shot_e == 0) | flat.isnan(), flat + gaussian, poissonian + gaussian)
        y = _WithIdentityGradient.apply(value, flat)  # the value, with the gradient of the mean E[y] = x
    return clip(y, clip_min, clip_max).to(x.dtype).view(x.shape)


def clip(y: torch.Tensor, clip_min: float | None, clip_max: float | None) -> torch.Tensor:
    """The noise ops' clip: ``y <= min`` becomes min, ``y >= max`` max (no gradient there); NaN passes."""
    if clip_min is not None:
        y = torch.where(y <= clip_min, torch.full_like(y, clip_min), y)
    if clip_max is not None:
        y = torch.where(y >= clip_max, torch.full_like(y, clip_max), y)
    return y
