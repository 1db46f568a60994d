"""A :class:`NoiseModel` that draws synthetic noisy training pairs: a level sampler of
:mod:`cycleisp_fast.noise.levels` combined with one of the seeded noise ops of :mod:`cycleisp_fast.ops`
(``heteroscedastic_gaussian_noise`` or ``poisson_gaussian_noise``), reproducible from a generator's seed or from
an explicit ``(seed, offset)``.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Union

import torch

from cycleisp_fast.checks import check_choice as _check_choice
from cycleisp_fast.checks import check_generator, check_int
from cycleisp_fast.noise.levels import NOISE_LEVEL_SAMPLERS, PER_CHANNEL_PRESETS, NoiseLevels, level_sampler
from cycleisp_fast.ops import noise as _ops_noise
from cycleisp_fast.seeds import Stream, keyed_generator


class NoisySample(NamedTuple):
    """What :class:`NoiseModel` returns: the noisy batch, the per-pixel variance map (None unless the model
    was built with ``return_variance=True``) and the levels used (on the batch's device)."""

    noisy: torch.Tensor
    variance: Optional[torch.Tensor]
    shot: torch.Tensor
    read: torch.Tensor


NOISE_MODELS = tuple(_ops_noise.MODELS)
PHYSICAL = "physical"
"""The model of camera profiles (:class:`~cycleisp_fast.noise.physical.PhysicalNoiseModel`)."""
VARIANCE_SOURCES = _ops_noise.VARIANCE_SOURCES
_OP_NAMES = {"heteroscedastic_gaussian": "heteroscedastic_gaussian_noise", "poisson_gaussian": "poisson_gaussian_noise"}


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
            (None: the first). Camera profiles as ``levels`` (``"eld:SonyA7S2"``, ``"virtual:N"``, a ``.json``
            path; model ``"physical"`` or None) build a :class:`~cycleisp_fast.noise.physical.PhysicalNoiseModel`
            instead (ELD / LED noise; its keyword arguments).
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

    Shape:
        - clean: ``(N, C, H, W)``
        - sample.noisy, sample.variance: ``(N, C, H, W)``; sample.shot, sample.read: the levels, ``(N,)`` or
          ``(N, C)``

    Example:
        >>> model = NoiseModel("cycleisp_dnd")
        >>> clean = torch.rand(4, 3, 32, 32)
        >>> sample = model(clean, seed=1, offset=0)
        >>> sample.noisy.shape, sample.shot.shape
        (torch.Size([4, 3, 32, 32]), torch.Size([4]))
        >>> torch.equal(model(clean, seed=1, offset=0).noisy, sample.noisy)  # (seed, offset) fix the sample
        True
        >>> bool(((sample.noisy >= 0) & (sample.noisy <= 1)).all())  # clipped to (0, 1)
        True
    """

    def __new__(cls, levels: Any = "cycleisp_dnd", model: Optional[str] = None, *args, **kwargs):
        """Camera profiles (``"eld:SonyA7S2"``, ``"virtual:N"``, a ``.json`` path) give a
        :class:`~cycleisp_fast.noise.physical.PhysicalNoiseModel` (model ``"physical"`` or None; keyword arguments
        as it takes them)."""
        from cycleisp_fast.noise.physical import PhysicalNoiseModel, is_profile_spec

        if is_profile_spec(levels) or model == PHYSICAL:
            if model not in (None, PHYSICAL):
                raise ValueError(f"noise profile {levels!r} takes model 'physical' (or None), got {model!r}")
            if not is_profile_spec(levels):
                raise ValueError(
                    f"model 'physical' needs camera profiles as levels ('eld:SonyA7S2', 'virtual:N' or a .json "
                    f"profile), got {levels!r}"
                )
            if args:
                raise TypeError("a physical NoiseModel takes its options as keyword arguments")
            return PhysicalNoiseModel(levels, **kwargs)
        return super().__new__(cls)

    def __init__(
        self,
        levels: Union[str, Callable[..., Any]] = "cycleisp_dnd",
        model: Optional[str] = None,
        clip=(0.0, 1.0),
        return_variance: bool = True,
        variance_from: str = "noisy",
        *,
        level_kwargs: Optional[dict] = None,
        sampler: Optional[Callable[..., Any]] = None,
        backend: Optional[str] = None,
    ):
        if isinstance(levels, str):
            self._level_fn = level_sampler(levels, "levels")
            self._levels_name: Optional[str] = levels
        elif callable(levels):
            self._level_fn = levels
            self._levels_name = None
        else:
            raise TypeError(
                f"levels must be one of {tuple(NOISE_LEVEL_SAMPLERS)} or a callable, got {type(levels).__name__}"
            )
        self.levels = levels
        self.model = _check_choice("heteroscedastic_gaussian" if model is None else model, "model", NOISE_MODELS)
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
        return (
            f"NoiseModel(levels={levels!r}, model={self.model!r}, clip={self.clip}, "
            f"return_variance={self.return_variance}, variance_from={self.variance_from!r}{extra})"
        )

    def _op(self) -> Callable[..., Any]:
        if self.sampler is not None:
            return self.sampler
        from cycleisp_fast import ops

        return getattr(ops, _OP_NAMES[self.model])

    def sample_levels(
        self,
        n: int,
        channels: Optional[int] = None,
        *,
        generator: Optional[torch.Generator] = None,
        device=None,
        dtype: torch.dtype = torch.float32,
    ) -> NoiseLevels:
        """The levels for ``n`` images (``channels``: the batch's C, used to fill ``channels`` of per-channel
        presets), drawn with ``generator`` on the CPU and moved to ``device``."""
        kwargs = dict(self.level_kwargs)
        if channels is not None and self._levels_name in PER_CHANNEL_PRESETS:
            kwargs.setdefault("channels", channels)
        result = self._level_fn(n, generator=generator, device=device, dtype=dtype, **kwargs)
        try:
            shot, read = result
        except (TypeError, ValueError):
            raise TypeError(
                f"the level sampler must return NoiseLevels or a (shot, read) pair, got {type(result).__name__}"
            ) from None
        return NoiseLevels(shot, read)

    def __call__(
        self,
        clean: torch.Tensor,
        *,
        generator: Optional[torch.Generator] = None,
        seed: Optional[int] = None,
        offset: int = 0,
    ) -> NoisySample:
        """The :class:`NoisySample` of the ``(N, C, H, W)`` floating batch ``clean``: its levels, noise and variance.

        ``generator``, ``seed`` and ``offset`` fix the draw as the class docstring says.
        """
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
            shot, read = self.sample_levels(
                n, channels, generator=level_generator, device=clean.device, dtype=level_dtype
            )
            shot = _as_level_tensor(shot, "shot", n, channels, clean.device, level_dtype)
            read = _as_level_tensor(read, "read", n, channels, clean.device, level_dtype)
        out = self._op()(
            clean,
            shot,
            read,
            seed=seed,
            offset=offset,
            generator=generator if seed is None else None,
            clip=self.clip,
            return_variance=self.return_variance,
            variance_from=self.variance_from,
            backend=self.backend,
        )
        if self.return_variance:
            noisy, variance = out
        else:
            noisy, variance = out, None
        return NoisySample(noisy, variance, shot, read)


def make_noise_model(
    levels: Any, model: Optional[str] = None, *, ratio=None, backend: Optional[str] = None
) -> Union[NoiseModel, Any]:
    """The noise of the synthesis pipelines (``synth``, training, shards), from the names their settings store:
    a level sampler with ``model`` (a :class:`NoiseModel`), or camera profiles with model ``"physical"`` or None
    (a :class:`~cycleisp_fast.noise.physical.PhysicalNoiseModel` at exposure ``ratio``, ELD's (100, 300) when
    None); both clip to [0, 1] (SID clips its packed RAW input the same way)."""
    from cycleisp_fast.noise.physical import DEFAULT_RATIO, is_profile_spec

    if is_profile_spec(levels) or model == PHYSICAL:
        if ratio is None:
            ratio = DEFAULT_RATIO
        return NoiseModel(levels, model, ratio=ratio, clip=(0.0, 1.0), backend=backend)
    if ratio is not None:
        raise ValueError(f"an exposure ratio is for camera-profile noise (model 'physical'), not levels {levels!r}")
    return NoiseModel(levels, model, backend=backend)
