"""Benchmark, selftest and test cases of CycleISP's dual attention: the fused DAB tail alone
(:func:`cycleisp_fast.ops.dual_attention`) and a whole DAB (:class:`cycleisp_fast.nn.DAB`: body convs + tail).

Sizes are the features' shape ``(N, C, H, W)`` (default 4x64x128x128, the denoisers' width; reduction 16, as
the denoisers). The weights are inputs too, so forward+backward times (and the selftest checks) every weight
gradient. ``eager`` and ``compile`` time the official computation in the input dtype; the selftest compares
with it computed in float32 (float64 for float64), the precision the fused backends compute in.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cycleisp_fast import ops
from cycleisp_fast._dtypes import accumulation_dtype
from cycleisp_fast.backend import BACKENDS
from cycleisp_fast.cases import Case, Size, Variant
from cycleisp_fast.nn.dual_attention import DAB, default_conv
from cycleisp_fast.ops.dual_attention import OP_NAME
from cycleisp_fast.reference import dual_attention as reference

REDUCTION = 16
GRAD_TOLERANCES = {"rtol": 1e-4, "atol": 1e-4}
"""The weight gradients are sums over N * H * W pixels of C-term products, in another order than the
reference's."""
VARIANTS = (Variant({}, exact=False, grad_tolerances=GRAD_TOLERANCES),)


def _upcast(fn):
    """``fn`` run in the accumulation dtype of the first input, its output cast back: the selftest's truth."""

    def in_accumulation_dtype(*inputs: Tensor) -> Tensor:
        dtype = accumulation_dtype(inputs[0].dtype)
        return fn(*(t.to(dtype) for t in inputs)).to(inputs[0].dtype)

    return in_accumulation_dtype


def _fits_tail(size: Size) -> bool:
    """A 4-D shape with at least :data:`REDUCTION` channels."""
    return len(size) == 4 and size[1] >= REDUCTION


def _weights(shapes, dtype: torch.dtype, device: torch.device, generator: torch.Generator) -> tuple[Tensor, ...]:
    """Normal weights of std ``1/sqrt(fan_in)`` and biases of std 0.1, so that neither attention saturates."""
    return tuple(
        torch.randn(shape, dtype=dtype, device=device, generator=generator)
        * (torch.Size(shape)[1:].numel() ** -0.5 if len(shape) > 1 else 0.1)
        for shape in shapes
    )


def _tail_shapes(channels: int) -> tuple[tuple[int, ...], ...]:
    hidden = channels // REDUCTION
    return (
        (1, 2, 3, 3),
        (hidden, channels, 1, 1),
        (hidden,),
        (channels, hidden, 1, 1),
        (channels,),
        (channels, 2 * channels, 1, 1),
        (channels,),
    )


def _random_tail_inputs(size: Size, dtype: torch.dtype, device: torch.device, generator: torch.Generator):
    """Res and x standard normal of ``size``, and the tail's seven weights."""
    features = tuple(torch.randn(size, dtype=dtype, device=device, generator=generator) for _ in range(2))
    return features + _weights(_tail_shapes(size[1]), dtype, device, generator)


def tail_flops(inputs, output: Tensor, mode: str) -> int:
    """The 1x1 projection's FLOPs (2C x C multiply-adds per pixel, 2 FLOPs each); the backward doubles them
    (input and weight gradients). The pools, the SA conv and the CA MLP add less than 1 %."""
    batch, channels, height, width = inputs[0].shape
    forward = 2 * 2 * channels * channels * batch * height * width
    return forward if mode == "forward" else 3 * forward


BLOCK_CHANNELS = 64
with torch.device("meta"):
    _BLOCKS = {
        name: DAB(default_conv, BLOCK_CHANNELS, 3, REDUCTION, act=nn.PReLU(BLOCK_CHANNELS), backend=name)
        for name in (None, *BACKENDS)
    }
"""Templates of the block per ``backend`` argument, holding no data: the parameters come in as inputs."""
_PARAMETER_NAMES = tuple(name for name, _ in _BLOCKS["reference"].named_parameters())


def dab(x: Tensor, *parameters: Tensor, backend: str | None = None) -> Tensor:
    """``DAB(default_conv, 64, 3, 16, act=nn.PReLU(64))(x)`` with its parameters given as tensors, in
    ``named_parameters()`` order. x: ``(N, 64, H, W)`` -> ``(N, 64, H, W)``."""
    return torch.func.functional_call(_BLOCKS[backend], dict(zip(_PARAMETER_NAMES, parameters)), (x,))


def _reference_dab(x: Tensor, *parameters: Tensor) -> Tensor:
    """:func:`dab` on the plain-PyTorch reference backend (the official computation)."""
    return dab(x, *parameters, backend="reference")


def _fits_block(size: Size) -> bool:
    return len(size) == 4 and size[1] == BLOCK_CHANNELS


def _random_dab_inputs(size: Size, dtype: torch.dtype, device: torch.device, generator: torch.Generator):
    """X standard normal of ``size`` and the block's parameters (see :func:`_weights`)."""
    x = torch.randn(size, dtype=dtype, device=device, generator=generator)
    return (x,) + _weights([p.shape for p in _BLOCKS["reference"].parameters()], dtype, device, generator)


def dab_flops(inputs, output: Tensor, mode: str) -> int:
    """The two 3x3 convs and the 1x1 projection; the backward doubles them."""
    batch, channels, height, width = inputs[0].shape
    forward = 2 * (2 * 9 * channels * channels + 2 * channels * channels) * batch * height * width
    return forward if mode == "forward" else 3 * forward


CASES = (
    Case(
        name="dual_attention",
        kernel=OP_NAME,
        op=ops.dual_attention,
        reference=_upcast(reference.dual_attention),
        baseline=reference.dual_attention,
        make_inputs=_random_tail_inputs,
        size_doc=f"N x C x H x W (res and x; C >= {REDUCTION}, reduction {REDUCTION})",
        fits=_fits_tail,
        default_sizes=((4, 64, 128, 128),),
        quick_sizes=((1, 64, 16, 16),),
        # the denoisers' and the ISP's widths, odd sizes, one pixel, and several CPU tiles
        selftest_sizes=((2, 64, 5, 7), (1, 96, 3, 4), (2, 64, 1, 1), (1, 64, 37, 29)),
        test_sizes=((2, 64, 5, 7), (1, 96, 3, 5), (3, 64, 1, 1), (1, 96, 7, 3)),
        variants=VARIANTS,
        flops=tail_flops,
    ),
    Case(
        name="dab",
        kernel=OP_NAME,
        op=dab,
        reference=_upcast(_reference_dab),
        baseline=_reference_dab,
        make_inputs=_random_dab_inputs,
        size_doc=f"N x {BLOCK_CHANNELS} x H x W",
        fits=_fits_block,
        default_sizes=((4, BLOCK_CHANNELS, 128, 128),),
        quick_sizes=((1, BLOCK_CHANNELS, 16, 16),),
        selftest_sizes=((1, BLOCK_CHANNELS, 6, 9),),
        variants=VARIANTS,
        # float32 only, as ain_resblock: in half precision the convs amplify 1-ulp differences of the tail
        dtype=torch.float32,
        flops=dab_flops,
    ),
)
