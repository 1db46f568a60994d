"""Noise-level samplers (cycleisp_fast.noise.levels) and NoiseModel.

The statistical tests use fixed seeds, so they are deterministic; their thresholds are chosen so that a
correct sampler would fail them with probability below 1e-6 over the choice of seed (KS p-values above
1e-7, which a correct sampler falls under with probability 1e-7; mean/median/correlation bounds at 7 or
more standard errors). The constants of each preset are written out here again, independently of the
module, so a typo in either shows up.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from cycleisp_fast.noise import (
    NOISE_LEVEL_SAMPLERS,
    NoiseLevels,
    NoiseModel,
    NoisySample,
    cbdnet_log_uniform,
    cbdnet_uniform,
    cycleisp_dnd,
    cycleisp_sidd,
    sample_noise_levels,
    unprocessing,
)
from cycleisp_fast.noise import levels as noise_levels

N_STAT = 20000
P_MIN = 1e-7  # a correct sampler's KS p-value is uniform: below this with probability 1e-7

# name -> (log function, shot range, slope, intercept, sigma of the normal term)
LOG_LINEAR = {
    "cycleisp_dnd": (np.log10, (1e-4, 0.012), 2.18, 1.20, 0.26),
    "cycleisp_sidd": (np.log10, (0.00068674, 0.02194856), 1.85, 0.30, 0.20),
    "unprocessing": (np.log, (1e-4, 0.012), 2.18, 1.20, 0.26),
}
ALL = ("cycleisp_dnd", "cycleisp_sidd", "unprocessing", "cbdnet_uniform", "cbdnet_log_uniform")


def _draw(name: str, n: int = N_STAT, seed: int = 1234, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    shot, read = sample_noise_levels(name, n, generator=g, dtype=torch.float64, **kwargs)
    return shot.numpy(), read.numpy()


# ------------------------------------------------------------------------------------------------------
# Registry and API
# ------------------------------------------------------------------------------------------------------


def test_registry_names():
    assert set(NOISE_LEVEL_SAMPLERS) == set(ALL)
    assert NOISE_LEVEL_SAMPLERS["cycleisp_dnd"] is cycleisp_dnd
    assert NOISE_LEVEL_SAMPLERS["cycleisp_sidd"] is cycleisp_sidd
    assert NOISE_LEVEL_SAMPLERS["unprocessing"] is unprocessing
    assert NOISE_LEVEL_SAMPLERS["cbdnet_uniform"] is cbdnet_uniform
    assert NOISE_LEVEL_SAMPLERS["cbdnet_log_uniform"] is cbdnet_log_uniform


def test_docstring_documents_log_base_difference():
    doc = noise_levels.__doc__
    assert "log10" in doc and "natural log" in doc and "4.77" in doc and "0.60" in doc
    assert math.isclose(10**1.20 / math.e**1.20, 4.77, abs_tol=5e-3)
    assert math.isclose(0.26 * math.log(10), 0.60, abs_tol=5e-3)
    for fn in (cycleisp_dnd, unprocessing):
        assert "4.77" in fn.__doc__
    for fn in (cbdnet_uniform, cbdnet_log_uniform):
        assert "sigma_s**2 L + sigma_c**2" in fn.__doc__


@pytest.mark.parametrize("name", ALL)
def test_returns_noise_levels_namedtuple(name):
    levels = sample_noise_levels(name, 5, generator=torch.Generator().manual_seed(0))
    assert isinstance(levels, NoiseLevels)
    shot, read = levels
    assert shot is levels.shot and read is levels.read
    assert (shot > 0).all() and (read > 0).all()


# ------------------------------------------------------------------------------------------------------
# Log-linear presets (CycleISP DND / SIDD, Unprocessing)
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(LOG_LINEAR))
def test_log_shot_is_uniform(name):
    log, (lo, hi), *_ = LOG_LINEAR[name]
    shot, _ = _draw(name)
    x = log(shot)
    a, b = log(lo), log(hi)
    assert x.min() >= a - 1e-12 and x.max() <= b + 1e-12
    # the sample reaches both ends: P(all above a + 1e-3 (b - a)) = 0.999**20000 ~ 2e-9
    assert x.min() < a + 1e-3 * (b - a) and x.max() > b - 1e-3 * (b - a)
    assert stats.kstest(x, "uniform", args=(a, b - a)).pvalue > P_MIN


@pytest.mark.parametrize("name", list(LOG_LINEAR))
def test_log_read_residual_is_normal_and_independent(name):
    log, _, slope, intercept, sigma = LOG_LINEAR[name]
    shot, read = _draw(name, seed=99)
    residual = log(read) - (slope * log(shot) + intercept)
    assert stats.kstest(residual, "norm", args=(0.0, sigma)).pvalue > P_MIN
    # mean within 7 standard errors, and no correlation with the shot (se 1/sqrt(n) ~ 0.007)
    assert abs(residual.mean()) < 7 * sigma / math.sqrt(N_STAT)
    assert abs(np.corrcoef(residual, log(shot))[0, 1]) < 0.05


def test_cycleisp_dnd_uses_log10_and_unprocessing_natural_log():
    """Read the samples in the wrong base: the residual is then far from N(0, 0.26)."""
    shot_c, read_c = _draw("cycleisp_dnd", seed=5)
    shot_u, read_u = _draw("unprocessing", seed=5)
    wrong_c = np.log(read_c) - (2.18 * np.log(shot_c) + 1.20)  # log10 preset read as natural log
    wrong_u = np.log10(read_u) - (2.18 * np.log10(shot_u) + 1.20)  # natural-log preset read as log10
    assert stats.kstest(wrong_c, "norm", args=(0.0, 0.26)).pvalue < 1e-6
    assert stats.kstest(wrong_u, "norm", args=(0.0, 0.26)).pvalue < 1e-6
    # median of read / shot**2.18: 10**1.20 vs e**1.20 (ratio 4.77); log10-median se ~ 0.0023 (dnd)
    med_c = np.log10(np.median(read_c / shot_c**2.18))
    med_u = np.log10(np.median(read_u / shot_u**2.18))
    assert abs(med_c - 1.20) < 0.02
    assert abs(med_u - 1.20 / math.log(10)) < 0.02
    assert abs((med_c - med_u) - math.log10(10**1.20 / math.e**1.20)) < 0.03
    # spread in natural log: 0.26 ln 10 = 0.599 for CycleISP, 0.26 for Brooks (se of std ~ 0.5%)
    std_c = np.std(np.log(read_c) - 2.18 * np.log(shot_c))
    std_u = np.std(np.log(read_u) - 2.18 * np.log(shot_u))
    assert abs(std_c - 0.26 * math.log(10)) < 0.03
    assert abs(std_u - 0.26) < 0.015


def test_same_shot_range_for_dnd_and_unprocessing():
    shot_c, _ = _draw("cycleisp_dnd", seed=11)
    shot_u, _ = _draw("unprocessing", seed=12)
    assert stats.ks_2samp(shot_c, shot_u).pvalue > P_MIN


def test_line_endpoints_match_spec():
    """The documented values of the line (no normal term) at the ends of the shot range."""
    assert math.isclose(10 ** (2.18 * math.log10(1e-4) + 1.20), 3.0e-8, rel_tol=0.05)
    assert math.isclose(10 ** (2.18 * math.log10(0.012) + 1.20), 1.0e-3, rel_tol=0.05)
    assert math.isclose(math.exp(2.18 * math.log(1e-4) + 1.20), 6.3e-9, rel_tol=0.05)
    assert math.isclose(math.exp(2.18 * math.log(0.012) + 1.20), 2.2e-4, rel_tol=0.05)


def test_first_draw_matches_formula():
    """Draw order: n uniforms, then n normals, from the generator, in float64."""
    n = 7
    g = torch.Generator().manual_seed(3)
    u = torch.rand(n, generator=g, dtype=torch.float64)
    z = torch.randn(n, generator=g, dtype=torch.float64)
    lo, hi = math.log10(1e-4), math.log10(0.012)
    log_shot = lo + (hi - lo) * u
    shot, read = cycleisp_dnd(n, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    torch.testing.assert_close(shot, 10.0**log_shot, rtol=1e-12, atol=0)
    torch.testing.assert_close(read, 10.0 ** (2.18 * log_shot + 1.20 + 0.26 * z), rtol=1e-12, atol=0)


# ------------------------------------------------------------------------------------------------------
# CBDNet presets
# ------------------------------------------------------------------------------------------------------


def test_cbdnet_uniform_ranges_and_shape():
    shot, read = _draw("cbdnet_uniform", n=N_STAT // 3, seed=21)
    assert shot.shape == (N_STAT // 3, 3) and read.shape == (N_STAT // 3, 3)
    sigma_s, sigma_c = np.sqrt(shot), np.sqrt(read)
    assert sigma_s.min() >= 0 and sigma_s.max() <= 0.16 and sigma_c.min() >= 0 and sigma_c.max() <= 0.06
    for channel in range(3):
        assert stats.kstest(sigma_s[:, channel], "uniform", args=(0.0, 0.16)).pvalue > P_MIN
        assert stats.kstest(sigma_c[:, channel], "uniform", args=(0.0, 0.06)).pvalue > P_MIN
    # channels are drawn independently (se of r ~ 0.012)
    assert abs(np.corrcoef(sigma_s[:, 0], sigma_s[:, 1])[0, 1]) < 0.09
    assert abs(np.corrcoef(sigma_s[:, 0], sigma_c[:, 0])[0, 1]) < 0.09
    # not log-uniform
    assert stats.kstest(np.log(sigma_s.ravel()), "uniform", args=(math.log(1e-4), math.log(0.16 / 1e-4))).pvalue < 1e-6


def test_cbdnet_log_uniform_ranges_and_shape():
    shot, read = _draw("cbdnet_log_uniform", seed=22)
    assert shot.shape == (N_STAT,) and read.shape == (N_STAT,)
    ln_s, ln_c = 0.5 * np.log(shot), 0.5 * np.log(read)
    a = math.log(1e-4)
    assert ln_s.min() >= a - 1e-12 and ln_s.max() <= math.log(0.16) + 1e-12
    assert ln_c.min() >= a - 1e-12 and ln_c.max() <= math.log(0.06) + 1e-12
    assert stats.kstest(ln_s, "uniform", args=(a, math.log(0.16) - a)).pvalue > P_MIN
    assert stats.kstest(ln_c, "uniform", args=(a, math.log(0.06) - a)).pvalue > P_MIN
    # not uniform in sigma
    assert stats.kstest(np.sqrt(shot), "uniform", args=(0.0, 0.16)).pvalue < 1e-6


def test_cbdnet_channels_option():
    g = torch.Generator().manual_seed(0)
    assert cbdnet_uniform(4, generator=g).shot.shape == (4, 3)
    assert cbdnet_uniform(4, 4, generator=g).read.shape == (4, 4)
    assert cbdnet_uniform(4, None, generator=g).shot.shape == (4,)
    assert cbdnet_log_uniform(4, generator=g).shot.shape == (4,)
    assert cbdnet_log_uniform(4, channels=4, generator=g).read.shape == (4, 4)
    for bad in (0, -2):
        with pytest.raises(ValueError, match="channels"):
            cbdnet_uniform(4, bad)
    with pytest.raises(TypeError, match="channels"):
        cbdnet_log_uniform(4, channels=2.5)


# ------------------------------------------------------------------------------------------------------
# Reproducibility, shapes, dtypes, devices
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_reproducible_from_generator(name):
    a = sample_noise_levels(name, 16, generator=torch.Generator().manual_seed(42))
    b = sample_noise_levels(name, 16, generator=torch.Generator().manual_seed(42))
    c = sample_noise_levels(name, 16, generator=torch.Generator().manual_seed(43))
    assert torch.equal(a.shot, b.shot) and torch.equal(a.read, b.read)
    assert not torch.equal(a.shot, c.shot) and not torch.equal(a.read, c.read)
    g = torch.Generator().manual_seed(42)
    first, second = sample_noise_levels(name, 16, generator=g), sample_noise_levels(name, 16, generator=g)
    assert not torch.equal(first.shot, second.shot)  # the generator advances


@pytest.mark.parametrize("name", ALL)
def test_default_generator(name):
    torch.manual_seed(7)
    a = sample_noise_levels(name, 8)
    torch.manual_seed(7)
    b = sample_noise_levels(name, 8)
    assert torch.equal(a.shot, b.shot) and torch.equal(a.read, b.read)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("device", [None, "cpu", torch.device("cpu")])
def test_shapes_dtypes_devices(name, dtype, device):
    levels = sample_noise_levels(name, 6, generator=torch.Generator().manual_seed(1), device=device, dtype=dtype)
    expected_shape = (6, 3) if name == "cbdnet_uniform" else (6,)
    for t in levels:
        assert t.shape == expected_shape and t.dtype == dtype and t.device.type == "cpu"
        assert not t.requires_grad


@pytest.mark.parametrize("name", ALL)
def test_cast_happens_after_float64_compute(name):
    a = sample_noise_levels(name, 32, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    b = sample_noise_levels(name, 32, generator=torch.Generator().manual_seed(8))
    assert b.shot.dtype == torch.float32
    assert torch.equal(a.shot.float(), b.shot) and torch.equal(a.read.float(), b.read)


@pytest.mark.parametrize("name", ALL)
def test_device_does_not_change_values(name):
    """Levels are drawn on the CPU, so another device (here 'meta', which holds no data) only gets a copy."""
    levels = sample_noise_levels(name, 4, generator=torch.Generator().manual_seed(0), device="meta")
    assert levels.shot.device.type == "meta" and levels.read.device.type == "meta"


# ------------------------------------------------------------------------------------------------------
# Bad inputs
# ------------------------------------------------------------------------------------------------------


def test_unknown_preset():
    with pytest.raises(ValueError, match="name must be one of") as info:
        sample_noise_levels("dnd", 4)
    for choice in ALL:
        assert choice in str(info.value)
    assert "'dnd'" in str(info.value)
    with pytest.raises(TypeError, match="name must be a str"):
        sample_noise_levels(None, 4)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize(
    "n, error",
    [(0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError), ("4", TypeError), (None, TypeError)],
)
def test_bad_n(name, n, error):
    with pytest.raises(error, match=r"^n must be a positive int"):
        sample_noise_levels(name, n)


def test_numpy_int_n_is_accepted():
    assert cycleisp_dnd(np.int64(3)).shot.shape == (3,)


@pytest.mark.parametrize("name", ALL)
def test_bad_generator_and_dtype(name):
    with pytest.raises(TypeError, match="generator"):
        sample_noise_levels(name, 2, generator=3)
    with pytest.raises(TypeError, match="dtype"):
        sample_noise_levels(name, 2, dtype=torch.int32)
    with pytest.raises(TypeError, match="dtype"):
        sample_noise_levels(name, 2, dtype="float32")


# ------------------------------------------------------------------------------------------------------
# NoiseModel with a fake op
# ------------------------------------------------------------------------------------------------------


class FakeOp:
    """Records its calls; returns x + 1 (and a variance shot x + read) like the real ops' contract."""

    def __init__(self):
        self.calls = []

    def __call__(
        self,
        x,
        shot,
        read,
        *,
        seed=None,
        offset=0,
        generator=None,
        clip=None,
        return_variance=False,
        variance_from="noisy",
        backend=None,
    ):
        self.calls.append(
            dict(
                x=x,
                shot=shot,
                read=read,
                seed=seed,
                offset=offset,
                generator=generator,
                clip=clip,
                return_variance=return_variance,
                variance_from=variance_from,
                backend=backend,
            )
        )
        if generator is not None and seed is None:
            torch.randint(0, 2**62, (1,), generator=generator)  # the ops draw their seed from the generator
        y = x + 1
        if not return_variance:
            return y
        s = shot.reshape(shot.shape[0], -1, 1, 1)
        r = read.reshape(read.shape[0], -1, 1, 1)
        return y, s * (y if variance_from == "noisy" else x) + r


