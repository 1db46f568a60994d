"""Benchmark, selftest and test cases of the seeded noise ops (:mod:`cycleisp_fast.ops.noise`).

Sizes are the clean signal's shape ``(N, C, H, W)`` (default 16x4x256x256: a batch of packed RAW crops),
with one ``(shot, read)`` pair per image: shot log-uniform on CycleISP's DND range [1e-4, 1.2e-2] (Poisson
rates x / shot up to 1e4, all three Poisson regimes) and read on its log10 line. ``eager`` and ``compile``
time the composites users write with ATen's generator (``torch.randn_like``, ``torch.poisson``), which are
not seeded like the ops; the selftest checks every backend against the seeded reference.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from cycleisp_fast import ops
from cycleisp_fast.cases import Case, Size, Variant
from cycleisp_fast.ops.noise import OP_NAME

SHOT_RANGE = (1e-4, 1.2e-2)
GRAD_TOLERANCES = {"rtol": 1e-5, "atol": 1e-4}
"""The gradients of shot and read are per-image sums of terms ~ z / sigma (up to ~1e3 at small levels) that
cancel; the backends' standard normals differ in the last float32 bit, so the sums differ by ~1e-7 of the
sum of |terms|."""
VARIANTS = (
    Variant({"seed": 1234, "clip": (0.0, 1.0)}, exact=False, grad_tolerances=GRAD_TOLERANCES),
    Variant({"seed": 5, "offset": 3}, exact=False, grad_tolerances=GRAD_TOLERANCES),
)
"""Timed: clipped to [0, 1] as CycleISP's generation does. Float rounding differs between backends."""


def _levels(shot: Tensor, read: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-image levels ``(N,)`` viewed as ``(N, 1, 1, 1)`` against x."""
    view = (-1,) + (1,) * (x.dim() - 1)
    return shot.view(view), read.view(view)


def _clip(y: Tensor, clip) -> Tensor:
    return y if clip is None else y.clamp(*clip)


def heteroscedastic_gaussian_composite(
    x: Tensor, shot: Tensor, read: Tensor, seed: int = 0, offset: int = 0, clip=None
) -> Tensor:
    """CycleISP's ``add_noise`` in eager PyTorch: ``x + randn * sqrt(shot x + read)`` (ATen's generator; seed
    and offset are ignored), then the clamp."""
    shot, read = _levels(shot, read, x)
    return _clip(x + torch.randn_like(x) * torch.sqrt(shot * x + read), clip)


def poisson_gaussian_composite(
    x: Tensor, shot: Tensor, read: Tensor, seed: int = 0, offset: int = 0, clip=None
) -> Tensor:
    """``shot * torch.poisson(x / shot) + randn * sqrt(read)`` in eager PyTorch, then the clamp."""
    shot, read = _levels(shot, read, x)
    return _clip(shot * torch.poisson(x / shot) + torch.randn_like(x) * torch.sqrt(read), clip)


def _random_signal_and_levels(size: Size, dtype: torch.dtype, device: torch.device, generator: torch.Generator):
    """X uniform in [0, 1) of ``size``; shot ``(N,)`` log-uniform on :data:`SHOT_RANGE`; read ``(N,)`` on
    CycleISP's DND line ``log10 read = 2.18 log10 shot + 1.20``. Levels in the compute dtype."""
    levels_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    x = torch.rand(size, dtype=dtype, device=device, generator=generator)
    low, high = (torch.tensor(bound).log10().item() for bound in SHOT_RANGE)
    log_shot = low + (high - low) * torch.rand(size[0], dtype=levels_dtype, device=device, generator=generator)
    return x, 10.0**log_shot, 10.0 ** (2.18 * log_shot + 1.20)


def _fits(size: Size) -> bool:
    """At least ``(N, C)``."""
    return len(size) >= 2


_COMMON = dict(
    kernel=OP_NAME,
    make_inputs=_random_signal_and_levels,
    size_doc="N x C x ... (x; shot and read per image, N values)",
    fits=_fits,
    default_sizes=((16, 4, 256, 256),),
    quick_sizes=((2, 4, 32, 32),),
    # odd sizes, a tail tile (numel not a multiple of 1024), one element per plane
    selftest_sizes=((2, 3, 5, 7), (1, 4, 33, 65), (3, 1, 1, 1)),
    test_sizes=((2, 3, 5, 7),),
    variants=VARIANTS,
)

CASES = (
    Case(
        name="heteroscedastic_gaussian_noise",
        op=ops.heteroscedastic_gaussian_noise,
        reference=functools.partial(ops.heteroscedastic_gaussian_noise, backend="reference"),
        baseline=heteroscedastic_gaussian_composite,
        **_COMMON,
    ),
    Case(
        name="poisson_gaussian_noise",
        op=ops.poisson_gaussian_noise,
        reference=functools.partial(ops.poisson_gaussian_noise, backend="reference"),
        baseline=poisson_gaussian_composite,
        **_COMMON,
    ),
)
