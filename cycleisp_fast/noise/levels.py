"""Seeded, batched noise-level samplers: the per-image variances a :class:`~cycleisp_fast.noise.NoiseModel` draws.

Every level sampler has the form ``f(n, *, generator=None, device=None, dtype=torch.float32) -> NoiseLevels``
and returns the **variances** ``shot`` and ``read`` of the heteroscedastic model
``variance = shot * x + read`` (Brooks et al.'s ``add_noise``, CycleISP's ``add_noise``), shaped ``(n,)``
(one pair per image) or ``(n, C)`` (one pair per image and channel). Draws are made on the CPU with
``generator`` (torch's default CPU generator when it is None), transformed in float64, cast to ``dtype``
and only then moved to ``device``: the values are bit-identical whatever the device.

Presets (:data:`NOISE_LEVEL_SAMPLERS`):

============================  =====================================================================
``cycleisp_dnd``              CycleISP's ``random_noise_levels_dnd`` (the one its generation scripts use):
                              ``log10 shot ~ U(log10 1e-4, log10 0.012)``,
                              ``log10 read = 2.18 log10 shot + 1.20 + N(0, 0.26)``.
``cycleisp_sidd``             CycleISP's ``random_noise_levels_sidd`` (imported upstream, never called):
                              ``log10 shot ~ U(log10 0.00068674, log10 0.02194856)``,
                              ``log10 read = 1.85 log10 shot + 0.30 + N(0, 0.20)``.
``unprocessing``              Brooks et al. 2019, ``random_noise_levels``, with the **natural** log:
                              ``ln shot ~ U(ln 1e-4, ln 0.012)``, ``ln read = 2.18 ln shot + 1.20 + N(0, 0.26)``.
``cbdnet_uniform``            CBDNet's PyTorch port: ``sigma_s ~ U[0, 0.16]``, ``sigma_c ~ U[0, 0.06]`` per
                              image and channel; ``shot = sigma_s**2``, ``read = sigma_c**2``.
``cbdnet_log_uniform``        CBDNet's official Python ISP: ``sigma_s`` log-uniform on ``[1e-4, 0.16]``,
                              ``sigma_c`` log-uniform on ``[1e-4, 0.06]``; squared likewise.
============================  =====================================================================

log10 versus natural log
    CycleISP's comment says it follows Brooks et al., but its code takes the same constants
    (2.18, 1.20, 0.26) in **log10**. The shot distribution is the same (log-uniform on the same interval
    for ``cycleisp_dnd`` and ``unprocessing``), but the read variance is not: for a given shot,
    ``read = 10**1.20 * shot**2.18 * 10**eps`` (CycleISP) versus ``read = e**1.20 * shot**2.18 * e**eps``
    (Brooks), so the median read variance of ``cycleisp_dnd`` is ``10**1.20 / e**1.20 ≈ 4.77`` times
    Brooks', and its spread is wider: a standard deviation of 0.26 in log10 is ``0.26 ln 10 ≈ 0.60`` in
    natural log. Along the line (without the normal term) CycleISP's read variance runs from about 3.0e-8
    (shot 1e-4) to 1.0e-3 (shot 0.012), Brooks' from 6.3e-9 to 2.2e-4.

CBDNet's noise is ``N(0, sigma_s**2 L + sigma_c**2)`` (L the irradiance), so its levels are stated as
standard-deviation factors; the samplers here return their squares, the variances the ops expect.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional

import torch

from cycleisp_fast.checks import check_count, check_dtype, check_generator


class NoiseLevels(NamedTuple):
    """Sampled noise levels, both **variances** (``variance = shot * x + read``), shaped ``(n,)`` or
    ``(n, C)``. A NamedTuple, so ``shot, read = sampler(n)`` works."""

    shot: torch.Tensor
    read: torch.Tensor

    def to(self, *args, **kwargs) -> "NoiseLevels":
        """Both tensors through ``Tensor.to(*args, **kwargs)``."""
        return NoiseLevels(self.shot.to(*args, **kwargs), self.read.to(*args, **kwargs))


def _finish(shot: torch.Tensor, read: torch.Tensor, device, dtype) -> NoiseLevels:
    """float64 CPU values -> dtype -> device (the cast happens on the CPU, so the result does not depend on
    the device)."""
    return NoiseLevels(shot.to(dtype).to(device), read.to(dtype).to(device))


# --------------------------------------------------------------------------------------------------------
# Level samplers
# --------------------------------------------------------------------------------------------------------


class LogLinearPreset(NamedTuple):
    """A log-linear noise-level preset: ``log_b shot ~ U(log_b lo, log_b hi)`` and
    ``log_b read = slope log_b shot + intercept + N(0, sigma)``, ``b`` = ``base``."""

    base: float
    shot_range: tuple[float, float]
    slope: float
    intercept: float
    sigma: float


CYCLEISP_DND = LogLinearPreset(10.0, (1e-4, 0.012), 2.18, 1.20, 0.26)
CYCLEISP_SIDD = LogLinearPreset(10.0, (0.00068674, 0.02194856), 1.85, 0.30, 0.20)
UNPROCESSING = LogLinearPreset(math.e, (1e-4, 0.012), 2.18, 1.20, 0.26)


def _log_linear(n, preset: LogLinearPreset, generator, device, dtype) -> NoiseLevels:
    """``log_b shot ~ U(log_b lo, log_b hi)``; ``log_b read = slope log_b shot + intercept + N(0, sigma)``.

    One uniform per image, then one standard normal per image (in that order), from ``generator``."""
    n = check_count(n, "n", "the number of images")
    generator = check_generator(generator)
    dtype = check_dtype(dtype)
    base, (low, high), slope, intercept, sigma = preset
    log = math.log10 if base == 10.0 else math.log
    lo, hi = log(low), log(high)
    u = torch.rand(n, generator=generator, dtype=torch.float64, device="cpu")
    z = torch.randn(n, generator=generator, dtype=torch.float64, device="cpu")
    log_shot = lo + (hi - lo) * u
    log_read = slope * log_shot + intercept + sigma * z
    if base == 10.0:
        shot, read = torch.pow(10.0, log_shot), torch.pow(10.0, log_read)
    else:
        shot, read = torch.exp(log_shot), torch.exp(log_read)
    return _finish(shot, read, device, dtype)


def cycleisp_dnd(
    n: int, *, generator: Optional[torch.Generator] = None, device=None, dtype: torch.dtype = torch.float32
) -> NoiseLevels:
    """CycleISP's official ``random_noise_levels_dnd`` (``utils/noise_sampling.py``), batched: shapes ``(n,)``.

    ``log10 shot ~ U(log10 1e-4, log10 0.012)``, ``log10 read = 2.18 log10 shot + 1.20 + N(0, 0.26)``;
    both returned as variances (``variance = shot * x + read``).

    This is **log10**, not the natural log of Brooks et al. (:func:`unprocessing`): for the same shot the
    median read variance is ``10**1.20 / e**1.20 ≈ 4.77`` times Brooks', and the log-normal spread is wider
    (std 0.26 in log10 = 0.60 in natural log). Read variance along the line: ≈3.0e-8 at shot 1e-4,
    ≈1.0e-3 at shot 0.012.

    Draws ``n`` uniforms then ``n`` normals from ``generator`` on the CPU (float64), casts to ``dtype`` and
    moves to ``device``.

    Example:
        >>> levels = cycleisp_dnd(4, generator=torch.Generator().manual_seed(0))
        >>> levels.shot.shape, bool(((levels.shot >= 1e-4) & (levels.shot <= 0.012)).all())
        (torch.Size([4]), True)
    """
    return _log_linear(n, CYCLEISP_DND, generator, device, dtype)


def cycleisp_sidd(
    n: int, *, generator: Optional[torch.Generator] = None, device=None, dtype: torch.dtype = torch.float32
) -> NoiseLevels:
    """CycleISP's official ``random_noise_levels_sidd``, batched: shapes ``(n,)``.

    ``log10 shot ~ U(log10 0.00068674, log10 0.02194856)``,
    ``log10 read = 1.85 log10 shot + 0.30 + N(0, 0.20)`` (log10, like :func:`cycleisp_dnd`); variances.
    Read variance along the line: ≈2.8e-6 … 1.7e-3. Upstream imports it but never calls it.

    Example:
        >>> shot, read = cycleisp_sidd(3, generator=torch.Generator().manual_seed(0))
        >>> bool(((shot >= 0.00068674) & (shot <= 0.02194856)).all()), read.dtype
        (True, torch.float32)
    """
    return _log_linear(n, CYCLEISP_SIDD, generator, device, dtype)


def unprocessing(
    n: int, *, generator: Optional[torch.Generator] = None, device=None, dtype: torch.dtype = torch.float32
) -> NoiseLevels:
    """Brooks et al. 2019 (Unprocessing) ``random_noise_levels``, batched: shapes ``(n,)``.

    **Natural log**: ``ln shot ~ U(ln 1e-4, ln 0.012)``, ``ln read = 2.18 ln shot + 1.20 + N(0, 0.26)``;
    variances. Same shot distribution as :func:`cycleisp_dnd`, but a read variance whose median is
    ``e**1.20 / 10**1.20 ≈ 1 / 4.77`` of CycleISP's and whose log spread is narrower (0.26 in natural log
    against 0.60). Read variance along the line: ≈6.3e-9 at shot 1e-4, ≈2.2e-4 at shot 0.012.

    Example:
        >>> a = unprocessing(2, generator=torch.Generator().manual_seed(7))
        >>> b = unprocessing(2, generator=torch.Generator().manual_seed(7))
        >>> torch.equal(a.shot, b.shot) and torch.equal(a.read, b.read)  # drawn on the CPU: reproducible
        True
    """
    return _log_linear(n, UNPROCESSING, generator, device, dtype)


def _sigma_shape(n, channels) -> tuple[int, ...]:
    n = check_count(n, "n", "the number of images")
    if channels is None:
        return (n,)
    return (n, check_count(channels, "channels", "levels per image, or None for one pair per image"))


def cbdnet_uniform(
    n: int,
    channels: Optional[int] = 3,
    *,
    generator: Optional[torch.Generator] = None,
    device=None,
    dtype: torch.dtype = torch.float32,
) -> NoiseLevels:
    """CBDNet's PyTorch port (``utils/noise.py``): ``sigma_s ~ U[0, 0.16]`` and ``sigma_c ~ U[0, 0.06]``
    drawn independently per image and channel; returns ``shot = sigma_s**2``, ``read = sigma_c**2``,
    shaped ``(n, channels)`` (``(n,)`` when ``channels`` is None).

    CBDNet's noise is ``N(0, sigma_s**2 L + sigma_c**2)``: its sigmas are standard-deviation factors, so the
    variances the ops take are their squares. Draws all ``sigma_s`` uniforms, then all ``sigma_c`` ones.

    Example:
        >>> cbdnet_uniform(2, generator=torch.Generator().manual_seed(0)).shot.shape  # per image and channel
        torch.Size([2, 3])
    """
    shape = _sigma_shape(n, channels)
    generator = check_generator(generator)
    dtype = check_dtype(dtype)
    sigma_s = 0.16 * torch.rand(shape, generator=generator, dtype=torch.float64, device="cpu")
    sigma_c = 0.06 * torch.rand(shape, generator=generator, dtype=torch.float64, device="cpu")
    return _finish(sigma_s.square(), sigma_c.square(), device, dtype)


def cbdnet_log_uniform(
    n: int,
    channels: Optional[int] = None,
    *,
    generator: Optional[torch.Generator] = None,
    device=None,
    dtype: torch.dtype = torch.float32,
) -> NoiseLevels:
    """CBDNet's official Python ISP (``SomeISP_operator_python``): ``sigma_s`` log-uniform on
    ``[1e-4, 0.16]`` and ``sigma_c`` log-uniform on ``[1e-4, 0.06]``; returns ``shot = sigma_s**2``,
    ``read = sigma_c**2``. One pair per image (shape ``(n,)``) by default, as the ISP draws them;
    ``channels=C`` draws them per image and channel (shape ``(n, C)``).

    CBDNet's noise is ``N(0, sigma_s**2 L + sigma_c**2)``, so the variances are the squared sigmas.
    Draws all ``sigma_s`` uniforms, then all ``sigma_c`` ones.

    Example:
        >>> cbdnet_log_uniform(2, generator=torch.Generator().manual_seed(0)).read.shape
        torch.Size([2])
    """
    shape = _sigma_shape(n, channels)
    generator = check_generator(generator)
    dtype = check_dtype(dtype)
    ln_lo = math.log(1e-4)
    u_s = torch.rand(shape, generator=generator, dtype=torch.float64, device="cpu")
    u_c = torch.rand(shape, generator=generator, dtype=torch.float64, device="cpu")
    sigma_s = torch.exp(ln_lo + (math.log(0.16) - ln_lo) * u_s)
    sigma_c = torch.exp(ln_lo + (math.log(0.06) - ln_lo) * u_c)
    return _finish(sigma_s.square(), sigma_c.square(), device, dtype)


NOISE_LEVEL_SAMPLERS: dict[str, Callable[..., NoiseLevels]] = {
    "cycleisp_dnd": cycleisp_dnd,
    "cycleisp_sidd": cycleisp_sidd,
    "unprocessing": unprocessing,
    "cbdnet_uniform": cbdnet_uniform,
    "cbdnet_log_uniform": cbdnet_log_uniform,
}
"""The level samplers by name."""

# Presets that draw per channel by default: NoiseModel sets their ``channels`` to the batch's C.
PER_CHANNEL_PRESETS = frozenset({"cbdnet_uniform"})


def level_sampler(name, argument: str) -> Callable[..., NoiseLevels]:
    """The preset ``NOISE_LEVEL_SAMPLERS[name]``; a wrong ``name`` raises naming ``argument`` and the choices."""
    choices = tuple(NOISE_LEVEL_SAMPLERS)
    if not isinstance(name, str):
        raise TypeError(f"{argument} must be a str, one of {choices}; got {type(name).__name__}")
    try:
        return NOISE_LEVEL_SAMPLERS[name]
    except KeyError:
        raise ValueError(f"{argument} must be one of {choices}, got {name!r}") from None


def sample_noise_levels(name: str, n: int, **kwargs) -> NoiseLevels:
    """``NOISE_LEVEL_SAMPLERS[name](n, **kwargs)``; an unknown ``name`` raises ``ValueError`` listing the
    choices. ``kwargs``: ``generator``, ``device``, ``dtype`` (and ``channels`` for the CBDNet presets).

    Example:
        >>> sample_noise_levels("cbdnet_uniform", 4, channels=1).shot.shape
        torch.Size([4, 1])
    """
    return level_sampler(name, "name")(n, **kwargs)
