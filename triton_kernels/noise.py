"""Triton kernel of the seeded noise ops (see csrc/ops/noise_math.h for the streams and formulas;
the device functions are triton_kernels/noise_math.py).

One program per tile of TILE = 1024 elements: it draws the tile's 256 Philox4x32-10 counters of round 0
(counter index j = 256 t + r, key = (seed lo32, seed hi32), counter = (lo32(j), hi32(j), 0, offset)), turns
words (0, 1) and (2, 3) of each counter into two Box-Muller pairs, and writes the four runs of 256 elements
that the words belong to (word w of counter 256 t + r is element 1024 t + 256 w + r).

- model 0 (heteroscedastic Gaussian): ``y = x + sqrt(max(shot x + read, 0)) z``.
- model 1 (Poisson-Gaussian): ``y = shot K + sqrt(read) z`` with K ~ Poisson(x / shot) drawn in float64
  from counter index j = i (rounds >= 1): inversion below INVERSION_LIMIT with a 52-bit uniform of words
  (0, 1) of round 1, Hormann's PTRS above (attempt a uses words (2 (a % 2), 2 (a % 2) + 1) of round
  1 + a / 2). ``shot == 0`` or NaN x gives ``x + sqrt(read) z``; a rate <= 0 gives K = 0.

The clip comes last. Compute is float32 (float64 for float64 x): float32 uses the header's branch-free
log_positive and sincos_two_pi on its float32 uniforms of 24 bits, float64 plain log/sin/cos on 32-bit
uniforms. Division and square root are rounded to nearest, and the kernel is compiled without FMA
contraction (``enable_fp_fusion=False``), so that each operation rounds as the header's does. Offsets are
int64.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from cycleisp_fast._dtypes import accumulation_dtype
from cycleisp_fast.triton_kernels.noise_math import (
    MAX_POISSON_ROUNDS,
    TILE,
    TILE_COUNTERS,
    _box_muller,
    _draw,
    _poisson,
)
from cycleisp_fast.triton_kernels.rounding import divide, sqrt, to_bfloat16

HETEROSCEDASTIC_GAUSSIAN, POISSON_GAUSSIAN = 0, 1


@triton.jit
def _write_run(
    x_ptr,
    shot_ptr,
    read_ptr,
    out_ptr,
    index,
    z,
    numel,
    plane_size,
    k0,
    k1,
    offset,
    clip_min,
    clip_max,
    MODEL: tl.constexpr,
    HAS_MIN: tl.constexpr,
    HAS_MAX: tl.constexpr,
    MAX_ROUNDS: tl.constexpr,
):
    """Writes the noisy elements at the int64 indices ``index`` given their standard normals z."""
    acc_dtype: tl.constexpr = shot_ptr.dtype.element_ty
    mask = index < numel
    plane = index // plane_size
    x = tl.load(x_ptr + index, mask=mask, other=0).to(acc_dtype)
    shot = tl.load(shot_ptr + plane, mask=mask, other=0)
    read = tl.load(read_ptr + plane, mask=mask, other=0)
    if MODEL == 0:
        variance = shot * x + read
        y = x + sqrt(tl.where(variance > 0, variance, 0.0)) * z
    elif MODEL == 2:  # the Gaussian model's d y / d variance, for its backward
        variance = shot * x + read
        positive = variance > 0
        y = tl.where(positive, divide(z, 2.0 * sqrt(tl.where(positive, variance, 1.0))), 0.0)
    else:
        gaussian = sqrt(read) * z
        direct = (shot == 0) | (x != x)
        shot64 = shot.to(tl.float64)
        rate = x.to(tl.float64) / tl.where(direct, 1.0, shot64)
        k = _poisson(rate, mask & ~direct, index, k0, k1, offset, MAX_ROUNDS)
        y = tl.where(direct, x + gaussian, (shot64 * k).to(acc_dtype) + gaussian)
    if HAS_MIN:
        y = tl.where(y < clip_min, clip_min, y)
    if HAS_MAX:
        y = tl.where(y > clip_max, clip_max, y)
    out_dtype: tl.constexpr = out_ptr.dtype.element_ty
    if out_dtype == tl.bfloat16:
        y = to_bfloat16(y)
    tl.store(out_ptr + index, y.to(out_dtype), mask=mask)


@triton.jit
def _int64(value):
    """An integer argument as an int64 scalar tensor, also where Triton specialised it to a constant (e.g. 1)."""
    return value + tl.zeros([], dtype=tl.int64)


@triton.jit
def noise_sample_kernel(
    x_ptr,
    shot_ptr,
    read_ptr,
    out_ptr,
    numel,
    plane_size,
    seed,
    offset,
    clip_min: tl.float64,
    clip_max: tl.float64,
    MODEL: tl.constexpr,
    HAS_MIN: tl.constexpr,
    HAS_MAX: tl.constexpr,
    TILE_COUNTERS: tl.constexpr,
    MAX_ROUNDS: tl.constexpr,
):
    """Writes tile ``program_id`` (TILE = 4 TILE_COUNTERS elements) of out from x ``(numel,)`` and the
    per-plane shot, read ``(numel / plane_size,)`` (compute dtype)."""
    acc_dtype: tl.constexpr = shot_ptr.dtype.element_ty
    seed = _int64(seed)
    k0 = (seed & 0xFFFFFFFF).to(tl.uint32)
    k1 = (seed >> 32).to(tl.uint32)
    offset = _int64(offset).to(tl.uint32)
    numel = _int64(numel)
    plane_size = _int64(plane_size)
    clip_min = tl.full([], clip_min, acc_dtype)
    clip_max = tl.full([], clip_max, acc_dtype)
    tile = tl.program_id(0).to(tl.int64)
    r = tl.arange(0, TILE_COUNTERS).to(tl.int64)
    w0, w1, w2, w3 = _draw(k0, k1, tile * TILE_COUNTERS + r, 0, offset)
    z0, z1 = _box_muller(w0, w1, acc_dtype)
    z2, z3 = _box_muller(w2, w3, acc_dtype)
    base = tile * (4 * TILE_COUNTERS) + r
    # The four runs of the tile, one call each (the formatter would give each call 21 lines).
    # fmt: off
    _write_run(x_ptr, shot_ptr, read_ptr, out_ptr, base, z0,
               numel, plane_size, k0, k1, offset, clip_min, clip_max, MODEL, HAS_MIN, HAS_MAX, MAX_ROUNDS)
    _write_run(x_ptr, shot_ptr, read_ptr, out_ptr, base + TILE_COUNTERS, z1,
               numel, plane_size, k0, k1, offset, clip_min, clip_max, MODEL, HAS_MIN, HAS_MAX, MAX_ROUNDS)
    _write_run(x_ptr, shot_ptr, read_ptr, out_ptr, base + 2 * TILE_COUNTERS, z2,
               numel, plane_size, k0, k1, offset, clip_min, clip_max, MODEL, HAS_MIN, HAS_MAX, MAX_ROUNDS)
    _write_run(x_ptr, shot_ptr, read_ptr, out_ptr, base + 3 * TILE_COUNTERS, z3,
               numel, plane_size, k0, k1, offset, clip_min, clip_max, MODEL, HAS_MIN, HAS_MAX, MAX_ROUNDS)
    # fmt: on


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
    """x: contiguous tensor of any shape, float16/bfloat16/float32/float64. shot, read: contiguous 1-D tensors of
    P values in the compute dtype (float32, float64 for float64 x), P divides x.numel(); element i (flat index)
    belongs to plane i // (numel // P). seed in [0, 2**63), offset in [0, 2**32). model 0 = heteroscedastic
    Gaussian y = x + sqrt(max(shot*x + read, 0)) * z, model 1 = Poisson-Gaussian
    y = shot*Poisson(max(x,0)/shot) + sqrt(read)*z (shot == 0 -> x + sqrt(read)*z). Clip applied last.
    Returns a new contiguous tensor like x."""
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    numel = x.numel()
    if numel == 0:
        return out
    assert shot.dtype == read.dtype == accumulation_dtype(x.dtype), "shot/read must be in the compute dtype"
    grid = (triton.cdiv(numel, TILE),)
    noise_sample_kernel[grid](
        x,
        shot,
        read,
        out,
        numel,
        numel // shot.numel(),
        int(seed),
        int(offset),
        0.0 if clip_min is None else float(clip_min),
        0.0 if clip_max is None else float(clip_max),
        MODEL=int(model),
        HAS_MIN=clip_min is not None,
        HAS_MAX=clip_max is not None,
        TILE_COUNTERS=TILE_COUNTERS,
        MAX_ROUNDS=MAX_POISSON_ROUNDS,
        enable_fp_fusion=False,
    )
    return out
