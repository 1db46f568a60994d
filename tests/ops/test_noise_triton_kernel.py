"""The Triton noise launcher (``cycleisp_fast.triton_kernels.noise``), called directly: Philox known answers,
an independent numpy re-implementation of the streams (Philox words, uniforms, the tile layout, Box-Muller,
inversion), agreement with the plain-PyTorch reference, and the edge cases of the contract. It runs in
Triton's CPU interpreter (tests/conftest.py sets TRITON_INTERPRET=1), so sizes stay at a few tiles.

Tolerances: the float32 standard normals use the header's log_positive and sincos_two_pi on float32
uniforms; numpy evaluates Box-Muller in float64 from the same uniforms (``((w >> 9) + 0.5) 2^-23``, exact in
float32): within 4 ulp (rtol 1e-6, atol 2e-7 for |z| near 0). float64 compute uses plain log / sin / cos on
both sides: rtol 1e-12. Model 0 is compared with the reference at rtol = atol = 1e-6 for x in [0, 1]. The
Poisson draws are integers computed by the same float64 operations: exactly equal. Half-precision outputs
round the float32 results once: within one ulp of the reference's.
"""

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import triton
import triton.language as tl

from cycleisp_fast.triton_kernels import noise as kernels
from cycleisp_fast.triton_kernels import noise_math

NOISE_MATH = Path(__file__).resolve().parents[2] / "csrc" / "ops" / "noise_math.h"
M32 = 0xFFFFFFFF
RATES = [1e-3, 0.5, 9.99, 10.0, 10.01, 1e3, 1e7]


def reference_module():
    """cycleisp_fast.reference.noise, or a skip while it does not exist."""
    return pytest.importorskip("cycleisp_fast.reference.noise")