def _clean(n=3, c=4, h=5, w=6, device="cpu", dtype=torch.float32):
    return (
        torch.rand(n, c, h, w, device=device, dtype=dtype)
        if device != "meta"
        else torch.empty(n, c, h, w, device=device, dtype=dtype)
    )


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_noise_model_level_shapes_and_devices(name, device):
    op = FakeOp()
    model = NoiseModel(name, sampler=op)
    clean = _clean(device=device)
    out = model(clean, generator=torch.Generator().manual_seed(0))
    assert isinstance(out, NoisySample)
    expected = (3, 4) if name == "cbdnet_uniform" else (3,)  # cbdnet_uniform gets channels = C
    call = op.calls[-1]
    for t in (out.shot, out.read, call["shot"], call["read"]):
        assert t.shape == expected and t.device.type == device and t.dtype == torch.float32
    assert call["x"] is clean
    assert out.noisy.device.type == device and out.variance is not None


def test_noise_model_passes_options_through():
    op = FakeOp()
    model = NoiseModel(
        "cycleisp_sidd",
        "poisson_gaussian",
        clip=(None, 1),
        return_variance=False,
        variance_from="clean",
        sampler=op,
        backend="reference",
    )
    clean = _clean()
    out = model(clean, seed=123, offset=9)
    call = op.calls[-1]
    assert call["clip"] == (None, 1.0) and call["return_variance"] is False
    assert call["variance_from"] == "clean" and call["backend"] == "reference"
    assert call["seed"] == 123 and call["offset"] == 9 and call["generator"] is None
    assert out.variance is None and torch.equal(out.noisy, clean + 1)

    model = NoiseModel(clip=None, sampler=op)
    g = torch.Generator().manual_seed(0)
    model(clean, generator=g)
    call = op.calls[-1]
    assert call["clip"] is None and call["seed"] is None and call["generator"] is g and call["offset"] == 0
    assert call["return_variance"] is True and call["variance_from"] == "noisy"


