"""Benchmark, selftest and test cases of the physics-based RAW noise op (:mod:`cycleisp_fast.ops.physical_noise`).

Sizes are packed Bayer batches ``(N, 4, H, W)`` (default 16x4x512x512, the issue's benchmark shape). Parameters
per image are drawn as ELD samples its Sony A7S2 profile (log K uniform on [0.094, 6.01], the read and row
scales on its log-linear lines, Tukey shapes in its range, colour biases of +-1.5 DN), at an exposure ratio of
100 (``scale = 15583 / 100`` DN per unit). ``eager`` and ``compile`` time the model written the way LED and ELD
write it, one tensor op per component with ATen's generator (``torch.poisson``, ``torch.rand_like`` and
``pow`` for the Tukey quantile, ``torch.randn`` per row); the selftest checks every backend against the seeded
reference.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from cycleisp_fast.cases import Case, Size, Variant
from cycleisp_fast.ops.physical_noise import OP_NAME, physical_noise
from cycleisp_fast.reference.bayer import cfa_sites

SATURATION = 15583.0
"""ELD's white level minus black level (``16383 - 800``), DN."""
RATIO = 100.0
GRAD_TOLERANCES = {"rtol": 1e-5, "atol": 1e-4}
VARIANTS = (
    Variant(
        {
            "components": "ptrqc",
            "scale": SATURATION / RATIO,
            "bayer_pattern": "RGGB",
            "seed": 1234,
            "clip": (None, 1.0),
        },
        exact=False,
        grad_tolerances=GRAD_TOLERANCES,
    ),
    Variant(
        {"components": "pgrq", "scale": 20.0, "bayer_pattern": "GBRG", "seed": 5, "offset": 3},
        exact=False,
        grad_tolerances=GRAD_TOLERANCES,
    ),
    Variant({"components": "tr", "scale": 1.0, "seed": 9}, exact=False, grad_tolerances=GRAD_TOLERANCES),
)
"""Timed: ELD/LED's ``ptrqc`` at ratio 100, clipped at the white level. Float rounding differs between backends."""


def physical_noise_case(x, gain, read_scale, read_shape, row_scale, bias, *, backend=None, **kwargs) -> Tensor:
    """The op with its per-image parameters as positional tensors (the case's inputs)."""
    return physical_noise(
        x, gain, read_scale=read_scale, read_shape=read_shape, row_scale=row_scale, bias=bias, backend=backend, **kwargs
    )


def led_style_composite(
    x: Tensor,
    gain: Tensor,
    read_scale: Tensor,
    read_shape: Tensor,
    row_scale: Tensor,
    bias: Tensor,
    *,
    components: str,
    scale: float,
    bayer_pattern=None,
    seed: int = 0,
    offset: int = 0,
    clip=None,
) -> Tensor:
    """The same model in eager PyTorch as LED and ELD write it: one tensor op per component, ATen's generator
    (seed and offset ignored), the Tukey quantile by ``pow`` with ``lambda + 1e-8``, the row noise drawn per
    full-resolution row and gathered onto the packed planes."""
    n, c, h, _ = x.shape
    per_image = (n, 1, 1, 1)
    k = gain.view(per_image)
    signal = x * scale
    noisy = torch.poisson(signal / k) * k if "p" in components else signal
    if "g" in components:
        noisy = noisy + torch.randn_like(x) * read_scale.view(per_image)
    if "t" in components:
        lam = read_shape.view(per_image) + 1e-8
        u = torch.rand_like(x)
        noisy = noisy + (u**lam - (1 - u) ** lam) / lam * read_scale.view(per_image)
    if "r" in components:
        if bayer_pattern is None:
            rows = torch.randn(n, 1, h, 1, dtype=x.dtype, device=x.device)
        else:
            parity = torch.tensor([dy for dy, _ in cfa_sites(bayer_pattern)], device=x.device)
            rows = torch.randn(n, 2, h, 1, dtype=x.dtype, device=x.device)[:, parity]
        noisy = noisy + rows * row_scale.view(per_image)
    if "q" in components:
        noisy = noisy + (torch.rand_like(x) - 0.5)
    if "c" in components:
        noisy = noisy + bias.view(n, c, 1, 1)
    y = noisy / scale
    return y if clip is None else y.clamp(*clip)


def _inputs(size: Size, dtype: torch.dtype, device: torch.device, generator: torch.Generator):
    """The clean image uniform in [0, 1) and ELD-Sony-A7S2-like parameters per image (see the module docstring)."""
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    n = size[0]

    def uniform(low, high, shape=(n,)):
        return low + (high - low) * torch.rand(shape, dtype=acc, device=device, generator=generator)

    x = torch.rand(size, dtype=dtype, device=device, generator=generator)
    log_k = uniform(math.log(0.094), math.log(6.01))
    read_scale = torch.exp(0.462 * log_k + 0.566)
    row_scale = torch.exp(0.528 * log_k - 0.592)
    return x, log_k.exp(), read_scale, uniform(-0.143, 0.129), row_scale, uniform(-1.5, 1.5, (n, size[1]))


def _fits(size: Size) -> bool:
    return len(size) == 4 and size[1] == 4


CASES = (
    Case(
        name="physical_noise",
        kernel=OP_NAME,
        op=physical_noise_case,
        reference=functools.partial(physical_noise_case, backend="reference"),
        baseline=led_style_composite,
        make_inputs=_inputs,
        size_doc="N x 4 x H x W (packed Bayer planes; parameters per image)",
        fits=_fits,
        default_sizes=((16, 4, 512, 512),),
        quick_sizes=((2, 4, 32, 32),),
        # odd sizes, a tail tile, a row split across tiles
        selftest_sizes=((2, 4, 5, 7), (1, 4, 17, 33)),
        test_sizes=((2, 4, 3, 5),),
        variants=VARIANTS,
    ),
)
