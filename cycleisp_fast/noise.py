"""Seeded, batched noise-level samplers and a :class:`NoiseModel` that draws synthetic noisy training pairs.

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

:class:`NoiseModel` combines a level sampler with one of the seeded noise ops of :mod:`cycleisp_fast.ops`
(``heteroscedastic_gaussian_noise`` or ``poisson_gaussian_noise``) and is reproducible from a generator's
seed or from an explicit ``(seed, offset)``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Optional, Union

import torch

from cycleisp_fast.checks import check_choice as _check_choice
from cycleisp_fast.checks import check_count, check_dtype, check_generator, check_int
from cycleisp_fast.ops import noise as _ops_noise
from cycleisp_fast.seeds import Stream, keyed_generator

__all__ = [
    "NoiseLevels",
    "NoisySample",
    "NoiseModel",
    "NOISE_LEVEL_SAMPLERS",
    "NOISE_MODELS",
    "VARIANCE_SOURCES",
    "cycleisp_dnd",
    "cycleisp_sidd",
    "unprocessing",
    "cbdnet_uniform",
    "cbdnet_log_uniform",
    "sample_noise_levels",
]


class NoiseLevels(NamedTuple):
    """Sampled noise levels, both **variances** (``variance = shot * x + read``), shaped ``(n,)`` or
    ``(n, C)``. A NamedTuple, so ``shot, read = sampler(n)`` works."""

    shot: torch.Tensor
    read: torch.Tensor

    def to(self, *args, **kwargs) -> "NoiseLevels":
        """Both tensors through ``Tensor.to(*args, **kwargs)``."""
        return NoiseLevels(self.shot.to(*args, **kwargs), self.read.to(*args, **kwargs))


class NoisySample(NamedTuple):
    """What :class:`NoiseModel` returns: the noisy batch, the per-pixel variance map (None unless the model
    was built with ``return_variance=True``) and the levels used (on the batch's device)."""

    noisy: torch.Tensor
    variance: Optional[torch.Tensor]
    shot: torch.Tensor
    read: torch.Tensor


def _finish(shot: torch.Tensor, read: torch.Tensor, device, dtype) -> NoiseLevels:
    """float64 CPU values -> dtype -> device (the cast happens on the CPU, so the result does not depend on
    the device)."""
    return NoiseLevels(shot.to(dtype).to(device), read.to(dtype).to(device))


# --------------------------------------------------------------------------------------------------------
# Level samplers
# --------------------------------------------------------------------------------------------------------

def _log_linear(n, *, base: float, shot_range: tuple[float, float], slope: float, intercept: float,
                sigma: float, generator, device, dtype) -> NoiseLevels:
    """``log_b shot ~ U(log_b lo, log_b hi)``; ``log_b read = slope log_b shot + intercept + N(0, sigma)``.

    One uniform per image, then one standard normal per image (in that order), from ``generator``."""
    n = check_count(n, "n", "the number of images")
    generator = check_generator(generator)
    dtype = check_dtype(dtype)
    log = math.log10 if base == 10.0 else math.log
    lo, hi = log(shot_range[0]), log(shot_range[1])
    u = torch.rand(n, generator=generator, dtype=torch.float64, device="cpu")
    z = torch.randn(n, generator=generator, dtype=torch.float64, device="cpu")
    log_shot = lo + (hi - lo) * u
    log_read = slope * log_shot + intercept + sigma * z
    if base == 10.0:
        shot, read = torch.pow(10.0, log_shot), torch.pow(10.0, log_read)
    else:
        shot, read = torch.exp(log_shot), torch.exp(log_read)
    return _finish(shot, read, device, dtype)


def cycleisp_dnd(n: int, *, generator: Optional[torch.Generator] = None, device=None,
                 dtype: torch.dtype = torch.float32) -> NoiseLevels:
    """CycleISP's official ``random_noise_levels_dnd`` (``utils/noise_sampling.py``), batched: shapes ``(n,)``.

    ``log10 shot ~ U(log10 1e-4, log10 0.012)``, ``log10 read = 2.18 log10 shot + 1.20 + N(0, 0.26)``;
    both returned as variances (``variance = shot * x + read``).

    This is **log10**, not the natural log of Brooks et al. (:func:`unprocessing`): for the same shot the
    median read variance is ``10**1.20 / e**1.20 ≈ 4.77`` times Brooks', and the log-normal spread is wider
    (std 0.26 in log10 = 0.60 in natural log). Read variance along the line: ≈3.0e-8 at shot 1e-4,
    ≈1.0e-3 at shot 0.012.

    Draws ``n`` uniforms then ``n`` normals from ``generator`` on the CPU (float64), casts to ``dtype`` and
    moves to ``device``.
    """
    return _log_linear(n, base=10.0, shot_range=(1e-4, 0.012), slope=2.18, intercept=1.20, sigma=0.26,
                       generator=generator, device=device, dtype=dtype)


def cycleisp_sidd(n: int, *, generator: Optional[torch.Generator] = None, device=None,
                  dtype: torch.dtype = torch.float32) -> NoiseLevels:
    """CycleISP's official ``random_noise_levels_sidd``, batched: shapes ``(n,)``.

    ``log10 shot ~ U(log10 0.00068674, log10 0.02194856)``,
    ``log10 read = 1.85 log10 shot + 0.30 + N(0, 0.20)`` (log10, like :func:`cycleisp_dnd`); variances.
    Read variance along the line: ≈2.8e-6 … 1.7e-3. Upstream imports it but never calls it.
    """
    return _log_linear(n, base=10.0, shot_range=(0.00068674, 0.02194856), slope=1.85, intercept=0.30,
                       sigma=0.20, generator=generator, device=device, dtype=dtype)


def unprocessing(n: int, *, generator: Optional[torch.Generator] = None, device=None,
                 dtype: torch.dtype = torch.float32) -> NoiseLevels:
    """Brooks et al. 2019 (Unprocessing) ``random_noise_levels``, batched: shapes ``(n,)``.

    **Natural log**: ``ln shot ~ U(ln 1e-4, ln 0.012)``, ``ln read = 2.18 ln shot + 1.20 + N(0, 0.26)``;
    variances. Same shot distribution as :func:`cycleisp_dnd`, but a read variance whose median is
    ``e**1.20 / 10**1.20 ≈ 1 / 4.77`` of CycleISP's and whose log spread is narrower (0.26 in natural log
    against 0.60). Read variance along the line: ≈6.3e-9 at shot 1e-4, ≈2.2e-4 at shot 0.012.
    """
    return _log_linear(n, base=math.e, shot_range=(1e-4, 0.012), slope=2.18, intercept=1.20, sigma=0.26,
                       generator=generator, device=device, dtype=dtype)


def _sigma_shape(n, channels) -> tuple[int, ...]:
    n = check_count(n, "n", "the number of images")
    if channels is None:
        return (n,)
    return (n, check_count(channels, "channels", "levels per image, or None for one pair per image"))


def cbdnet_uniform(n: int, channels: Optional[int] = 3, *, generator: Optional[torch.Generator] = None,
                   device=None, dtype: torch.dtype = torch.float32) -> NoiseLevels:
    """CBDNet's PyTorch port (``utils/noise.py``): ``sigma_s ~ U[0, 0.16]`` and ``sigma_c ~ U[0, 0.06]``
    drawn independently per image and channel; returns ``shot = sigma_s**2``, ``read = sigma_c**2``,
    shaped ``(n, channels)`` (``(n,)`` when ``channels`` is None).

    CBDNet's noise is ``N(0, sigma_s**2 L + sigma_c**2)``: its sigmas are standard-deviation factors, so the
    variances the ops take are their squares. Draws all ``sigma_s`` uniforms, then all ``sigma_c`` ones.
    """
    shape = _sigma_shape(n, channels)
    generator = check_generator(generator)
    dtype = check_dtype(dtype)
    sigma_s = 0.16 * torch.rand(shape, generator=generator, dtype=torch.float64, device="cpu")
    sigma_c = 0.06 * torch.rand(shape, generator=generator, dtype=torch.float64, device="cpu")
    return _finish(sigma_s.square(), sigma_c.square(), device, dtype)


def cbdnet_log_uniform(n: int, channels: Optional[int] = None, *, generator: Optional[torch.Generator] = None,
                       device=None, dtype: torch.dtype = torch.float32) -> NoiseLevels:
    """CBDNet's official Python ISP (``SomeISP_operator_python``): ``sigma_s`` log-uniform on
    ``[1e-4, 0.16]`` and ``sigma_c`` log-uniform on ``[1e-4, 0.06]``; returns ``shot = sigma_s**2``,
    ``read = sigma_c**2``. One pair per image (shape ``(n,)``) by default, as the ISP draws them;
    ``channels=C`` draws them per image and channel (shape ``(n, C)``).

    CBDNet's noise is ``N(0, sigma_s**2 L + sigma_c**2)``, so the variances are the squared sigmas.
    Draws all ``sigma_s`` uniforms, then all ``sigma_c`` ones.
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
_PER_CHANNEL_PRESETS = frozenset({"cbdnet_uniform"})


def _lookup(name, argument: str) -> Callable[..., NoiseLevels]:
    choices = tuple(NOISE_LEVEL_SAMPLERS)
    if not isinstance(name, str):
        raise TypeError(f"{argument} must be a str, one of {choices}; got {type(name).__name__}")
    try:
        return NOISE_LEVEL_SAMPLERS[name]
    except KeyError:
        raise ValueError(f"{argument} must be one of {choices}, got {name!r}") from None


def sample_noise_levels(name: str, n: int, **kwargs) -> NoiseLevels:
    """``NOISE_LEVEL_SAMPLERS[name](n, **kwargs)``; an unknown ``name`` raises ``ValueError`` listing the
    choices. ``kwargs``: ``generator``, ``device``, ``dtype`` (and ``channels`` for the CBDNet presets)."""
    return _lookup(name, "name")(n, **kwargs)


# --------------------------------------------------------------------------------------------------------
# NoiseModel
# --------------------------------------------------------------------------------------------------------

NOISE_MODELS = tuple(_ops_noise.MODELS)
VARIANCE_SOURCES = _ops_noise.VARIANCE_SOURCES
_OP_NAMES = {"heteroscedastic_gaussian": "heteroscedastic_gaussian_noise",
             "poisson_gaussian": "poisson_gaussian_noise"}


def _as_level_tensor(value, name: str, n: int, channels: int, device, dtype) -> torch.Tensor:
    t = value if isinstance(value, torch.Tensor) else torch.as_tensor(value, dtype=dtype)
    if not t.is_floating_point():
        t = t.to(dtype)
    if t.dim() == 0:
        t = t.expand(n)
    ok = (t.dim() == 1 and t.shape[0] == n) or (t.dim() == 2 and t.shape[0] == n and t.shape[1] in (1, channels))
    if not ok:
        raise ValueError(
            f"the level sampler's {name} must have shape ({n},), ({n}, 1) or ({n}, {channels}) for a batch of "
            f"shape (N={n}, C={channels}, H, W); got {tuple(t.shape)}"
        )
    return t.detach().to(device=device).contiguous()


class NoiseModel:
    """Synthetic noise for training pairs: samples per-image noise levels, then applies a seeded noise op.

    Args:
        levels: a name from :data:`NOISE_LEVEL_SAMPLERS` (default ``"cycleisp_dnd"``) or a callable
            ``f(n, *, generator, device, dtype, **level_kwargs)`` returning :class:`NoiseLevels` (or any
            ``(shot, read)`` pair of variances shaped ``()``, ``(n,)``, ``(n, 1)`` or ``(n, C)``).
        model: ``"heteroscedastic_gaussian"`` (``x + N(0, shot x + read)``, Brooks / CycleISP) or
            ``"poisson_gaussian"`` (``shot Poisson(x / shot) + N(0, read)``).
        clip: None or ``(min, max)`` (either may be None) applied to the noisy output; default ``(0, 1)``.
        return_variance: also return the variance map ``shot * y + read`` (the denoiser's extra input).
        variance_from: ``"noisy"`` (CycleISP: from the clipped noisy image) or ``"clean"``.
        level_kwargs: extra keyword arguments for the level sampler (e.g. ``channels`` for the CBDNet
            presets). For ``"cbdnet_uniform"`` ``channels`` defaults to the batch's C.
        sampler: the noise op, with the signature of :func:`cycleisp_fast.ops.heteroscedastic_gaussian_noise`
            (``op(x, shot, read, *, seed, offset, generator, clip, return_variance, variance_from, backend)``
            returning ``y`` or ``(y, variance)``). Default: the op of ``model`` in :mod:`cycleisp_fast.ops`,
            looked up at call time. For tests and extensions.
        backend: passed to the op (None: the current backend).

    Calling ``model(clean, *, generator=None, seed=None, offset=0)`` on a ``(N, C, H, W)`` batch returns a
    :class:`NoisySample`. Levels are drawn on the CPU and moved to ``clean.device``; they are float32
    (float64 for float64 batches), so that tiny read variances survive half-precision batches.
    Reproducibility:

    * ``seed is None``: the levels come from ``generator`` (torch's default CPU generator when None), and the
      op draws its noise seed from the same generator afterwards; re-seeding the generator repeats the
      whole sample.
    * ``seed`` given: the noise is keyed by ``(seed, offset)``; the levels come from ``generator`` if given,
      else from a CPU generator derived from ``(seed, offset)``, so that ``(seed, offset)`` alone fix the
      sample (a different ``offset`` gives different levels and noise).
    """

    def __init__(self, levels: Union[str, Callable[..., Any]] = "cycleisp_dnd",
                 model: str = "heteroscedastic_gaussian", clip=(0.0, 1.0), return_variance: bool = True,
                 variance_from: str = "noisy", *, level_kwargs: Optional[dict] = None,
                 sampler: Optional[Callable[..., Any]] = None, backend: Optional[str] = None):
        if isinstance(levels, str):
            self._level_fn = _lookup(levels, "levels")
            self._levels_name: Optional[str] = levels
        elif callable(levels):
            self._level_fn = levels
            self._levels_name = None
        else:
            raise TypeError(
                f"levels must be one of {tuple(NOISE_LEVEL_SAMPLERS)} or a callable, got {type(levels).__name__}"
            )
        self.levels = levels
        self.model = _check_choice(model, "model", NOISE_MODELS)
        self.clip = None if clip is None else _ops_noise.check_clip(clip)
        if not isinstance(return_variance, bool):
            raise TypeError(f"return_variance must be a bool, got {type(return_variance).__name__}")
        self.return_variance = return_variance
        self.variance_from = _check_choice(variance_from, "variance_from", VARIANCE_SOURCES)
        if level_kwargs is not None and not isinstance(level_kwargs, dict):
            raise TypeError(f"level_kwargs must be a dict or None, got {type(level_kwargs).__name__}")
        reserved = {"n", "generator", "device", "dtype"} & set(level_kwargs or ())
        if reserved:
            raise ValueError(f"level_kwargs must not set {sorted(reserved)}: NoiseModel passes them")
        self.level_kwargs = dict(level_kwargs or {})
        if sampler is not None and not callable(sampler):
            raise TypeError(f"sampler must be callable or None, got {type(sampler).__name__}")
        self.sampler = sampler
        self.backend = backend

    def __repr__(self) -> str:
        levels = self._levels_name if self._levels_name is not None else getattr(self.levels, "__name__", self.levels)
        extra = f", level_kwargs={self.level_kwargs}" if self.level_kwargs else ""
        return (f"NoiseModel(levels={levels!r}, model={self.model!r}, clip={self.clip}, "
                f"return_variance={self.return_variance}, variance_from={self.variance_from!r}{extra})")

    def _op(self) -> Callable[..., Any]:
        if self.sampler is not None:
            return self.sampler
        from cycleisp_fast import ops

        return getattr(ops, _OP_NAMES[self.model])

    def sample_levels(self, n: int, channels: Optional[int] = None, *,
                      generator: Optional[torch.Generator] = None, device=None,
                      dtype: torch.dtype = torch.float32) -> NoiseLevels:
        """The levels for ``n`` images (``channels``: the batch's C, used to fill ``channels`` of per-channel
        presets), drawn with ``generator`` on the CPU and moved to ``device``."""
        kwargs = dict(self.level_kwargs)
        if channels is not None and self._levels_name in _PER_CHANNEL_PRESETS:
            kwargs.setdefault("channels", channels)
        result = self._level_fn(n, generator=generator, device=device, dtype=dtype, **kwargs)
        try:
            shot, read = result
        except (TypeError, ValueError):
            raise TypeError(
                f"the level sampler must return NoiseLevels or a (shot, read) pair, got {type(result).__name__}"
            ) from None
        return NoiseLevels(shot, read)

    def __call__(self, clean: torch.Tensor, *, generator: Optional[torch.Generator] = None,
                 seed: Optional[int] = None, offset: int = 0) -> NoisySample:
        if not isinstance(clean, torch.Tensor):
            raise TypeError(f"clean must be a torch.Tensor of shape (N, C, H, W), got {type(clean).__name__}")
        if clean.dim() != 4:
            raise ValueError(f"clean must have shape (N, C, H, W), got {tuple(clean.shape)}")
        if not clean.is_floating_point():
            raise TypeError(f"clean must have a floating dtype, got {clean.dtype}")
        n, channels = int(clean.shape[0]), int(clean.shape[1])
        if n == 0:
            raise ValueError("clean must hold at least one image (N > 0)")
        generator = check_generator(generator)
        offset = check_int(offset, "offset")
        if seed is not None:
            seed = check_int(seed, "seed")
        level_dtype = torch.float64 if clean.dtype == torch.float64 else torch.float32
        level_generator = generator
        if seed is not None and generator is None:
            level_generator = keyed_generator(seed, offset, Stream.LEVELS)
        with torch.no_grad():
            shot, read = self.sample_levels(n, channels, generator=level_generator, device=clean.device,
                                            dtype=level_dtype)
            shot = _as_level_tensor(shot, "shot", n, channels, clean.device, level_dtype)
            read = _as_level_tensor(read, "read", n, channels, clean.device, level_dtype)
        out = self._op()(clean, shot, read, seed=seed, offset=offset,
                         generator=generator if seed is None else None, clip=self.clip,
                         return_variance=self.return_variance, variance_from=self.variance_from,
                         backend=self.backend)
        if self.return_variance:
            noisy, variance = out
        else:
            noisy, variance = out, None
        return NoisySample(noisy, variance, shot, read)
