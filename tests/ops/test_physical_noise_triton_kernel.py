"""The Triton physical-noise launcher (``cycleisp_fast.triton_kernels.physical_noise``), called directly, against
the plain-PyTorch reference (``cycleisp_fast.reference.physical_noise``), the native CPU op when the extension
has it, and the stream layout of csrc/ops/physical_noise_math.h. It runs in Triton's CPU interpreter
(tests/conftest.py sets TRITON_INTERPRET=1), so the images stay at a few tiles.

Tolerances: the Poisson counts are integers computed by the same float64 operations on every side: exactly
equal (``components = p``, scale 1, gain 1 gives y = count). The rest is float32 arithmetic on both sides,
where the reference evaluates the normals and the Tukey-lambda quantile in float64 from the same uniforms and
rounds once and the kernel uses the header's float32 log, sincos and expm1 (a few ulp): rtol 1e-5 and an atol
of 1e-5 times the noise's size in x's units (measured: below 2e-7 relative). float64 compute uses plain
log / sin / cos / expm1 on both sides: rtol = atol = 1e-12. Half-precision outputs round the float32 result
once: within one ulp of the reference's.
"""

import math
import re
from pathlib import Path

import pytest
import torch
import triton
import triton.language as tl

from cycleisp_fast.reference import physical_noise as ref
from cycleisp_fast.triton_kernels import physical_noise as kernels

HEADER = Path(__file__).resolve().parents[2] / "csrc" / "ops" / "physical_noise_math.h"
COMBINATIONS = ["p", "g", "t", "r", "q", "c", "ptrqc", "pgrq"]
RATES = [1e-3, 0.5, 9.99, 10.0, 10.01, 1e3, 1e7]
SEED, OFFSET = 2**40 + 3, 12345


def bits(components: str) -> int:
    mask = 0
    for letter in components:
        mask |= ref.COMPONENT_LETTERS[letter]
    return mask


def acc_of(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def make_params(dtype, gain, scale, read_scale, read_shape, row_scale, quant_step, n=None):
    """params ``(N, 6)`` in the compute dtype from per-image lists or scalars (N: the lists' length, or n)."""
    columns = [gain, scale, read_scale, read_shape, row_scale, quant_step]
    n = n or max(len(v) if isinstance(v, (list, tuple)) else 1 for v in columns)
    columns = [list(v) if isinstance(v, (list, tuple)) else [v] * n for v in columns]
    return torch.tensor(columns, dtype=acc_of(dtype)).T.contiguous()


# Two images of different gains, scales (DN per unit of x), read scales, Tukey shapes, row scales and steps.
PARAMS = dict(
    gain=[2.0, 0.5],
    scale=[50.0, 120.0],
    read_scale=[3.0, 1.5],
    read_shape=[-0.1, 0.15],
    row_scale=[0.5, 1.0],
    quant_step=[1.0, 2.0],
)


def noise_atol(params, bias):
    """1e-5 times the size of the noise in x's units: the largest (read + row + quantisation + |bias|) / scale."""
    p = params.double()
    size = p[:, ref.READ_SCALE] * 6 + p[:, ref.ROW_SCALE] * 6 + p[:, ref.QUANT_STEP] + bias.double().abs().amax(1)
    return 1e-5 * float((size / p[:, ref.SCALE]).max())


def run_both(x, params, bias, row_phase, components, clip_min=None, clip_max=None, seed=SEED, offset=OFFSET):
    args = (x, params, bias, row_phase, seed, offset, components, clip_min, clip_max)
    return kernels.physical_noise(*args), ref.physical_noise(*args)


def assert_matches(y, y_ref, params, bias):
    assert y.dtype == y_ref.dtype and y.shape == y_ref.shape and y.is_contiguous()
    if y.dtype == torch.float64:
        torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12, equal_nan=True)
    else:
        torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=noise_atol(params, bias), equal_nan=True)


def half_ulp_check(y, y_ref):
    """y within one ulp (of y_ref's dtype) of y_ref."""
    info = torch.finfo(y_ref.dtype)
    _, exponent = torch.frexp(y_ref.float().abs().clamp(min=info.smallest_normal))
    ulp = info.eps * torch.ldexp(torch.ones_like(y_ref, dtype=torch.float32), exponent - 1)
    return bool(((y.float() - y_ref.float()).abs() <= ulp).all())


# ---- the header ------------------------------------------------------------------------------------------


