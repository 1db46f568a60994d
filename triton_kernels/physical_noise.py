"""Triton kernel of ``cycleisp_fast::physical_noise`` (physics-based RAW noise: shot, Gaussian or Tukey-lambda
read, row, quantisation noise and colour bias). The formulas and the Philox stream layout are documented once,
in csrc/ops/physical_noise_math.h (built on csrc/ops/noise_math.h); the shared device functions (Philox words,
uniforms, Box-Muller, the exact Poisson sampler) are triton_kernels/noise_math.py.

One program per tile of TILE = 1024 elements, as the noise kernel (triton_kernels/noise.py): it draws the tile's
256 Philox counters (counter index 256 t + r) of round 0 (the normals, with Gaussian read noise), TUKEY_ROUND
(the Tukey-lambda uniforms) and QUANT_ROUND (the quantisation uniforms), each only where its part is on, and
writes the four runs of 256 elements that the words belong to (word w of counter 256 t + r is element
1024 t + 256 w + r). Each element finds its image n, channel c and row h from its flat int64 index, loads its
image's parameters, and draws its own Poisson rounds >= 1 at counter index i and its row's normal (the cos
branch of Box-Muller of words 0 and 1 of round ROW_ROUND at counter n * rows + row). The parts are summed in
the compute dtype in the header's order, ``((((shot + read) + row) + quant) + bias) / scale``, then clipped
as the reference does (``y <= min`` gives min, ``y >= max`` max).

Compute is float32 (float64 for float64 x). float32 evaluates the Tukey-lambda quantile operation for
operation as the header: its branch-free log_positive and :func:`expm1_float`, a division rounded to
nearest; the kernel is compiled without FMA contraction (``enable_fp_fusion=False``), so that each operation
rounds as the C++ one does. float64 uses ``tl.log`` and an expm1 from ``tl.exp`` and ``tl.log`` (Kahan's
``(e^x - 1) x / log(e^x)``, a few ulp; libdevice's expm1 has no CPU interpreter twin).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import triton
import triton.language as tl

from cycleisp_fast._dtypes import accumulation_dtype
from cycleisp_fast.triton_kernels.noise import _int64
from cycleisp_fast.triton_kernels.noise_math import (
    MAX_POISSON_ROUNDS,
    TILE,
    TILE_COUNTERS,
    _box_muller,
    _draw,
    _log_positive,
    _poisson,
    _uniform_double,
    _uniform_float,
)
from cycleisp_fast.triton_kernels.rounding import divide, to_bfloat16

# Component bits (mirror physical_noise_math.h's Component) and the parameter columns (its Param).
SHOT, GAUSSIAN_READ, TUKEY_READ, ROW, QUANTIZATION, COLOR_BIAS = 1, 2, 4, 8, 16, 32
ALL_COMPONENTS = 63
GAIN, SCALE, READ_SCALE, READ_SHAPE, ROW_SCALE, QUANT_STEP = range(6)
PARAMS = 6
TUKEY_ROUND = 0xFFFFFFFD  # mirrors kTukeyRound
QUANT_ROUND = 0xFFFFFFFE  # mirrors kQuantRound
ROW_ROUND = 0xFFFFFFFF  # mirrors kRowRound
LOGISTIC_LIMIT = 1e-12  # mirrors kLogisticLimit
MAX_CHANNELS_WITH_PHASES = 8


@triton.jit
def expm1_float(x):
    """expm1 of float32 x, as the header's expm1_float (same operations in the same order): x clamped to
    [-87, 87], x = k ln 2 + r, expm1(x) = 2^k expm1(r) + (2^k - 1), expm1(r) by its Taylor series to r^7."""
    x = tl.where(x < -87.0, -87.0, tl.where(x > 87.0, 87.0, x))
    t = x * 1.44269504
    k = (t + tl.where(t >= 0.0, 0.5, -0.5)).to(tl.int32)  # truncation: round half away from zero
    kf = k.to(tl.float32)
    r = (x - kf * 0.693145752) - kf * 1.42860677e-06
    p = r * (
        1.0
        + r
        * (
            0.5
            + r
            * (1.66666667e-01 + r * (4.16666667e-02 + r * (8.33333333e-03 + r * (1.38888889e-03 + r * 1.98412698e-04))))
        )
    )
    two_k = ((k + 127) << 23).to(tl.float32, bitcast=True)
    return two_k * p + (two_k - 1.0)


@triton.jit
def _expm1_double(x):
    """expm1 of float64 x within a few ulp from exp and log (Kahan): x where e^x rounds to 1, -1 where e^x - 1
    does, else (e^x - 1) x / log(e^x)."""
    e = tl.exp(x)
    em1 = e - 1.0
    tiny = em1 == 0.0
    ratio = em1 * x / tl.log(tl.where(tiny, 2.0, e))
    return tl.where(tiny, x, tl.where(em1 == -1.0, -1.0, ratio))


@triton.jit
def _tukey_lambda_quantile(w, lam):
    """The header's tukey_lambda_quantile of the uniform of word w: ``(expm1(lam log u) - expm1(lam log(1 - u)))
    / lam``, the logistic ``log u - log(1 - u)`` where ``|lam| < LOGISTIC_LIMIT``; lam's dtype is the compute
    dtype (float32: 23-bit uniforms, log_positive, expm1_float; float64: 32-bit uniforms, log, expm1)."""
    if lam.dtype == tl.float64:
        u = _uniform_double(w)
        v = (4294967296.0 - w.to(tl.float64) - 0.5) * 2.3283064365386963e-10  # 1 - u, exact
        a = tl.log(u)
        b = tl.log(v)
        logistic = tl.abs(lam) < 1e-12  # LOGISTIC_LIMIT
        scale = tl.where(logistic, 1.0, lam)
        q = (_expm1_double(scale * a) - _expm1_double(scale * b)) / scale
    else:
        m = w >> 9
        u = (m.to(tl.float32) + 0.5) * 1.1920928955078125e-07
        v = ((0x800000 - m).to(tl.float32) - 0.5) * 1.1920928955078125e-07  # 1 - u, exact
        a = _log_positive(u)
        b = _log_positive(v)
        logistic = tl.abs(lam) < 1e-12  # LOGISTIC_LIMIT, rounded to float32 as the header's
        scale = tl.where(logistic, 1.0, lam)
        q = divide(expm1_float(scale * a) - expm1_float(scale * b), scale)
    return tl.where(logistic, a - b, q)


@triton.jit
def _centred_uniform(w, acc_dtype: tl.constexpr):
    """The header's centred_uniform: the open uniform of word w minus 1/2 (exact)."""
    if acc_dtype == tl.float64:
        centred = _uniform_double(w) - 0.5
    else:
        centred = _uniform_float(w) - 0.5
    return centred


