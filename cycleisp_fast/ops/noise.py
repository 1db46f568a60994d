"""Seeded, fused noise synthesis: heteroscedastic Gaussian and Poisson-Gaussian, with per-image or
per-image-and-channel noise levels.

One registered operator, ``cycleisp_fast::noise_sample(x, shot, read, seed, offset, model, clip_min,
clip_max)`` (native C++/CUDA), and its Triton twin ``noise_sample_triton``, take the levels as one
``(shot, read)`` pair per plane. Every backend draws from the same counter-based Philox4x32-10 streams
(``csrc/ops/noise_math.h`` documents the layout): the same ``(seed, offset)`` gives the same noise whatever
the thread schedule, the native CPU and Triton backends agree with the reference to float32 rounding, and
their Poisson draws are the same integers.

Gradients: the Gaussian model is reparameterised (``y = x + sqrt(shot x + read) z``, with z recomputed from
the seed in the backward rather than saved); the Poisson-Gaussian model passes the gradient of its mean
``E[y] = x`` (identity for x, zero for shot and read). Elements that end at a clip bound get no gradient.
"""

from __future__ import annotations

import math
import numbers
from typing import Optional

import torch

from cycleisp_fast._dtypes import accumulation_dtype
from cycleisp_fast.checks import check_choice
from cycleisp_fast.ops.registration import FusedOp, Kernels
from cycleisp_fast.reference import noise as reference
from cycleisp_fast.seeds import MAX_SEED

OP_NAME = "noise_sample"
MODELS = {
    "heteroscedastic_gaussian": reference.HETEROSCEDASTIC_GAUSSIAN,
    "poisson_gaussian": reference.POISSON_GAUSSIAN,
}
VARIANCE_SOURCES = ("noisy", "clean")
MAX_OFFSET = 2**32


@torch.library.custom_op("cycleisp_fast::noise_sample_triton", mutates_args=())
def _noise_sample_triton(
    x: torch.Tensor,
    shot: torch.Tensor,
    read: torch.Tensor,
    seed: int,
    offset: int,
    model: int,
    clip_min: Optional[float],
    clip_max: Optional[float],
) -> torch.Tensor:
    from cycleisp_fast.triton_kernels import noise as kernels

    return kernels.noise_sample(
        x.contiguous(), shot.contiguous(), read.contiguous(), seed, offset, model, clip_min, clip_max
    )


def _fake_sample(x, shot, read, seed, offset, model, clip_min, clip_max):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _setup_context(ctx, inputs, output):
    x, shot, read, ctx.seed, ctx.offset, ctx.model, ctx.clip_min, ctx.clip_max = inputs
    clipped = ctx.clip_min is not None or ctx.clip_max is not None
    ctx.save_for_backward(x, shot, read, output if clipped else None)


def _unclipped(y: torch.Tensor, clip_min: Optional[float], clip_max: Optional[float]) -> Optional[torch.Tensor]:
    """Where y was not clipped: neither at nor beyond a bound (None when nothing is clipped). A NaN sample was
    not clipped, as in the reference (``where(y <= min, min, y)`` passes NaN and its gradient through)."""
    inside = None
    if clip_min is not None:
        inside = ~(y <= clip_min)
    if clip_max is not None:
        inside = ~(y >= clip_max) if inside is None else inside & ~(y >= clip_max)
    return inside


def _make_backward(kernels: Kernels):
    def backward(ctx, grad):
        x, shot, read, y = ctx.saved_tensors
        acc = shot.dtype
        planes = shot.numel()
        g = grad.to(acc)
        if y is not None:
            if y.dtype != acc:
                # A 16-bit output rounded onto a clip bound hides whether the sample was clipped: the mask
                # comes from the compute-dtype sample, drawn again from the seed (unclipped).
                y = kernels.forward(x.to(acc), shot, read, ctx.seed, ctx.offset, ctx.model, None, None)
            g = torch.where(_unclipped(y, ctx.clip_min, ctx.clip_max), g, 0.0)
        if ctx.model == reference.POISSON_GAUSSIAN:
            return g.to(x.dtype), None, None, None, None, None, None, None
        # d y / d variance = z / (2 sigma), z regenerated from the seed by the same op (nothing was saved).
        xs = x.to(acc)
        sensitivity = kernels.forward(
            xs, shot, read, ctx.seed, ctx.offset, reference.HETEROSCEDASTIC_SENSITIVITY, None, None
        )
        gs = (g * sensitivity).reshape(planes, -1)
        grad_x = torch.addcmul(g.reshape(planes, -1), shot[:, None], gs).reshape(g.shape)
        grad_shot = (gs * xs.reshape(planes, -1)).sum(dim=1) if ctx.needs_input_grad[1] else None
        grad_read = gs.sum(dim=1) if ctx.needs_input_grad[2] else None
        return grad_x.to(x.dtype), grad_shot, grad_read, None, None, None, None, None

    return backward