def test_noise_model_variance_uses_levels():
    model = NoiseModel("unprocessing", sampler=FakeOp())
    clean = _clean()
    out = model(clean, generator=torch.Generator().manual_seed(4))
    expected = out.shot.view(-1, 1, 1, 1) * out.noisy + out.read.view(-1, 1, 1, 1)
    torch.testing.assert_close(out.variance, expected)


def test_noise_model_reproducible():
    model = NoiseModel(sampler=FakeOp())
    clean = _clean()
    a = model(clean, generator=torch.Generator().manual_seed(5))
    b = model(clean, generator=torch.Generator().manual_seed(5))
    c = model(clean, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a.shot, b.shot) and torch.equal(a.read, b.read)
    assert not torch.equal(a.shot, c.shot)
    # the levels are those of the preset with the same generator
    ref = cycleisp_dnd(3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.shot, ref.shot) and torch.equal(a.read, ref.read)
    # (seed, offset) alone fix the levels; another offset or seed changes them; the default generator is
    # left alone
    torch.manual_seed(0)
    state = torch.get_rng_state()
    d, e = model(clean, seed=10, offset=2), model(clean, seed=10, offset=2)
    assert torch.equal(torch.get_rng_state(), state)
    f, h = model(clean, seed=10, offset=3), model(clean, seed=11, offset=2)
    assert torch.equal(d.shot, e.shot) and torch.equal(d.read, e.read)
    assert not torch.equal(d.shot, f.shot) and not torch.equal(d.shot, h.shot)
    # with both, the levels follow the generator
    k = model(clean, seed=10, offset=2, generator=torch.Generator().manual_seed(5))
    assert torch.equal(k.shot, a.shot)