@triton.jit
def _physical_run(
    x_ptr,
    params_ptr,
    bias_ptr,
    out_ptr,
    index,
    z,
    tukey_word,
    quant_word,
    numel,
    channels,
    height,
    width,
    rows,
    phase_bits,
    k0,
    k1,
    offset,
    clip_min,
    clip_max,
    COMPONENTS: tl.constexpr,
    PACKED_ROWS: tl.constexpr,
    HAS_MIN: tl.constexpr,
    HAS_MAX: tl.constexpr,
    MAX_ROUNDS: tl.constexpr,
):
    """Writes the noisy elements at the int64 indices ``index`` given their words of the tile layout: the
    standard normals z (round 0) and the uniform words of TUKEY_ROUND and QUANT_ROUND."""
    acc_dtype: tl.constexpr = params_ptr.dtype.element_ty
    mask = index < numel
    row_global = index // width  # (n C + c) H + h
    h = row_global % height
    plane = row_global // height
    n = plane // channels
    c = plane % channels
    p = params_ptr + n * 6  # PARAMS
    scale = tl.load(p + 1, mask=mask, other=1)  # SCALE
    x = tl.load(x_ptr + index, mask=mask, other=0).to(acc_dtype)
    signal = scale * x
    shot = signal
    if COMPONENTS & 1:  # SHOT
        gain = tl.load(p, mask=mask, other=0)  # GAIN
        degenerate = (gain == 0) | (signal != signal)
        gain64 = gain.to(tl.float64)
        rate = signal.to(tl.float64) / tl.where(degenerate, 1.0, gain64)
        count = _poisson(rate, mask & ~degenerate, index, k0, k1, offset, MAX_ROUNDS)
        shot = tl.where(degenerate, signal, (gain64 * count).to(acc_dtype))
    zero = tl.zeros_like(signal)
    read = zero
    row = zero
    quant = zero
    bias = zero
    if COMPONENTS & 4:  # TUKEY_READ
        read_scale = tl.load(p + 2, mask=mask, other=0)  # READ_SCALE
        read_shape = tl.load(p + 3, mask=mask, other=0)  # READ_SHAPE
        read = read_scale * _tukey_lambda_quantile(tukey_word, read_shape)
    if COMPONENTS & 16:  # QUANTIZATION
        quant = tl.load(p + 5, mask=mask, other=0) * _centred_uniform(quant_word, acc_dtype)  # QUANT_STEP
    if COMPONENTS & 2:  # GAUSSIAN_READ
        read = tl.load(p + 2, mask=mask, other=0) * z  # READ_SCALE
    if COMPONENTS & 8:  # ROW
        if PACKED_ROWS:
            sensor_row = 2 * h + ((phase_bits >> c) & 1)
        else:
            sensor_row = h
        r0, r1, _, _ = _draw(k0, k1, n * rows + sensor_row, 0xFFFFFFFF, offset)  # ROW_ROUND
        row_normal, _ = _box_muller(r0, r1, acc_dtype)
        row = tl.load(p + 4, mask=mask, other=0) * row_normal  # ROW_SCALE
    if COMPONENTS & 32:  # COLOR_BIAS
        bias = tl.load(bias_ptr + plane, mask=mask, other=0)  # bias[n, c] at n C + c = plane
    y = divide((((shot + read) + row) + quant) + bias, scale)
    if HAS_MIN:
        y = tl.where(y <= clip_min, clip_min, y)
    if HAS_MAX:
        y = tl.where(y >= clip_max, clip_max, y)
    out_dtype: tl.constexpr = out_ptr.dtype.element_ty
    if out_dtype == tl.bfloat16:
        y = to_bfloat16(y)
    tl.store(out_ptr + index, y.to(out_dtype), mask=mask)


