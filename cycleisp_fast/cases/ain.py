"""Benchmark, selftest and test cases of adaptive instance normalization (:mod:`cycleisp_fast.ops.ain`), alone and
inside a whole AIN-ResBlock (:class:`cycleisp_fast.nn.AINResBlock`).

Sizes are the features' shape ``(N, C, H, W)``: x, gamma and beta for ``adaptive_instance_norm`` (default
4x64x128x128); x for ``ain_resblock`` (C = 64, AINDNet's first scale, with a 3-channel noise map of x's
resolution; default 1x64x128x128, float32).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from cycleisp_fast import ops
from cycleisp_fast.backend import BACKENDS
from cycleisp_fast.cases import Case, Size, Variant
from cycleisp_fast.nn.ain import LEAKY_SLOPE, AINResBlock
from cycleisp_fast.ops.ain import OP_NAME
from cycleisp_fast.reference import ain as reference

MODULATION_STD = 0.1
"""The std of the random gamma and beta: small, like those of a trained conditioning network."""
VARIANTS = (Variant({"negative_slope": LEAKY_SLOPE}, exact=False), Variant({}, exact=False))
"""With AINDNet's fused LeakyReLU (timed) and without; float rounding differs between backends."""


def instance_norm_composite(x: Tensor, gamma: Tensor, beta: Tensor, negative_slope: float | None = None) -> Tensor:
    """The eager composite a user writes, timed as ``eager`` / ``compile``: ``F.instance_norm(x) * (1 + gamma)
    + beta``, then ``F.leaky_relu``. x, gamma, beta ``(N, C, H, W)`` with H * W > 1."""
    out = F.instance_norm(x) * (1 + gamma) + beta
    return out if negative_slope is None else F.leaky_relu(out, negative_slope)


def _fits_features(size: Size) -> bool:
    """A 4-D shape ``(N, C, H, W)``."""
    return len(size) == 4


def _random_modulation(size: Size, dtype: torch.dtype, device: torch.device, generator: torch.Generator):
    """X standard normal; gamma and beta normal of std :data:`MODULATION_STD`; all of shape ``size``."""
    x = torch.randn(size, dtype=dtype, device=device, generator=generator)
    gamma, beta = (
        MODULATION_STD * torch.randn(size, dtype=dtype, device=device, generator=generator) for _ in range(2)
    )
    return x, gamma, beta


BLOCK_CHANNELS = 64
NOISE_CHANNELS = 3
with torch.device("meta"):
    _BLOCKS = {name: AINResBlock(BLOCK_CHANNELS, NOISE_CHANNELS, backend=name) for name in (None, *BACKENDS)}
"""Templates of the block per ``backend`` argument, holding no data: the parameters come in as inputs."""
_PARAMETER_NAMES = tuple(name for name, _ in _BLOCKS["reference"].named_parameters())


def ain_resblock(x: Tensor, noise_map: Tensor, *parameters: Tensor, backend: str | None = None) -> Tensor:
    """``AINResBlock(64)(x, noise_map)`` with its parameters given as tensors, in ``named_parameters()`` order,
    so that the benchmarks time (and the selftest checks) the gradients of the weights too.

    x: ``(N, 64, H, W)``; noise_map: ``(N, 3, H, W)``; returns ``(N, 64, H, W)``.
    """
    return torch.func.functional_call(_BLOCKS[backend], dict(zip(_PARAMETER_NAMES, parameters)), (x, noise_map))


def _reference_resblock(x: Tensor, noise_map: Tensor, *parameters: Tensor) -> Tensor:
    """:func:`ain_resblock` on the plain-PyTorch reference backend."""
    return ain_resblock(x, noise_map, *parameters, backend="reference")


def _fits_block(size: Size) -> bool:
    """A 4-D shape of :data:`BLOCK_CHANNELS` channels."""
    return _fits_features(size) and size[1] == BLOCK_CHANNELS


def _random_resblock_inputs(size: Size, dtype: torch.dtype, device: torch.device, generator: torch.Generator):
    """X standard normal ``size``, a noise map uniform in [0, 1) ``(N, 3, H, W)``, and the block's parameters:
    weights normal of std ``1/sqrt(fan_in)`` and biases of std 0.1, so gamma and beta are far from 0."""
    batch, _, height, width = size
    x = torch.randn(size, dtype=dtype, device=device, generator=generator)
    noise_map = torch.rand((batch, NOISE_CHANNELS, height, width), dtype=dtype, device=device, generator=generator)
    parameters = tuple(
        torch.randn(p.shape, dtype=dtype, device=device, generator=generator)
        * (p[0].numel() ** -0.5 if p.dim() > 1 else 0.1)
        for p in _BLOCKS["reference"].parameters()
    )
    return (x, noise_map, *parameters)


def resblock_flops(inputs, output: Tensor, mode: str) -> int:
    """The convolutions' FLOPs (2 per multiply-add); the backward doubles them (input and weight gradients)."""
    x, noise_map, *_ = inputs
    batch, channels, height, width = x.shape
    hidden = _BLOCKS["reference"].ain_1.conv1.out_channels
    ain_macs = noise_map.shape[1] * 25 * hidden + 2 * 9 * hidden * channels
    macs_per_pixel = 2 * ain_macs + 2 * 9 * channels * channels
    forward = 2 * macs_per_pixel * batch * height * width
    return forward if mode == "forward" else 3 * forward


CASES = (
    Case(
        name="adaptive_instance_norm",
        kernel=OP_NAME,
        op=ops.adaptive_instance_norm,
        reference=reference.adaptive_instance_norm,
        baseline=instance_norm_composite,
        make_inputs=_random_modulation,
        size_doc="N x C x H x W (x, gamma, beta)",
        fits=_fits_features,
        default_sizes=((4, 64, 128, 128),),
        quick_sizes=((1, 8, 16, 16),),
        # a 1 x 1 plane (variance 0: gives beta), a row, odd sizes, and 130 x 130 > 16384: several chunks
        selftest_sizes=((2, 3, 5, 7), (2, 3, 1, 1), (1, 4, 1, 33), (1, 2, 130, 130)),
        test_sizes=((2, 3, 5, 7), (1, 4, 8, 8), (3, 1, 1, 9)),
        variants=VARIANTS,
    ),
    Case(
        name="ain_resblock",
        kernel=OP_NAME,
        op=ain_resblock,
        reference=_reference_resblock,
        make_inputs=_random_resblock_inputs,
        size_doc=f"N x {BLOCK_CHANNELS} x H x W (x; noise map N x {NOISE_CHANNELS} x H x W)",
        fits=_fits_block,
        default_sizes=((1, BLOCK_CHANNELS, 128, 128),),
        quick_sizes=((1, BLOCK_CHANNELS, 16, 16),),
        selftest_sizes=((1, BLOCK_CHANNELS, 6, 9),),
        # the weight gradients are sums over N H W terms, accumulated in another order by the GPU's convolution
        # backward than by the CPU's, where the reference runs: 3e-5 seen on an H100
        variants=(Variant({}, exact=False, grad_tolerances={"rtol": 1e-5, "atol": 1e-4}),),
        # float32 only: in half precision the convs turn the backends' 1-ulp differences of the AIN outputs
        # into errors beyond assert_close's half tolerances (mixed precision runs convs under autocast instead)
        dtype=torch.float32,
        flops=resblock_flops,
    ),
)