def test_noise_model_level_dtype():
    op = FakeOp()
    model = NoiseModel(sampler=op)
    assert model(_clean(dtype=torch.float64)).shot.dtype == torch.float64
    assert model(_clean(dtype=torch.bfloat16)).shot.dtype == torch.float32  # tiny reads survive


def test_noise_model_custom_levels_and_kwargs():
    def fixed(n, *, generator=None, device=None, dtype=torch.float32, scale=1.0):
        return torch.full((n, 1), 0.01 * scale, dtype=dtype, device=device), 1e-4  # a (shot, read) pair

    op = FakeOp()
    out = NoiseModel(fixed, level_kwargs={"scale": 2.0}, sampler=op)(_clean())
    assert out.shot.shape == (3, 1) and torch.allclose(out.shot, torch.full((3, 1), 0.02))
    assert out.read.shape == (3,) and torch.allclose(out.read, torch.full((3,), 1e-4))
    out = NoiseModel("cbdnet_log_uniform", level_kwargs={"channels": 4}, sampler=op)(_clean())
    assert out.shot.shape == (3, 4)
    with pytest.raises(ValueError, match=r"shot must have shape"):
        NoiseModel("cbdnet_uniform", level_kwargs={"channels": 3}, sampler=op)(_clean(c=4))