@triton.jit
def physical_noise_kernel(
    x_ptr,
    params_ptr,
    bias_ptr,
    out_ptr,
    numel,
    channels,
    height,
    width,
    phase_bits,
    seed,
    offset,
    clip_min: tl.float64,
    clip_max: tl.float64,
    COMPONENTS: tl.constexpr,
    PACKED_ROWS: tl.constexpr,
    HAS_MIN: tl.constexpr,
    HAS_MAX: tl.constexpr,
    TILE_COUNTERS: tl.constexpr,
    MAX_ROUNDS: tl.constexpr,
):
    """Writes tile ``program_id`` (TILE = 4 TILE_COUNTERS elements) of out from x ``(N, C, H, W)`` (flat),
    params ``(N, 6)`` and bias ``(N, C)`` (compute dtype); bit c of phase_bits is channel c's row phase."""
    acc_dtype: tl.constexpr = params_ptr.dtype.element_ty
    seed = _int64(seed)
    k0 = (seed & 0xFFFFFFFF).to(tl.uint32)
    k1 = (seed >> 32).to(tl.uint32)
    offset = _int64(offset).to(tl.uint32)
    numel = _int64(numel)
    channels = _int64(channels)
    height = _int64(height)
    width = _int64(width)
    phase_bits = _int64(phase_bits)
    if PACKED_ROWS:
        rows = 2 * height
    else:
        rows = height
    clip_min = tl.full([], clip_min, acc_dtype)
    clip_max = tl.full([], clip_max, acc_dtype)
    tile = tl.program_id(0).to(tl.int64)
    r = tl.arange(0, TILE_COUNTERS).to(tl.int64)
    counter = tile * TILE_COUNTERS + r
    if COMPONENTS & 2:  # GAUSSIAN_READ
        w0, w1, w2, w3 = _draw(k0, k1, counter, 0, offset)
        z0, z1 = _box_muller(w0, w1, acc_dtype)
        z2, z3 = _box_muller(w2, w3, acc_dtype)
    else:
        z0 = tl.zeros([TILE_COUNTERS], acc_dtype)
        z1 = z0
        z2 = z0
        z3 = z0
    if COMPONENTS & 4:  # TUKEY_READ
        t0, t1, t2, t3 = _draw(k0, k1, counter, 0xFFFFFFFD, offset)  # TUKEY_ROUND
    else:
        t0 = tl.zeros([TILE_COUNTERS], tl.uint32)
        t1 = t0
        t2 = t0
        t3 = t0
    if COMPONENTS & 16:  # QUANTIZATION
        q0, q1, q2, q3 = _draw(k0, k1, counter, 0xFFFFFFFE, offset)  # QUANT_ROUND
    else:
        q0 = tl.zeros([TILE_COUNTERS], tl.uint32)
        q1 = q0
        q2 = q0
        q3 = q0
    base = tile * (4 * TILE_COUNTERS) + r
    # The four runs of the tile, one call each (the formatter would give each call 25 lines).
    # fmt: off
    _physical_run(x_ptr, params_ptr, bias_ptr, out_ptr, base, z0, t0, q0, numel, channels,
                  height, width, rows, phase_bits, k0, k1, offset, clip_min, clip_max, COMPONENTS, PACKED_ROWS,
                  HAS_MIN, HAS_MAX, MAX_ROUNDS)
    _physical_run(x_ptr, params_ptr, bias_ptr, out_ptr, base + TILE_COUNTERS, z1, t1, q1, numel, channels,
                  height, width, rows, phase_bits, k0, k1, offset, clip_min, clip_max, COMPONENTS, PACKED_ROWS,
                  HAS_MIN, HAS_MAX, MAX_ROUNDS)
    _physical_run(x_ptr, params_ptr, bias_ptr, out_ptr, base + 2 * TILE_COUNTERS, z2, t2, q2, numel, channels,
                  height, width, rows, phase_bits, k0, k1, offset, clip_min, clip_max, COMPONENTS, PACKED_ROWS,
                  HAS_MIN, HAS_MAX, MAX_ROUNDS)
    _physical_run(x_ptr, params_ptr, bias_ptr, out_ptr, base + 3 * TILE_COUNTERS, z3, t3, q3, numel, channels,
                  height, width, rows, phase_bits, k0, k1, offset, clip_min, clip_max, COMPONENTS, PACKED_ROWS,
                  HAS_MIN, HAS_MAX, MAX_ROUNDS)
    # fmt: on


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
    """x: contiguous ``(N, C, H, W)``, float16/bfloat16/float32/float64. params ``(N, 6)`` (gain, scale, read
    scale, read shape, row scale, quantisation step) and bias ``(N, C)``: contiguous, in the compute dtype
    (float32, float64 for float64 x), on x's device. row_phase: empty (every channel of a row shares its
    offset) or one 0/1 per channel (C <= 8: packed Bayer planes, row = 2 h + phase). seed in [0, 2**63), offset
    in [0, 2**32), components a mask of SHOT .. COLOR_BIAS (g and t exclusive). Clip applied last. Returns a
    new contiguous tensor like x."""
    if x.dim() != 4:
        raise ValueError(f"physical_noise: x must have shape (N, C, H, W), got {tuple(x.shape)}")
    n, c, h, w = x.shape
    acc = accumulation_dtype(x.dtype)
    if params.dtype != acc or bias.dtype != acc:
        raise TypeError(f"physical_noise: params and bias must have dtype {acc}, got {params.dtype}, {bias.dtype}")
    if tuple(params.shape) != (n, PARAMS) or tuple(bias.shape) != (n, c):
        raise ValueError(
            f"physical_noise: params must have shape ({n}, 6) and bias ({n}, {c}), "
            f"got {tuple(params.shape)}, {tuple(bias.shape)}"
        )
    phases = [int(v) for v in row_phase]
    if phases and (len(phases) != c or c > MAX_CHANNELS_WITH_PHASES or any(v not in (0, 1) for v in phases)):
        raise ValueError(f"physical_noise: row_phase must be empty or one 0/1 per channel (C <= 8), got {phases}")
    components = int(components)
    if not 0 <= components <= ALL_COMPONENTS or (components & GAUSSIAN_READ and components & TUKEY_READ):
        raise ValueError(f"physical_noise: components must be a mask in [0, 63] without both g and t: {components}")
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    numel = x.numel()
    if numel == 0:
        return out
    grid = (triton.cdiv(numel, TILE),)
    physical_noise_kernel[grid](
        x,
        params,
        bias,
        out,
        numel,
        c,
        h,
        w,
        sum(phase << k for k, phase in enumerate(phases)),
        int(seed),
        int(offset),
        0.0 if clip_min is None else float(clip_min),
        0.0 if clip_max is None else float(clip_max),
        COMPONENTS=components,
        PACKED_ROWS=bool(phases),
        HAS_MIN=clip_min is not None,
        HAS_MAX=clip_max is not None,
        TILE_COUNTERS=TILE_COUNTERS,
        MAX_ROUNDS=MAX_POISSON_ROUNDS,
        enable_fp_fusion=False,
    )
    return out