def test_constants_mirror_the_header():
    text = HEADER.read_text()
    assert kernels.TUKEY_ROUND == int(re.search(r"kTukeyRound = (0x[0-9A-Fa-f]+)u;", text).group(1), 16)
    assert kernels.QUANT_ROUND == int(re.search(r"kQuantRound = (0x[0-9A-Fa-f]+)u;", text).group(1), 16)
    assert kernels.ROW_ROUND == int(re.search(r"kRowRound = (0x[0-9A-Fa-f]+)u;", text).group(1), 16)
    assert kernels.LOGISTIC_LIMIT == float(re.search(r"kLogisticLimit = ([0-9.e-]+);", text).group(1))
    for name, value in [("kShot", 1), ("kGaussianRead", 2), ("kTukeyRead", 4), ("kRow", 8)]:
        assert int(re.search(rf"{name} = (\d+),", text).group(1)) == value
    assert int(re.search(r"kQuantization = (\d+),", text).group(1)) == kernels.QUANTIZATION
    assert int(re.search(r"kColorBias = (\d+),", text).group(1)) == kernels.COLOR_BIAS
    assert (kernels.SHOT, kernels.GAUSSIAN_READ, kernels.TUKEY_READ, kernels.ROW) == (1, 2, 4, 8)
    assert (kernels.TUKEY_ROUND, kernels.QUANT_ROUND, kernels.ROW_ROUND) == (
        ref.TUKEY_ROUND,
        ref.QUANT_ROUND,
        ref.ROW_ROUND,
    )


@triton.jit
def _expm1_test_kernel(x_ptr, out_ptr, N: tl.constexpr):
    i = tl.arange(0, N)
    tl.store(out_ptr + i, kernels.expm1_float(tl.load(x_ptr + i)))


def test_expm1_float_within_two_ulp():
    """expm1_float over its range (tiny arguments keep their relative accuracy; |x| > 87 is clamped)."""
    x = torch.cat(
        [
            torch.linspace(-87.0, 87.0, 1500),
            torch.linspace(-0.4, 0.4, 301),
            torch.tensor([0.0, 1e-30, -1e-30, 1e-12, -1e-12, 3e-8, -3e-8, 0.34657359, -0.34657359, 88.0, -100.0]),
        ]
    ).float()
    size = triton.next_power_of_2(x.numel())
    x = torch.cat([x, torch.zeros(size - x.numel())])
    out = torch.empty_like(x)
    _expm1_test_kernel[(1,)](x, out, N=size, enable_fp_fusion=False)
    exact = torch.expm1(x.double().clamp(-87.0, 87.0))
    ulp = torch.finfo(torch.float32).eps * torch.ldexp(torch.ones_like(exact), torch.frexp(exact.float())[1] - 1)
    ulp = torch.where(exact == 0, torch.finfo(torch.float32).tiny, ulp.double())
    assert bool(((out.double() - exact).abs() <= 2 * ulp).all()), float(((out.double() - exact).abs() / ulp).max())


# ---- the reference ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("components", COMBINATIONS)
@pytest.mark.parametrize(
    "shape, row_phase", [((2, 4, 5, 57), [0, 0, 1, 1]), ((2, 3, 7, 50), [])], ids=["packed", "planar"]
)
def test_matches_reference(dtype, components, shape, row_phase):
    """Each part alone and together; 2 images x 1140 / 1050 elements: two tiles each, rows across tiles."""
    x = torch.rand(shape, dtype=torch.float64).to(dtype)
    params = make_params(dtype, **PARAMS)
    bias = torch.randn(shape[:2], dtype=torch.float64).to(acc_of(dtype)) * 5
    y, y_ref = run_both(x, params, bias, row_phase, bits(components))
    assert_matches(y, y_ref, params, bias)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("gain", [1.0, 0.25])
