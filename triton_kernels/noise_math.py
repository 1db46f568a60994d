"""Device functions of the Triton noise kernel, the Triton twin of csrc/ops/noise_math.h: Philox4x32-10 words,
uniforms, the float32 branch-free log and sincos, Box-Muller pairs and the exact Poisson sampler (inversion
below INVERSION_LIMIT, Hormann's PTRS above). The stream layout is documented once, in the header; the kernel
and its launcher are triton_kernels/noise.py.
"""

from __future__ import annotations

import triton
import triton.language as tl
from triton.language.random import philox_impl

TILE = 1024  # elements per program; mirrors kTile in csrc/ops/noise_math.h
TILE_COUNTERS = 256  # Philox counters per tile (4 words each); mirrors kTileCounters
INVERSION_LIMIT = 10.0  # mirrors kInversionLimit: rates below it use inversion, the rest PTRS
MAX_POISSON_ROUNDS = 1 << 16  # mirrors kMaxPoissonRounds: PTRS stops after 2 * this many attempts


@triton.jit
def _philox(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 of uint32 counters (c0, c1, c2, c3) under the uint32 key (k0, k1): four uint32 words."""
    return philox_impl(c0, c1, c2, c3, k0, k1, 10)


@triton.jit
def _draw(k0, k1, counter_index, counter_round, offset):
    """The four words of counters (lo32(j), hi32(j), round, offset) for an int64 block j of counter indices."""
    c0 = (counter_index & 0xFFFFFFFF).to(tl.uint32)
    c1 = (counter_index >> 32).to(tl.uint32)
    zero = c0 * 0
    return _philox(c0, c1, zero + counter_round, zero + offset, k0, k1)


@triton.jit
def _uniform_float(w):
    """((w >> 9) + 0.5) 2^-23: a float32 uniform in (0, 1) from a uint32 word (exact in float32)."""
    return ((w >> 9).to(tl.float32) + 0.5) * 1.1920928955078125e-07


@triton.jit
def _uniform_double(w):
    """(w + 0.5) 2^-32: a float64 uniform in (0, 1) from a uint32 word (exact)."""
    return (w.to(tl.float64) + 0.5) * 2.3283064365386963e-10


@triton.jit
def _uniform52(w0, w1):
    """((w0 2^32 + w1) >> 12 + 0.5) 2^-52: a float64 uniform in (0, 1) from two words (exact)."""
    bits = ((w0.to(tl.uint64) << 32) | w1.to(tl.uint64)) >> 12
    return (bits.to(tl.float64) + 0.5) * 2.220446049250313e-16


@triton.jit
def _log_positive(v):
    """Natural log of a positive normal float32, as the header's log_positive: v = 2^e m with m in
    [sqrt(1/2), sqrt(2)), log m = 2 atanh((m - 1) / (m + 1)) by its odd series."""
    bits = v.to(tl.uint32, bitcast=True)
    m = ((bits & 0x007FFFFF) | 0x3F800000).to(tl.float32, bitcast=True)
    e = ((bits >> 23).to(tl.int32) - 127).to(tl.float32)
    high = m > 1.41421356
    m = tl.where(high, m * 0.5, m)
    e = tl.where(high, e + 1.0, e)
    f = tl.math.div_rn(m - 1.0, m + 1.0)
    f2 = f * f
    series = 1.0 + f2 * (0.33333333 + f2 * (0.2 + f2 * (0.14285715 + f2 * 0.11111111)))
    return e * 0.693145752 + (e * 1.42860677e-06 + 2.0 * f * series)


@triton.jit
def _sincos_two_pi(u):
    """(sin, cos) of 2 pi u for a float32 u in [0, 1], as the header's sincos_two_pi: 2 pi u = q pi / 2 + theta
    with q = round(4 u) and |theta| <= pi / 4, Taylor series in theta."""
    quadrant = (4.0 * u + 0.5).to(tl.int32)  # floor: the argument is positive
    theta = (u - 0.25 * quadrant.to(tl.float32)) * 6.28318531
    t2 = theta * theta
    s = theta * (
        1.0
        + t2
        * (-1.6666667e-01 + t2 * (8.3333333e-03 + t2 * (-1.9841270e-04 + t2 * (2.7557319e-06 + t2 * -2.5052108e-08))))
    )
    c = 1.0 + t2 * (-0.5 + t2 * (4.1666667e-02 + t2 * (-1.3888889e-03 + t2 * (2.4801587e-05 + t2 * -2.7557319e-07))))
    quadrant = quadrant & 3
    sin = tl.where(quadrant == 0, s, tl.where(quadrant == 1, c, tl.where(quadrant == 2, -s, -c)))
    cos = tl.where(quadrant == 0, c, tl.where(quadrant == 1, -s, tl.where(quadrant == 2, -c, s)))
    return sin, cos


@triton.jit
def _box_muller(w_radius, w_angle, acc_dtype: tl.constexpr):
    """The two standard normals (radius cos, radius sin) of one Box-Muller pair of words, in acc_dtype."""
    if acc_dtype == tl.float64:
        radius = tl.sqrt(-2.0 * tl.log(_uniform_double(w_radius)))
        angle = 6.283185307179586 * _uniform_double(w_angle)
        first = radius * tl.cos(angle)
        second = radius * tl.sin(angle)
    else:
        radius = tl.sqrt_rn(-2.0 * _log_positive(_uniform_float(w_radius)))
        sin, cos = _sincos_two_pi(_uniform_float(w_angle))
        first = radius * cos
        second = radius * sin
    return first, second


@triton.jit
def _log_factorial(k):
    """log(k!) of float64 integers k >= 0, as the header's: the log of the exact product below 10, Stirling's
    series with three correction terms above."""
    factorial = tl.full(k.shape, 1.0, tl.float64)
    for j in tl.static_range(2, 10):
        factorial = tl.where(k >= j, factorial * j, factorial)
    small = k < 10.0
    kk = tl.where(small, 10.0, k)
    log_arg = tl.log(tl.where(small, factorial, kk))
    inv = 1.0 / kk
    inv2 = inv * inv
    large = (
        (kk + 0.5) * log_arg
        - kk
        + 0.91893853320467274
        + inv * (1.0 / 12.0 - inv2 * (1.0 / 360.0 - inv2 * (1.0 / 1260.0)))
    )
    return tl.where(small, log_arg, large)


@triton.jit
def _poisson_inversion(rate, u, active):
    """The smallest k with u <= P(K <= k) for Poisson(rate) where ``active`` (rate in (0, INVERSION_LIMIT)),
    stopping where the CDF stops growing in float64; 0 elsewhere."""
    k = tl.zeros_like(rate)
    p = tl.exp(-rate)
    cdf = p
    active = active & (u > cdf)
    while tl.max(active.to(tl.int32), axis=0) > 0:
        k = tl.where(active, k + 1.0, k)
        p = tl.where(active, p * (rate / tl.where(active, k, 1.0)), p)  # idle lanes: no division by 0
        following = cdf + p
        growing = active & (following != cdf)  # the header's break where the CDF stops growing
        cdf = tl.where(growing, following, cdf)
        active = growing & (u > cdf)
    return k


@triton.jit
def _ptrs_attempt(rate, log_rate, a, b, inv_alpha, v_r, u, v):
    """One PTRS attempt from float64 uniforms (u, v): (candidate k, accepted)."""
    centred = u - 0.5
    us = 0.5 - tl.abs(centred)
    k = tl.floor((2.0 * a / us + b) * centred + rate + 0.43)
    squeeze = (us >= 0.07) & (v <= v_r)
    hopeless = (k < 0.0) | ((us < 0.013) & (v > us))
    lhs = tl.log(v * inv_alpha / (a / (us * us) + b))
    rhs = -rate + k * log_rate - _log_factorial(k)
    return k, squeeze | (~hopeless & (lhs <= rhs))


@triton.jit
def _poisson_ptrs(rate, pending, index, k0, k1, offset, MAX_ROUNDS: tl.constexpr):
    """Hormann's PTRS draws of Poisson(rate) where ``pending`` (rate in [INVERSION_LIMIT, inf)); 0 elsewhere.
    Round r >= 1 of element i's counter gives attempts 2 (r - 1) (words 0, 1) and 2 (r - 1) + 1 (words 2, 3);
    after 2 MAX_ROUNDS rejected attempts the last candidate stands, as in the header."""
    rate = tl.where(pending, rate, 10.0)  # keeps the idle lanes' arithmetic finite
    b = 0.931 + 2.53 * tl.sqrt(rate)
    a = -0.059 + 0.02483 * b
    inv_alpha = 1.1239 + 1.1328 / (b - 3.4)
    v_r = 0.9277 - 3.6224 / (b - 2.0)
    log_rate = tl.log(rate)
    k = tl.zeros_like(rate)
    counter_round = tl.full([], 1, tl.int32)
    while (tl.max(pending.to(tl.int32), axis=0) > 0) & (counter_round <= MAX_ROUNDS):
        w0, w1, w2, w3 = _draw(k0, k1, index, counter_round.to(tl.uint32), offset)
        candidate, accepted = _ptrs_attempt(
            rate, log_rate, a, b, inv_alpha, v_r, _uniform_double(w0), _uniform_double(w1)
        )
        k = tl.where(pending, candidate, k)
        pending = pending & ~accepted
        candidate, accepted = _ptrs_attempt(
            rate, log_rate, a, b, inv_alpha, v_r, _uniform_double(w2), _uniform_double(w3)
        )
        k = tl.where(pending, candidate, k)
        pending = pending & ~accepted
        counter_round += 1
    return k


@triton.jit
def _poisson(rate, mask, index, k0, k1, offset, MAX_ROUNDS: tl.constexpr):
    """Poisson draws (float64) of float64 rates at the int64 element indices ``index`` where ``mask``: rate
    <= 0 or NaN gives 0, an infinite rate infinity."""
    w0, w1, _, _ = _draw(k0, k1, index, 1, offset)
    small = mask & (rate > 0.0) & (rate < 10.0)  # 10.0: INVERSION_LIMIT
    k = _poisson_inversion(tl.where(small, rate, 1.0), _uniform52(w0, w1), small)
    infinite = mask & (rate == float("inf"))
    large = mask & (rate >= 10.0) & ~infinite
    k = tl.where(large, _poisson_ptrs(rate, large, index, k0, k1, offset, MAX_ROUNDS), k)
    return tl.where(infinite, rate, k)