def acc_of(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def params(values, dtype):
    return torch.tensor(values, dtype=acc_of(dtype))


def sample(x, shot, read, seed=1234, offset=7, model=0, clip_min=None, clip_max=None):
    """The launcher with shot/read given as lists (converted to x's compute dtype)."""
    return kernels.noise_sample(
        x, params(shot, x.dtype), params(read, x.dtype), seed, offset, model, clip_min, clip_max
    )


def standard_normals(numel, dtype=torch.float32, seed=1234, offset=7):
    """The kernel's Gaussian stream z (x = 0, shot = 0, read = 1 gives y = z exactly)."""
    return sample(torch.zeros(numel, dtype=dtype), [0.0], [1.0], seed, offset, model=0)


# ---- an independent numpy Philox and the stream layout ---------------------------------------------------


def np_philox(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 (Salmon et al. 2011) of uint64 arrays holding 32-bit counters, key (k0, k1)."""
    c = [np.asarray(v, dtype=np.uint64) & np.uint64(M32) for v in (c0, c1, c2, c3)]
    k0, k1 = np.uint64(k0), np.uint64(k1)
    for _ in range(10):
        prod0 = c[0] * np.uint64(0xD2511F53)  # < 2^64: no wrap
        prod1 = c[2] * np.uint64(0xCD9E8D57)
        c = [
            (prod1 >> np.uint64(32)) ^ c[1] ^ k0,
            prod1 & np.uint64(M32),
            (prod0 >> np.uint64(32)) ^ c[3] ^ k1,
            prod0 & np.uint64(M32),
        ]
        k0 = (k0 + np.uint64(0x9E3779B9)) & np.uint64(M32)
        k1 = (k1 + np.uint64(0xBB67AE85)) & np.uint64(M32)
    return np.stack(c)  # (4, ...)


def np_words(seed, offset, counter_index, counter_round):
    j = np.asarray(counter_index, dtype=np.uint64)
    return np_philox(
        j & np.uint64(M32),
        j >> np.uint64(32),
        np.full_like(j, counter_round),
        np.full_like(j, offset),
        seed & M32,
        seed >> 32,
    )


def np_standard_normals(numel, seed, offset, double):
    """Element i: tile t = i // 1024, r = i % 1024, counter 256 t + r % 256 of round 0, word r // 256; Box-Muller
    of words (0, 1) and (2, 3), radius from the first, (cos, sin) to the (first, second) word's element."""
    i = np.arange(numel)
    tile, r = i // 1024, i % 1024
    word = r // 256
    w = np_words(seed, offset, tile * 256 + r % 256, 0)  # (4, numel)
    if double:
        u = (w.astype(np.float64) + 0.5) * 2.0**-32
    else:
        u = ((w >> np.uint64(9)).astype(np.float64) + 0.5) * 2.0**-23
    pair = word & 2
    radius = np.sqrt(-2.0 * np.log(u[pair, i]))
    angle = 2.0 * np.pi * u[pair + 1, i]
    return np.where(word & 1, radius * np.sin(angle), radius * np.cos(angle))


@triton.jit
def _draw_test_kernel(out_ptr, j_ptr, k0, k1, counter_round, offset, N: tl.constexpr):
    """out[4 n + w] = word w of Philox counter (lo32(j_n), hi32(j_n), counter_round, offset), key (k0, k1),
    by the module's own _draw / _philox."""
    n = tl.arange(0, N)
    j = tl.load(j_ptr + n)
    k0 = tl.to_tensor(k0).to(tl.int64).to(tl.uint32)
    k1 = tl.to_tensor(k1).to(tl.int64).to(tl.uint32)
    counter_round = tl.to_tensor(counter_round).to(tl.int64).to(tl.uint32)
    offset = tl.to_tensor(offset).to(tl.int64).to(tl.uint32)
    w0, w1, w2, w3 = noise_math._draw(k0, k1, j, counter_round, offset)
    tl.store(out_ptr + 4 * n, w0.to(tl.int64))
    tl.store(out_ptr + 4 * n + 1, w1.to(tl.int64))
    tl.store(out_ptr + 4 * n + 2, w2.to(tl.int64))
    tl.store(out_ptr + 4 * n + 3, w3.to(tl.int64))


def triton_words(counters, key):
    """Words of 4-word counters (c0, c1, c2, c3) with one (c2, c3) under key (k0, k1), by _draw_test_kernel."""
    j = [(c1 << 32) | c0 for c0, c1, _, _ in counters]
    j = torch.tensor([v - 2**64 if v >= 2**63 else v for v in j], dtype=torch.int64)  # the int64 of the bits
    size = triton.next_power_of_2(len(counters))
    j = torch.cat([j, j[-1:].expand(size - len(counters))])
    out = torch.empty(4 * size, dtype=torch.int64)
    _draw_test_kernel[(1,)](out, j, key[0], key[1], counters[0][2], counters[0][3], N=size)
    return out.view(size, 4)[: len(counters)].tolist()


@pytest.mark.parametrize(
    "counter, key, expected",
    [
        ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((M32,) * 4, (M32, M32), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        (
            (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
            (0xA4093822, 0x299F31D0),
            (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
        ),
    ],
    ids=["zeros", "ones", "pi"],
)
def test_philox_known_answers(counter, key, expected):
    """Random123's known-answer vectors of Philox4x32-10, through the kernel's helper and the numpy one."""
    assert triton_words([counter], key)[0] == list(expected)
    assert np_philox(*counter, *key).tolist() == list(expected)


def test_draw_matches_numpy_with_high_counter_words():
    """Counter indices past 2^32 (hi32 word), a non-zero round and offset, a 64-bit seed's key halves."""
    seed, offset, counter_round = 0x7EDC_BA98_7654_3210, 0xFFFF_FFFE, 3
    j = [0, 1, 255, 2**32 - 1, 2**32, 2**32 + 5, 2**40 + 12345, 2**62 + 1]
    counters = [(v & M32, v >> 32, counter_round, offset) for v in j]
    got = triton_words(counters, (seed & M32, seed >> 32))
    assert got == np_words(seed, offset, j, counter_round).T.tolist()


def test_constants_mirror_the_header():
    text = NOISE_MATH.read_text()
    assert noise_math.TILE == int(re.search(r"kTile = (\d+);", text).group(1))
    assert noise_math.TILE_COUNTERS == int(re.search(r"kTileCounters = (\d+);", text).group(1))
    assert noise_math.INVERSION_LIMIT == float(re.search(r"kInversionLimit = ([\d.]+);", text).group(1))
    assert noise_math.MAX_POISSON_ROUNDS == 1 << int(re.search(r"kMaxPoissonRounds = 1u << (\d+);", text).group(1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("seed, offset", [(1234, 7), (2**63 - 1, 2**32 - 1), (0, 0)])
def test_gaussian_stream_matches_numpy(dtype, seed, offset):
    """z of 2 full tiles and a tail against numpy's Philox + uniforms + Box-Muller in float64."""
    numel = 2500
    z = standard_normals(numel, dtype, seed, offset)
    expected = torch.from_numpy(np_standard_normals(numel, seed, offset, dtype == torch.float64))
    if dtype == torch.float64:
        torch.testing.assert_close(z, expected, rtol=1e-12, atol=1e-12)
    else:
        torch.testing.assert_close(z.double(), expected, rtol=1e-6, atol=2e-7)
        # the 24-bit uniforms bound the radius: |z| <= sqrt(-2 ln 2^-25) = 5.89
        assert float(z.abs().max()) <= math.sqrt(50 * math.log(2)) + 1e-6


def test_gaussian_stream_moments():
    z = standard_normals(16384).double()
    assert abs(float(z.mean())) < 4 / 128 and abs(float(z.var()) - 1) < 4 * math.sqrt(2 / 16384)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_inversion_draws_match_numpy(dtype):
    """Rates below 10: K is the smallest k with u <= P(K <= k), u the 52-bit uniform of words (0, 1) of
    round 1 at counter index i (numpy's CDF, away from ties)."""
    rates = np.repeat([1e-3, 0.05, 0.5, 2.0, 5.0, 9.99], 170)
    k = sample(torch.from_numpy(rates).to(dtype), [1.0], [0.0], seed=5, offset=11, model=1).double().numpy()
    rates = rates.astype(np.float32).astype(np.float64) if dtype == torch.float32 else rates
    w = np_words(5, 11, np.arange(rates.size), 1)
    u = (((w[0] << np.uint64(32)) | w[1]) >> np.uint64(12)).astype(np.float64) * 2.0**-52 + 2.0**-53
    grid = np.arange(64)
    log_pmf = (
        grid[None, :] * np.log(rates[:, None])
        - rates[:, None]
        - np.array([math.lgamma(n + 1.0) for n in grid])[None, :]
    )
    cdf = np.cumsum(np.exp(log_pmf), axis=1)
    expected = (u[:, None] > cdf).sum(axis=1)
    clear = np.abs(u[:, None] - cdf).min(axis=1) > 1e-12
    assert clear.mean() > 0.99
    np.testing.assert_array_equal(k[clear], expected[clear])


def test_poisson_draw_moments():
    """PTRS and inversion have the Poisson mean and variance (4 sigma of their estimates)."""
    n = 1024
    for rate in (3.0, 10.0, 37.0, 1e3, 1e7):
        k = sample(torch.full((n,), rate, dtype=torch.float64), [1.0], [0.0], model=1).numpy()
        assert np.all(k == np.round(k)) and np.all(k >= 0)
        assert abs(k.mean() - rate) < 4 * math.sqrt(rate / n), rate
        assert abs(k.var() / rate - 1) < 4 * math.sqrt(2 / n) + 1 / rate, rate


# ---- the reference ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize(
    "shape, shot, read",
    [
        ((2, 3, 5, 7), [0.01, 0.02, 0.0, 0.05, 1e-3, 0.1], [1e-4, 0.0, 2e-4, 1e-3, 1e-5, 0.0]),
        ((2050,), [0.02, 0.5], [1e-3, 0.01]),
        ((1000,), [0.01], [1e-4]),
    ],
    ids=["planes", "tail2050", "tail1000"],
)
def test_heteroscedastic_gaussian_matches_reference(dtype, shape, shot, read):
    ref = reference_module()
    x = torch.rand(shape, dtype=torch.float64).to(dtype)
    args = (params(shot, dtype), params(read, dtype), 2**40 + 3, 12345, 0, None, None)
    y, y_ref = kernels.noise_sample(x, *args), ref.noise_sample(x, *args)
    assert y.dtype == dtype and y.shape == x.shape and y.is_contiguous()
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    torch.testing.assert_close(y, y_ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("shot", [1.0, 0.25])
def test_poisson_draws_equal_reference(dtype, shot):
    """read = 0: y = shot K exactly, K the same integers as the reference's for rates around both methods'
    limits (float32 x: the rate of the float32 x, as both sides see it)."""
    ref = reference_module()
    x = (torch.tensor(RATES, dtype=torch.float64) * shot).repeat_interleave(160).to(dtype)
    args = (params([shot], dtype), params([0.0], dtype), 99, 3, 1, None, None)
    y, y_ref = kernels.noise_sample(x, *args), ref.noise_sample(x, *args)
    assert torch.equal(y, y_ref), (y != y_ref).nonzero()[:10].tolist()


def test_poisson_gaussian_draws_recovered_with_read_noise():
    """read > 0 (float64): (y - sqrt(read) z) / shot rounds to the reference's Poisson integers."""
    ref = reference_module()
    shot, read, seed, offset = 0.01, 1e-4, 77, 5
    rates = torch.tensor(RATES, dtype=torch.float64).repeat_interleave(150)
    y = kernels.noise_sample(
        rates * shot, params([shot], torch.float64), params([read], torch.float64), seed, offset, 1, None, None
    )
    z = standard_normals(rates.numel(), torch.float64, seed, offset)
    k = torch.round((y - math.sqrt(read) * z) / shot)
    k_ref = torch.round(
        ref.noise_sample(
            rates * shot, params([shot], torch.float64), params([0.0], torch.float64), seed, offset, 1, None, None
        )
        / shot
    )
    assert torch.equal(k, k_ref)
    y_ref = ref.noise_sample(
        rates * shot, params([shot], torch.float64), params([read], torch.float64), seed, offset, 1, None, None
    )
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("model", [0, 1])
def test_half_precision_within_one_ulp_of_reference(dtype, model):
    ref = reference_module()
    x = torch.rand((2, 3, 13, 17), dtype=torch.float64).to(dtype)
    args = (params([0.01, 0.02, 0.005, 0.03, 0.01, 0.02], dtype), params([1e-4] * 6, dtype), 8, 9, model, -0.1, 1.1)
    y, y_ref = kernels.noise_sample(x, *args), ref.noise_sample(x, *args)
    assert y.dtype == dtype and y.shape == x.shape
    info = torch.finfo(dtype)
    _, exponent = torch.frexp(y_ref.float().abs().clamp(min=info.smallest_normal))
    ulp = info.eps * torch.ldexp(torch.ones_like(y_ref, dtype=torch.float32), exponent - 1)
    assert bool(((y.float() - y_ref.float()).abs() <= ulp).all())


def test_clip_matches_reference():
    ref = reference_module()
    x = torch.rand(3000)
    args = (params([0.05], x.dtype), params([0.01], x.dtype), 3, 4, 0, 0.1, 0.9)
    torch.testing.assert_close(kernels.noise_sample(x, *args), ref.noise_sample(x, *args), rtol=1e-6, atol=1e-6)


# ---- the contract ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [0, 1])
def test_deterministic_and_streams_differ(model):
    x = torch.rand(2050) * 20
    y = sample(x, [0.5], [1e-3], 11, 22, model)
    assert torch.equal(y, sample(x, [0.5], [1e-3], 11, 22, model))
    for other in (
        sample(x, [0.5], [1e-3], 11, 23, model),
        sample(x, [0.5], [1e-3], 12, 22, model),
        sample(x, [0.5], [1e-3], 11 + 2**32, 22, model),
    ):
        assert float((other != y).double().mean()) > 0.9


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("model", [0, 1])
def test_element_draws_depend_on_the_index_alone(dtype, model):
    """Tails: element i's draws do not depend on numel, so a prefix (1000 = a partial tile, 2050 = two tiles
    and a tail) reproduces the longer call's first elements."""
    x = (torch.rand(3000, dtype=torch.float64) * 30).to(dtype)
    full = sample(x, [0.5], [1e-2], model=model)
    for numel in (1000, 2050):
        assert torch.equal(sample(x[:numel].clone(), [0.5], [1e-2], model=model), full[:numel])


def test_per_plane_parameters():
    """P = 6 planes of (2, 3, 5, 7): element i uses shot/read of plane i // 35."""
    shot = [0.0, 0.01, 0.02, 0.03, 0.04, 0.05]
    read = [1e-4, 2e-4, 3e-4, 4e-4, 5e-4, 6e-4]
    x = torch.zeros((2, 3, 5, 7))
    z = standard_normals(x.numel()).view(x.shape)
    y = sample(x, shot, read)  # x = 0: y = sqrt(read) z
    expected = torch.sqrt(torch.tensor(read)).view(2, 3, 1, 1) * z
    assert torch.equal(y, expected)
    x = torch.full((2, 3, 5, 7), 0.5)
    y = sample(x, shot, read)
    variance = (torch.tensor(shot) * 0.5 + torch.tensor(read)).view(2, 3, 1, 1)
    torch.testing.assert_close(y, x + torch.sqrt(variance) * z, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("model", [0, 1])
def test_clipping(model):
    x = torch.rand(2050) * 1.2 - 0.1
    free = sample(x, [0.05], [1e-2], model=model)
    both = sample(x, [0.05], [1e-2], model=model, clip_min=0.0, clip_max=1.0)
    assert torch.equal(both, free.clamp(0.0, 1.0))
    assert bool((free < 0).any()) and bool((free > 1).any())
    assert torch.equal(sample(x, [0.05], [1e-2], model=model, clip_min=0.2), free.clamp(min=0.2))
    assert torch.equal(sample(x, [0.05], [1e-2], model=model, clip_max=0.7), free.clamp(max=0.7))


@pytest.mark.parametrize("model", [0, 1])
def test_nan_input_stays_nan(model):
    x = torch.rand(1500)
    x[::7] = math.nan
    y = sample(x, [0.05], [1e-3], model=model, clip_min=0.0, clip_max=1.0)
    assert torch.equal(y.isnan(), x.isnan())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_poisson_gaussian_negative_x_and_zero_shot(dtype):
    """Negative x: K = 0, y = sqrt(read) z. shot == 0: y = x + sqrt(read) z. Both as model 0 with shot 0."""
    x = (torch.rand(1500, dtype=torch.float64) - 0.5).to(dtype)
    gaussian = sample(torch.zeros_like(x), [0.0], [4e-3], model=0)
    y = sample(x, [0.1], [4e-3], model=1)
    negative = x < 0
    assert torch.equal(y[negative], gaussian[negative])
    assert torch.equal(sample(x, [0.0], [4e-3], model=1), sample(x, [0.0], [4e-3], model=0))


def test_heteroscedastic_variance_clamped_at_zero():
    """shot x + read < 0 gives variance 0: y = x."""
    x = -torch.rand(1100) - 0.5
    assert torch.equal(sample(x, [0.1], [1e-3], model=0), x)


def test_empty_and_output_layout():
    assert sample(torch.empty(0, 4), [1.0], [1.0]).shape == (0, 4)
    x = torch.rand(3, 5, dtype=torch.float64)
    y = sample(x, [0.01, 0.02, 0.03], [1e-4, 1e-4, 1e-4], model=1)
    assert y.dtype == torch.float64 and y.shape == (3, 5) and y.is_contiguous() and y.data_ptr() != x.data_ptr()