def test_poisson_counts_equal_reference(dtype, gain):
    """p alone, scale 1: y = gain * count exactly, the reference's integers, for rates around both samplers'
    limit (inversion below 10, PTRS above)."""
    rates = torch.tensor(RATES, dtype=torch.float64).repeat_interleave(160)
    x = (rates * gain).to(dtype).view(1, 1, len(RATES), 160)
    params = make_params(dtype, gain, 1.0, 0.0, 0.0, 0.0, 0.0)
    y, y_ref = run_both(x, params, torch.zeros(1, 1, dtype=acc_of(dtype)), [], bits("p"))
    assert torch.equal(y, y_ref), (y != y_ref).nonzero()[:10].tolist()
    if gain == 1.0:
        assert torch.equal(y, torch.round(y)) and bool((y >= 0).all())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_precision_within_one_ulp_of_reference(dtype):
    x = torch.rand((2, 4, 6, 23), dtype=torch.float64).to(dtype)
    params = make_params(dtype, **PARAMS)
    bias = torch.randn(2, 4) * 3
    y, y_ref = run_both(x, params, bias, [0, 0, 1, 1], bits("ptrqc"), -0.05, 1.05)
    assert y.dtype == dtype and y.shape == x.shape
    assert half_ulp_check(y, y_ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("shape", [0.0, 1e-13, -1e-13, 1e-11, 0.2, -0.2, 1.0, -1.0])
def test_tukey_shapes(dtype, shape):
    """Tukey-lambda read noise at the logistic limit (|lambda| < 1e-12: the logistic quantile), just above it,
    at ELD's calibrated shapes and at the bounds of the op's range. x = 0, scale 1: y = read_scale Q(u)."""
    x = torch.zeros((1, 2, 4, 128), dtype=dtype)
    params = make_params(dtype, 0.0, 1.0, 2.0, shape, 0.0, 0.0)
    bias = torch.zeros(1, 2, dtype=acc_of(dtype))
    y, y_ref = run_both(x, params, bias, [], bits("t"))
    assert_matches(y, y_ref, params, bias)
    if abs(shape) < 1e-12:  # the logistic quantile, from the same uniforms
        words = ref.tile_words(x.numel(), SEED, OFFSET, ref.TUKEY_ROUND, "cpu")
        u = ref._noise.uniform_open(words, acc_of(dtype))
        logistic = (2.0 * (torch.log(u) - torch.log1p(-u))).to(acc_of(dtype)).view(x.shape)
        assert_matches(y, logistic.to(dtype), params, bias)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_clip_matches_reference(dtype):
    x = (torch.rand((2, 4, 4, 40), dtype=torch.float64) * 1.2 - 0.1).to(dtype)
    params = make_params(dtype, **PARAMS)
    bias = torch.randn(2, 4, dtype=torch.float64).to(acc_of(dtype))
    free, _ = run_both(x, params, bias, [0, 1, 0, 1], bits("ptrqc"))
    for clip_min, clip_max in [(0.0, 1.0), (0.2, None), (None, 0.7)]:
        y, y_ref = run_both(x, params, bias, [0, 1, 0, 1], bits("ptrqc"), clip_min, clip_max)
        assert_matches(y, y_ref, params, bias)
        expected = free.clamp(min=clip_min, max=clip_max)
        assert torch.equal(y, expected)
    assert bool((free < 0).any()) and bool((free > 1).any())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_nan_x_and_zero_gain(dtype):
    """NaN x: no Poisson draw, y is NaN (also through a clip). gain 0: shot = signal (the noiseless limit)."""
    x = torch.rand((2, 4, 4, 40), dtype=torch.float64).to(dtype)
    x.view(-1)[::7] = math.nan
    params = make_params(dtype, [0.0, 3.0], [40.0, 80.0], 2.0, -0.05, 0.5, 1.0)
    bias = torch.randn(2, 4, dtype=torch.float64).to(acc_of(dtype))
    for components in ("p", "ptrqc", "pgrq"):
        y, y_ref = run_both(x, params, bias, [], bits(components), 0.0, 1.0)
        assert torch.equal(y.isnan(), x.isnan())
        assert_matches(y, y_ref, params, bias)
    y, _ = run_both(x, params, bias, [], bits("p"))  # image 0 (gain 0): (scale x) / scale, 2 roundings
    rtol = 2 * torch.finfo(acc_of(dtype)).eps
    torch.testing.assert_close(y[0], x[0], rtol=rtol, atol=0, equal_nan=True)


def test_negative_signal_counts_zero():
    """x < 0: rate < 0, count 0: y = 0 with p alone."""
    x = -torch.rand((1, 1, 2, 100)) - 0.01
    params = make_params(torch.float32, 1.0, 10.0, 0.0, 0.0, 0.0, 0.0)
    y, y_ref = run_both(x, params, torch.zeros(1, 1), [], bits("p"))
    assert torch.equal(y, torch.zeros_like(x)) and torch.equal(y, y_ref)


# ---- the layout: rows, images, streams ------------------------------------------------------------------


@pytest.mark.parametrize("row_phase", [[0, 0, 1, 1], [0, 1, 1, 0], []], ids=["rggb", "grbg", "planar"])
def test_row_offsets_shared_by_sensor_rows(row_phase):
    """r alone on x = 0, scale 1, row scale 1: y[n, c, h, :] is one normal, shared by the channels of one
    sensor row (same phase, or all channels without phases), and the row normal of counter n rows + row."""
    n, c, h, w = 2, 4, 3, 100
    x = torch.zeros((n, c, h, w), dtype=torch.float64)
    params = make_params(torch.float64, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, n=n)
    y, _ = run_both(x, params, torch.zeros(n, c, dtype=torch.float64), row_phase, bits("r"))
    assert torch.equal(y, y[..., :1].expand_as(y))
    rows = 2 * h if row_phase else h
    normals = ref.row_normals(n * rows, SEED, OFFSET, torch.float64, "cpu").view(n, rows)
    phases = row_phase or [0] * c
    for channel in range(c):
        sensor_rows = [2 * r + phases[channel] if row_phase else r for r in range(h)]
        torch.testing.assert_close(y[:, channel, :, 0], normals[:, sensor_rows], rtol=1e-12, atol=1e-12)
        for other in range(c):
            same = torch.equal(y[:, channel], y[:, other])
            assert same == (phases[channel] == phases[other])


def test_images_depend_on_their_index_alone():
    """Image 0 of a batch of two is the same as a batch of one (row counters n rows + row, elements by index)."""
    x = torch.rand((2, 4, 3, 90))
    params = make_params(torch.float32, **PARAMS)
    bias = torch.randn(2, 4)
    for row_phase in ([0, 0, 1, 1], []):
        both = kernels.physical_noise(x, params, bias, row_phase, 7, 8, bits("ptrqc"), None, None)
        first = kernels.physical_noise(
            x[:1].contiguous(),
            params[:1].contiguous(),
            bias[:1].contiguous(),
            row_phase,
            7,
            8,
            bits("ptrqc"),
            None,
            None,
        )
        assert torch.equal(both[:1], first)


def test_deterministic_and_streams_differ():
    x = torch.rand((1, 4, 4, 64))
    params = make_params(torch.float32, **{k: v[:1] for k, v in PARAMS.items()})
    bias = torch.zeros(1, 4)
    args = (x, params, bias, [0, 0, 1, 1])
    y = kernels.physical_noise(*args, 11, 22, bits("pgrq"), None, None)
    assert torch.equal(y, kernels.physical_noise(*args, 11, 22, bits("pgrq"), None, None))
    for seed, offset in [(11, 23), (12, 22), (11 + 2**32, 22)]:
        other = kernels.physical_noise(*args, seed, offset, bits("pgrq"), None, None)
        assert float((other != y).double().mean()) > 0.9


def test_contract_and_errors():
    x = torch.rand((1, 2, 3, 5), dtype=torch.float64)
    params = make_params(torch.float64, 1.0, 10.0, 1.0, 0.0, 1.0, 1.0)
    bias = torch.zeros(1, 2, dtype=torch.float64)
    y = kernels.physical_noise(x, params, bias, [], 1, 2, bits("ptrqc"), None, None)
    assert y.dtype == torch.float64 and y.shape == x.shape and y.is_contiguous() and y.data_ptr() != x.data_ptr()
    empty = torch.empty((0, 2, 3, 5))
    assert kernels.physical_noise(empty, params[:0].float(), bias[:0].float(), [], 1, 2, 63 - 2, None, None).shape == (
        0,
        2,
        3,
        5,
    )
    with pytest.raises(ValueError, match="without both g and t"):
        kernels.physical_noise(x, params, bias, [], 1, 2, bits("gt"), None, None)
    with pytest.raises(ValueError, match="row_phase"):
        kernels.physical_noise(x, params, bias, [0, 2], 1, 2, bits("r"), None, None)
    with pytest.raises(TypeError, match="dtype"):
        kernels.physical_noise(x, params.float(), bias, [], 1, 2, bits("r"), None, None)


# ---- the native CPU op -----------------------------------------------------------------------------------


def native_op():
    if not hasattr(torch.ops.cycleisp_fast, "physical_noise"):
        pytest.skip("the extension has no cycleisp_fast::physical_noise (not rebuilt)")
    return torch.ops.cycleisp_fast.physical_noise


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
@pytest.mark.parametrize("components", ["ptrqc", "pgrq", "p"])
def test_matches_native_cpu(dtype, components):
    """The same streams as the C++ kernel: Poisson counts equal (p alone: y equal), the rest within float32
    rounding (bfloat16: one ulp)."""
    op = native_op()
    x = (torch.rand((2, 4, 5, 57), dtype=torch.float64) * 1.1 - 0.05).to(dtype)
    x.view(-1)[::97] = math.nan
    params = make_params(dtype, **PARAMS)
    bias = torch.randn(2, 4, dtype=torch.float64).to(acc_of(dtype))
    clip = (-0.02, 1.02)
    if components == "p":  # scale 1, rates up to 33: y = gain * count, unclipped
        params[:, ref.SCALE] = 1.0
        x, clip = x * 30, (None, None)
    args = (x, params, bias, [0, 0, 1, 1], SEED, OFFSET, bits(components), *clip)
    y, y_native = kernels.physical_noise(*args), op(*args)
    assert torch.equal(y.isnan(), y_native.isnan()) and bool(y.isnan().any())
    y, y_native = y.nan_to_num(), y_native.nan_to_num()
    if components == "p":
        assert torch.equal(y, y_native)
    elif dtype == torch.bfloat16:
        assert half_ulp_check(y, y_native)
    else:
        assert_matches(y, y_native, params, bias)
