"""The physics-based RAW noise op (``physical_noise``): every backend against the seeded reference (the shared
harness), the distribution of each component against scipy / its definition, the row structure, the component
switches, gradients, and bad input.

Statistical tests use fixed seeds (deterministic); bounds as test_noise.py: 5.5 standard errors, p-values above
1e-7.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import fused_backends
from harness import OpTester
from scipy import stats

from cycleisp_fast import ops
from cycleisp_fast.reference import physical_noise as reference

BACKENDS = fused_backends("physical_noise")
NATIVE = pytest.mark.skipif("native" not in BACKENDS, reason="the native extension has no physical_noise kernel")
P_MIN = 1e-7
SIGMAS = 5.5


class TestPhysicalNoise(OpTester):
    """The shared op tests: ``ptrqc`` clipped at the white level, ``pgrq`` with another CFA and offset, ``tr`` on
    planar rows; every dtype, gradients of x, the read and row scales and the bias (zero for gain and shape);
    layouts, empty batch, opcheck."""

    family = "physical_noise"

    def tolerances(self, case, variant, dtype, backend, what):
        if what == "output" and dtype in (torch.float32, torch.float64):
            bound = 2e-6 if dtype == torch.float32 else 1e-12
            return {"rtol": bound, "atol": bound}
        return super().tolerances(case, variant, dtype, backend, what)

    def opcheck_calls(self, backend):
        op = {
            "native": torch.ops.cycleisp_fast.physical_noise.default,
            "triton": torch.ops.cycleisp_fast.physical_noise_triton.default,
        }[backend]
        g = torch.Generator().manual_seed(3)
        x = torch.rand(2, 4, 3, 5, generator=g).requires_grad_(True)
        params = torch.tensor([[2.0, 50.0, 3.0, 0.1, 1.0, 1.0], [0.5, 20.0, 1.0, -0.2, 0.5, 1.0]]).requires_grad_(True)
        bias = torch.randn(2, 4, generator=g).requires_grad_(True)
        cases = [(x, params, bias, [0, 0, 1, 1], 3, 4, 63 - 2, None, None), (x, params, bias, [], 5, 0, 29, None, 1.0)]
        if backend == "native":
            cases.append(
                (
                    x.detach().double(),
                    params.detach().double(),
                    bias.detach().double(),
                    [],
                    2**63 - 1,
                    2**32 - 1,
                    63 - 4,
                    -1.0,
                    2.0,
                )
            )
        return [(op, args) for args in cases]


def physical(x, gain=1.0, backend="native", **kwargs):
    return ops.physical_noise(x, gain, backend=backend, **kwargs)


def backends_here():
    return ["reference", *BACKENDS]


FAST = "native" if "native" in BACKENDS else "reference"
"""The backend of the statistical and behavioural tests (the shared tests compare every backend with the reference;
Triton's interpreter is too slow for samples of 1e5)."""


# ---- components, one at a time ------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["native", "reference"])
def test_shot_alone_is_gain_times_poisson_counts(backend):
    """``p``: y = K Poisson(s x / K) / s; with s = 1, K = 2 exact even integers with the Poisson mean and variance."""
    if backend not in backends_here():
        pytest.skip("unavailable")
    n = 1 << 18
    x = torch.full((1, 1, 1, n), 30.0)
    y = physical(x, 2.0, scale=1.0, components="p", seed=11, backend=backend)
    counts = (y / 2.0).double()
    assert torch.equal(counts, counts.round())
    rate = 15.0
    assert abs(float(counts.mean()) - rate) < SIGMAS * math.sqrt(rate / n)
    assert abs(float(counts.var()) - rate) < SIGMAS * rate * math.sqrt(2.0 / n + 1.0 / (rate * n))


@pytest.mark.parametrize("shape", [-0.25, -0.1, 0.0, 1e-13, 1e-6, 0.14, 0.5])
def test_tukey_read_noise_follows_scipy_tukeylambda(shape):
    """``t`` alone: (y - x) s / sigma is Tukey-lambda(shape) distributed (Kolmogorov-Smirnov against scipy), also at
    and next to shape 0 (the logistic limit, where ``lambda + 1e-8`` would cancel in float32)."""
    n = 1 << 17
    x = torch.zeros(1, 1, 1, n)
    y = physical(x, 0.0, scale=1.0, read_scale=1.0, read_shape=shape, components="t", seed=5, backend=FAST)
    p = stats.kstest(y.flatten().double().numpy(), stats.tukeylambda(shape).cdf).pvalue
    assert p > P_MIN, f"shape {shape}: KS p-value {p:.2e}"


def test_tukey_quantile_is_accurate_near_zero_where_the_naive_form_cancels():
    """Our float32 quantile at shape 1e-7 equals the float64 logistic limit within float32 rounding; the naive
    ``(u^l - (1-u)^l) / l`` in float32 (LED's form) is off by far more."""
    u = torch.tensor([0.01, 0.3, 0.7, 0.99], dtype=torch.float64)
    expected = torch.log(u / (1 - u))
    lam = 1e-7
    naive = (u.float() ** lam - (1 - u.float()) ** lam) / lam
    assert float((naive.double() - expected).abs().max()) > 1e-2
    # The op at shape 1e-7 with x = 0, sigma = 1 draws Q(u) for its own uniforms; compare with the float64 formula.
    y = physical(
        torch.zeros(1, 1, 1, 4096), 0.0, read_scale=1.0, read_shape=lam, components="t", seed=2, backend="reference"
    )
    words = reference.tile_words(4096, 2, 0, reference.TUKEY_ROUND, "cpu")
    exact = reference.tukey_lambda_quantile(
        ((words >> 9).double() + 0.5) * 2.0**-23, torch.tensor(lam, dtype=torch.float64)
    )
    torch.testing.assert_close(y.flatten().double(), exact, rtol=1e-6, atol=1e-6)
    if "native" in BACKENDS:
        native = physical(torch.zeros(1, 1, 1, 4096), 0.0, read_shape=lam, read_scale=1.0, components="t", seed=2)
        torch.testing.assert_close(native.flatten().double(), exact, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("pattern", ["RGGB", "GBRG", None])
def test_row_noise_is_one_offset_per_sensor_row(pattern):
    """``r`` alone: constant along each row; with a Bayer pattern the two packed planes of one sensor row share it
    (and the planes of the other row parity do not); planar rows are shared by every channel; offsets ~ N(0, s^2)."""
    backend = FAST
    x = torch.zeros(64, 4, 8, 16)
    y = physical(x, 0.0, row_scale=2.0, components="r", bayer_pattern=pattern, seed=7, backend=backend)
    assert torch.equal(y, y[..., :1].expand_as(y))
    rows = y[..., 0]
    if pattern is None:
        assert torch.equal(rows, rows[:, :1].expand_as(rows))
        offsets = rows[:, 0]
    else:
        from cycleisp_fast.reference.bayer import cfa_sites

        phase = [dy for dy, _ in cfa_sites(pattern)]
        for a in range(4):
            for b in range(4):
                same = torch.equal(rows[:, a], rows[:, b])
                assert same == (phase[a] == phase[b]), (pattern, a, b)
        offsets = torch.cat([rows[:, phase.index(0)], rows[:, phase.index(1)]])
    p = stats.kstest(offsets.flatten().double().numpy() / 2.0, "norm").pvalue
    assert p > P_MIN


def test_quantisation_and_bias():
    """``q``: uniform on (-step/2, step/2) in DN; ``c``: exactly bias / scale added per channel."""
    backend = FAST
    x = torch.zeros(2, 4, 64, 64)
    y = physical(x, 0.0, scale=4.0, quant_step=3.0, components="q", seed=1, backend=backend) * 4.0
    assert float(y.abs().max()) < 1.5
    p = stats.kstest(y.flatten().double().numpy(), stats.uniform(loc=-1.5, scale=3.0).cdf).pvalue
    assert p > P_MIN
    bias = torch.tensor([[1.0, -2.0, 0.5, 4.0], [0.0, 0.0, 8.0, -8.0]])
    clean = torch.rand(2, 4, 3, 3)
    y = physical(clean, 0.0, scale=4.0, bias=bias, components="c", seed=1, backend=backend)
    torch.testing.assert_close(y, clean + bias.view(2, 4, 1, 1) / 4.0, rtol=0, atol=1e-7)


def test_components_are_independent_and_add_up():
    """Each part comes from its own stream: ``ptrqc`` equals the sum of the parts drawn alone (same seed), to float
    rounding, with the signal counted once."""
    backend = FAST
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 4, 6, 10, generator=g)
    kw = dict(
        scale=50.0,
        read_scale=2.0,
        read_shape=0.1,
        row_scale=1.0,
        quant_step=1.0,
        bias=0.5,
        bayer_pattern="RGGB",
        seed=9,
        backend=backend,
    )
    gain = torch.tensor([1.0, 3.0])
    whole = physical(x, gain, components="ptrqc", **kw)
    parts = physical(x, gain, components="p", **kw)
    for letter in "trqc":
        parts = parts + physical(x, gain, components=letter, **kw) - x
    torch.testing.assert_close(whole, parts, rtol=1e-5, atol=1e-5)


def test_gaussian_read_is_the_noise_sample_stream():
    """``g`` draws the Gaussian stream of ``noise_sample`` for the same (seed, offset): y = x + sigma z / s."""
    backend = FAST
    x = torch.zeros(1, 2, 4, 300)
    y = physical(x, 0.0, read_scale=1.0, components="g", seed=4, offset=2, backend=backend)
    z = ops.heteroscedastic_gaussian_noise(x, 0.0, 1.0, seed=4, offset=2, backend=backend)
    torch.testing.assert_close(y, z, rtol=0, atol=0)


def test_seed_offset_determinism_and_independence():
    backend = FAST
    x = torch.full((2, 4, 16, 16), 0.1)
    kw = dict(
        scale=100.0,
        read_scale=2.0,
        read_shape=-0.1,
        row_scale=1.0,
        components="ptrq",
        bayer_pattern="RGGB",
        backend=backend,
    )
    a = physical(x, 1.0, seed=3, offset=0, **kw)
    assert torch.equal(a, physical(x, 1.0, seed=3, offset=0, **kw))
    assert not torch.equal(a, physical(x, 1.0, seed=3, offset=1, **kw))
    torch.manual_seed(0)
    b = physical(x, 1.0, **kw)
    torch.manual_seed(0)
    assert torch.equal(b, physical(x, 1.0, **kw))


def test_gain_zero_and_nan_pass_the_signal():
    backend = FAST
    x = torch.tensor([[[[0.2, float("nan"), 0.7]]]])
    y = physical(x, 0.0, scale=10.0, components="p", seed=1, backend=backend)
    assert torch.equal(y[..., [0, 2]], x[..., [0, 2]]) and bool(y[..., 1].isnan())
    y = physical(x, 1.0, scale=10.0, components="p", seed=1, backend=backend)
    assert bool(y[..., 1].isnan())


@NATIVE
def test_gradcheck_float64_without_shot():
    """Gradients of x, read and row scales, quantisation step and bias (no Poisson part: y is smooth)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 4, 3, 4, dtype=torch.float64, generator=g, requires_grad=True)
    read = torch.tensor([1.5, 0.5], dtype=torch.float64, requires_grad=True)
    row = torch.tensor([0.7, 2.0], dtype=torch.float64, requires_grad=True)
    quant = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    bias = torch.randn(2, 4, dtype=torch.float64, generator=g, requires_grad=True)

    def fn(x, read, row, quant, bias):
        return ops.physical_noise(
            x,
            1.0,
            scale=7.0,
            read_scale=read,
            read_shape=0.1,
            row_scale=row,
            quant_step=quant,
            bias=bias,
            components="trqc",
            bayer_pattern="RGGB",
            seed=1,
            backend="native",
        )

    assert torch.autograd.gradcheck(fn, (x, read, row, quant, bias))


# ---- bad input -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"gain": -1.0}, ValueError, "gain must be"),
        ({"gain": float("nan")}, ValueError, "gain must be"),
        ({"scale": 0.0}, ValueError, "scale must be"),
        ({"read_scale": -0.5}, ValueError, "read_scale must be"),
        ({"read_shape": 1.5}, ValueError, r"read_shape must be in \[-1.0, 1.0\]"),
        ({"row_scale": torch.tensor([1.0, 2.0, 3.0])}, ValueError, "row_scale must have shape"),
        ({"components": "ptx"}, ValueError, "unknown letters"),
        ({"components": "gt"}, ValueError, "not both"),
        ({"bias": torch.zeros(3, 4)}, ValueError, "bias must have shape"),
        ({"bayer_pattern": "RGBX"}, ValueError, "pattern"),
        ({"clip": (1.0, 0.0)}, ValueError, "clip must have min <= max"),
        ({"seed": -1}, ValueError, "seed must be"),
    ],
)
def test_bad_input_is_named(kwargs, error, match):
    args = {"gain": 1.0, **kwargs}
    gain = args.pop("gain")
    with pytest.raises(error, match=match):
        ops.physical_noise(torch.rand(2, 4, 4, 4), gain, **args)


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match=r"x must have shape \(N, C, H, W\)"):
        ops.physical_noise(torch.rand(4, 4, 4), 1.0)
    with pytest.raises(ValueError, match="bayer_pattern needs packed Bayer planes"):
        ops.physical_noise(torch.rand(1, 3, 4, 4), 1.0, bayer_pattern="RGGB")
    with pytest.raises(TypeError, match="floating dtype"):
        ops.physical_noise(torch.zeros(1, 4, 2, 2, dtype=torch.int32), 1.0)


def test_composite_of_the_benchmark_has_the_same_moments():
    """The LED-style eager composite the benchmark times draws the same model: per-image mean and variance of
    y - x agree with the fused op's (a check that the comparison is fair)."""
    from cycleisp_fast.cases.physical_noise import VARIANTS, _inputs, led_style_composite, physical_noise_case

    inputs = _inputs((4, 4, 64, 64), torch.float32, torch.device("cpu"), torch.Generator().manual_seed(1))
    kwargs = dict(VARIANTS[0].kwargs, clip=None)
    torch.manual_seed(0)
    eager = led_style_composite(*inputs, **kwargs) - inputs[0]
    fused = physical_noise_case(*inputs, backend="reference", **kwargs) - inputs[0]
    ve, vf = eager.var(dim=(1, 2, 3)), fused.var(dim=(1, 2, 3))
    assert bool(((ve / vf - 1).abs() < 0.1).all()), (ve, vf)
    np.testing.assert_allclose(
        eager.mean(dim=(1, 2, 3)).numpy(), fused.mean(dim=(1, 2, 3)).numpy(), atol=0.05 * float(vf.sqrt().max())
    )