NOISE_SAMPLE = FusedOp(OP_NAME, fake=_fake_sample, setup_context=_setup_context, make_backward=_make_backward)


def _level_2d(value, name: str, x: torch.Tensor, acc: torch.dtype) -> torch.Tensor:
    """A noise level as an ``(A, B)`` tensor, A in {1, N}, B in {1, C}, in the compute dtype on x's device."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, torch.Tensor)):
        raise TypeError(
            f"{name} must be a float or a tensor of shape (), (N,), (N, 1) or (N, C); got {type(value).__name__}"
        )
    if not isinstance(value, torch.Tensor):
        value = float(value)
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite variance >= 0, got {value!r}")
        return torch.full((1, 1), value, dtype=acc, device=x.device)
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got {value.dtype}")
    if value.dim() == 0:
        value = value.reshape(1, 1)
    elif value.dim() <= 2:
        if x.dim() < 2:
            raise ValueError(f"{name} of shape {tuple(value.shape)} needs x of shape (N, C, ...), got {tuple(x.shape)}")
        if value.dim() == 1:
            value = value[:, None]
        if value.shape[0] not in (1, x.shape[0]) or value.shape[1] not in (1, x.shape[1]):
            raise ValueError(
                f"{name} must have shape (), (N,), (N, 1) or (N, C) = {tuple(x.shape[:2])}; got {tuple(value.shape)}"
            )
    else:
        raise ValueError(f"{name} must have shape (), (N,), (N, 1) or (N, C); got {tuple(value.shape)}")
    if value.device != x.device and value.numel() > 1:
        raise ValueError(f"{name} must be on x's device {x.device}, got {value.device}")
    value = value.to(dtype=acc)
    # Checked where the check is free: levels on a GPU are not (reading the result back would wait for the GPU
    # on every call, which made the op 4x slower than its kernel on an H100).
    if (
        value.device.type == "cpu"
        and not torch.compiler.is_compiling()
        and not bool(torch.isfinite(value).all() & (value >= 0).all())
    ):
        raise ValueError(f"{name} must hold finite variances >= 0, got {value.detach().flatten()[:8].tolist()}...")
    return value.to(device=x.device)


def _plane_levels(shot, read, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Shot and read as 1-D per-plane tensors (1, N or N*C values) in the compute dtype."""
    acc = accumulation_dtype(x.dtype)
    shot2, read2 = torch.broadcast_tensors(_level_2d(shot, "shot", x, acc), _level_2d(read, "read", x, acc))
    a, b = shot2.shape
    if b > 1:  # per channel: one pair per (n, c) plane
        shot2, read2 = shot2.expand(x.shape[0], b), read2.expand(x.shape[0], b)
    return shot2.reshape(-1).contiguous(), read2.reshape(-1).contiguous()