def test_noise_model_bad_arguments():
    with pytest.raises(ValueError, match="levels must be one of"):
        NoiseModel("dnd")
    with pytest.raises(TypeError, match="levels"):
        NoiseModel(3)
    with pytest.raises(ValueError, match="model must be one of"):
        NoiseModel(model="gaussian")
    with pytest.raises(TypeError, match="clip"):
        NoiseModel(clip=(0.0,))
    with pytest.raises(ValueError, match="clip"):
        NoiseModel(clip=(1.0, 0.0))
    with pytest.raises(ValueError, match="variance_from must be one of"):
        NoiseModel(variance_from="both")
    with pytest.raises(TypeError, match="return_variance"):
        NoiseModel(return_variance=1)
    with pytest.raises(ValueError, match="level_kwargs"):
        NoiseModel(level_kwargs={"generator": None})
    model = NoiseModel(sampler=FakeOp())
    with pytest.raises(ValueError, match="clean must have shape"):
        model(torch.rand(4, 5, 6))
    with pytest.raises(TypeError, match="clean must have a floating dtype"):
        model(torch.zeros(1, 1, 2, 2, dtype=torch.uint8))
    with pytest.raises(TypeError, match="seed"):
        model(_clean(), seed=1.5)
    with pytest.raises(TypeError, match="offset"):
        model(_clean(), offset=None)
    assert "cycleisp_dnd" in repr(model)


def test_noise_model_in_training_step():
    """Inside autograd: the levels carry no graph; the fake op's output is differentiable wrt clean."""
    clean = _clean().requires_grad_()
    out = NoiseModel(sampler=FakeOp())(clean, generator=torch.Generator().manual_seed(0))
    assert not out.shot.requires_grad and not out.read.requires_grad
    out.noisy.sum().backward()
    assert torch.equal(clean.grad, torch.ones_like(clean))


# ------------------------------------------------------------------------------------------------------
# NoiseModel with the real ops
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model_name, op_name",
    [("heteroscedastic_gaussian", "heteroscedastic_gaussian_noise"), ("poisson_gaussian", "poisson_gaussian_noise")],
)
def test_noise_model_real_op(model_name, op_name):
    model = NoiseModel("cycleisp_dnd", model_name)
    clean = torch.rand(2, 4, 16, 16)
    a = model(clean, generator=torch.Generator().manual_seed(0))
    b = model(clean, generator=torch.Generator().manual_seed(0))
    c = model(clean, seed=5, offset=1)
    d = model(clean, seed=5, offset=1)
    assert a.noisy.shape == clean.shape and a.variance.shape == clean.shape
    assert torch.equal(a.noisy, b.noisy) and torch.equal(c.noisy, d.noisy)
    assert not torch.equal(a.noisy, clean)
    assert a.noisy.min() >= 0 and a.noisy.max() <= 1
    expected = a.shot.view(-1, 1, 1, 1) * a.noisy + a.read.view(-1, 1, 1, 1)
    torch.testing.assert_close(a.variance, expected, rtol=1e-5, atol=1e-7)