def _broadcast_to_x(levels: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-plane values (1, N or N*C) viewed to broadcast against x."""
    if levels.numel() == 1:
        return levels.reshape(())
    planes_shape = x.shape[:1] if levels.numel() == x.shape[0] else x.shape[:2]
    return levels.reshape(planes_shape + (1,) * (x.dim() - len(planes_shape)))


def _check_seed(seed, generator) -> int:
    if seed is None:
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        device = generator.device if generator is not None else "cpu"
        return int(torch.randint(0, MAX_SEED - 1, (), generator=generator, device=device))
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= int(seed) < MAX_SEED:
        raise ValueError(f"seed must be an int in [0, 2**63) or None (drawn from generator), got {seed!r}")
    return int(seed)


def _check_offset(offset) -> int:
    if isinstance(offset, bool) or not isinstance(offset, numbers.Integral) or not 0 <= int(offset) < MAX_OFFSET:
        raise ValueError(f"offset must be an int in [0, 2**32) (a stream index, e.g. one per image), got {offset!r}")
    return int(offset)


def check_clip(clip) -> tuple[Optional[float], Optional[float]]:
    """``clip`` as a ``(min, max)`` pair of floats or Nones; None gives ``(None, None)``."""
    if clip is None:
        return None, None
    if not isinstance(clip, (tuple, list)) or len(clip) != 2:
        raise TypeError(f"clip must be None or a (min, max) pair (either may be None), got {clip!r}")
    bounds = []
    for name, bound in zip(("min", "max"), clip):
        if bound is not None:
            if isinstance(bound, bool) or not isinstance(bound, numbers.Real) or not math.isfinite(bound):
                raise ValueError(f"clip {name} must be a finite number or None, got {bound!r}")
            bound = float(bound)
        bounds.append(bound)
    if bounds[0] is not None and bounds[1] is not None and bounds[0] > bounds[1]:
        raise ValueError(f"clip must have min <= max, got {tuple(bounds)}")
    return bounds[0], bounds[1]


def _sample(model: str, x, shot, read, seed, offset, generator, clip, return_variance, variance_from, backend):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor (the clean signal), got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"x must have a floating dtype, got {x.dtype}")
    check_choice(variance_from, "variance_from", VARIANCE_SOURCES)
    shot_planes, read_planes = _plane_levels(shot, read, x)
    seed = _check_seed(seed, generator)
    offset = _check_offset(offset)
    clip_min, clip_max = check_clip(clip)
    impl = NOISE_SAMPLE.resolve(x.device.type, backend)
    code = MODELS[model]
    if x.numel() == 0:  # e.g. an empty batch with per-image levels: no planes to hand to a kernel
        y = (x * 0).contiguous()
    elif impl == "reference":
        y = reference.noise_sample(x, shot_planes, read_planes, seed, offset, code, clip_min, clip_max)
    else:
        y = NOISE_SAMPLE.kernel(impl)(x, shot_planes, read_planes, seed, offset, code, clip_min, clip_max)
    if not return_variance:
        return y
    signal = (y if variance_from == "noisy" else x).to(shot_planes.dtype)
    variance = _broadcast_to_x(shot_planes, x) * signal + _broadcast_to_x(read_planes, x)
    return y, variance


_COMMON_DOC = """
    Args:
        x: the clean signal, any floating dtype, shape ``(N, C, ...)`` when a level is per image or channel
            (any shape for scalar levels). Computed in float32 (float64 for float64 x), returned in x's dtype
            and shape, contiguous.
        shot, read: the noise levels, **variances** (``variance = shot * x + read``): floats or tensors of
            shape ``()``, ``(N,)``, ``(N, 1)`` (per image) or ``(N, C)`` (per image and channel); finite and
            >= 0 (checked, ValueError otherwise). Differentiable.
        seed: int in ``[0, 2**63)``; None draws one from ``generator`` (torch's default CPU generator when
            None), so ``torch.manual_seed`` makes calls reproducible.
        offset: int in ``[0, 2**32)``, an independent stream for the same seed (e.g. one per image or worker).
        generator: only used to draw the seed when ``seed`` is None.
        clip: None or ``(min, max)`` (either may be None), applied to the noisy output.
        return_variance: also return the per-pixel variance map ``shot * y + read`` (``variance_from="noisy"``,
            as CycleISP's raw denoiser takes it) or ``shot * x + read`` (``"clean"``), in the compute dtype.
        backend: overrides the backend in force (see :mod:`cycleisp_fast.backend`).
    Returns:
        ``y``, or ``(y, variance)`` when ``return_variance``.
"""


def heteroscedastic_gaussian_noise(
    x: torch.Tensor,
    shot,
    read,
    *,
    seed: Optional[int] = None,
    offset: int = 0,
    generator: Optional[torch.Generator] = None,
    clip=None,
    return_variance: bool = False,
    variance_from: str = "noisy",
    backend: Optional[str] = None,
):
    """``y = x + n``, ``n ~ N(0, shot * x + read)`` per element: the noise model of CycleISP and of Brooks et
    al.'s Unprocessing. Where ``shot * x + read < 0`` (x < -read / shot) the variance is taken as 0.
    Gradients are pathwise: ``dy/dx = 1 + shot z / (2 sigma)``, ``dy/dshot = x z / (2 sigma)``,
    ``dy/dread = z / (2 sigma)`` (0 where sigma = 0).

    Args:
        x: ``(N, C, ...)`` floating clean signal (images: ``(N, C, H, W)``).
        shot: the signal-dependent variance per unit of x: a float, or a tensor of shape ``()``, ``(N,)``,
            ``(N, 1)`` or ``(N, C)``; finite and >= 0.
        read: the signal-independent variance, in the same forms as ``shot``.
        seed: the Philox key in [0, 2^63); None draws one from ``generator`` (or torch's default generator).
        offset: the stream in [0, 2^32): the same ``(seed, offset)`` gives the same noise on every backend;
            another offset an independent stream (give each image or worker its own).
        generator: where ``seed=None`` draws the seed from.
        clip: ``(min, max)`` (either may be None) applied to the output, or None.
        return_variance: also return the variance map ``shot * y + read``, as CycleISP's RAW denoiser takes it.
        variance_from: ``"noisy"`` (``shot * y + read``) or ``"clean"`` (``shot * x + read``).
        backend: overrides the backend in force (see :mod:`cycleisp_fast.backend`).

    Returns:
        The noisy tensor of x's dtype, or ``(noisy, variance)`` with ``return_variance=True`` (the variance in
        float32, float64 for float64 x).

    Shape:
        - x: ``(N, C, H, W)``; shot, read: ``()``, ``(N,)``, ``(N, 1)`` or ``(N, C)``
        - output (and variance): ``(N, C, H, W)``

    Example:
        >>> clean = torch.full((2, 4, 64, 64), 0.5)
        >>> noisy = heteroscedastic_gaussian_noise(clean, torch.tensor([0.01, 0.0]), 1e-4, seed=0)
        >>> torch.equal(noisy, heteroscedastic_gaussian_noise(clean, torch.tensor([0.01, 0.0]), 1e-4, seed=0))
        True
        >>> [round(float(v), 3) for v in (noisy - clean).var(dim=(1, 2, 3))]  # shot * 0.5 + read per image
        [0.005, 0.0]
    """
    return _sample(
        "heteroscedastic_gaussian",
        x,
        shot,
        read,
        seed,
        offset,
        generator,
        clip,
        return_variance,
        variance_from,
        backend,
    )


def poisson_gaussian_noise(
    x: torch.Tensor,
    shot,
    read,
    *,
    seed: Optional[int] = None,
    offset: int = 0,
    generator: Optional[torch.Generator] = None,
    clip=None,
    return_variance: bool = False,
    variance_from: str = "noisy",
    backend: Optional[str] = None,
):
    """``y = shot * Poisson(x / shot) + N(0, read)``: the exact Poisson-Gaussian model, mean ``x`` and variance
    ``shot * x + read``. The Poisson draws are exact (inversion below rate 10, Hormann's PTRS above, in
    float64) for every rate up to float64's integers. ``shot == 0`` is the limit ``x + N(0, read)``;
    ``x < 0`` has rate 0 (its Poisson part is 0, not an error); NaN x gives NaN. Gradients are those of the
    mean: identity for x, zero for shot and read. Arguments and returns as :func:`heteroscedastic_gaussian_noise`.

    Shape:
        - x: ``(N, C, H, W)``; shot, read: ``()``, ``(N,)``, ``(N, 1)`` or ``(N, C)``
        - output (and variance): ``(N, C, H, W)``

    Example:
        >>> clean = torch.full((1, 1, 256, 256), 0.25)
        >>> noisy = poisson_gaussian_noise(clean, 0.01, 0.0, seed=3)  # 25 photons per pixel on average
        >>> bool(torch.all((noisy / 0.01 - (noisy / 0.01).round()).abs() < 1e-3))  # whole photon counts
        True
        >>> round(float(noisy.mean()), 2), round(float(noisy.var()), 4)  # mean x, variance shot * x
        (0.25, 0.0025)
    """
    return _sample(
        "poisson_gaussian", x, shot, read, seed, offset, generator, clip, return_variance, variance_from, backend
    )


heteroscedastic_gaussian_noise.__doc__ += _COMMON_DOC
poisson_gaussian_noise.__doc__ += _COMMON_DOC
