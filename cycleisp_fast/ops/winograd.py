"""3x3 convolution by Winograd's minimal filtering F(4x4, 3x3) on the CPU: the float32 lever of
:func:`cycleisp_fast.optimize` for inference.

A 3x3, stride-1, padding-1 convolution costs 9 multiplies per output and input channel; F(4x4, 3x3) computes a
4x4 block of outputs from a 6x6 input tile with 36, i.e. 2.25 per output: the input tile and the kernel go to a
transformed domain (``V = B^T d B``, ``U = G g G^T``), where the convolution is 36 matrix products over the
channels (``M = V @ U``, run by torch's BLAS), and the outputs come back by ``Y = A^T M A``. The native kernel
(``cycleisp_fast::winograd_conv3x3``, ``csrc/ops/cpu/winograd_kernel.cpp``) transforms the image in bands of tiles
that stay in a core's cache. On this project's 2-core machines it runs 64-channel 256x256 convolutions 2.2x faster
than oneDNN's direct convolution in channels_last (README, "Model speed").

**Accuracy.** The interpolation points are 0, 1, -1, 1/2, -2 and infinity; their ``B`` and ``A`` have exact binary
coefficients, and ``U`` is computed in float64 and rounded once. The float32 result differs from the exact
convolution by 3-8x what direct float32 convolution does (relative RMS error 5e-7 to 1.5e-6 against 1.5e-7,
growing with the channels; ``python scripts/bench_winograd.py`` prints both, ``tests/ops/test_winograd.py`` holds
it to a bound): float rounding, but not the same rounding. A NaN or infinity in the input spreads over the 4x4
output tiles whose 6x6 input tile holds it (as in any Winograd convolution), not only over the 3x3 neighbourhood
of direct convolution.

:func:`winograd_conv3x3` takes the transformed weight as a constant (inference); :func:`conv3x3` is the
differentiable convolution for training: its forward, its input gradient (a convolution by the flipped
kernels) and its weight and bias gradients (:func:`weight_grad`, the transposed algorithm) all by Winograd.
:class:`cycleisp_fast.nn.WinogradConv2d` runs them where they apply and falls back to ``F.conv2d`` where they do
not (other devices or dtypes).

Example:
    >>> import torch.nn.functional as F
    >>> x, w, b = torch.randn(1, 16, 9, 11), torch.randn(32, 16, 3, 3), torch.randn(32)
    >>> y = winograd_conv3x3(x, transform_weight(w), b)
    >>> y.shape, torch.allclose(y, F.conv2d(x, w, b, padding=1), rtol=1e-4, atol=1e-4)
    (torch.Size([1, 32, 9, 11]), True)
"""

from __future__ import annotations

from fractions import Fraction
from typing import Optional

import torch

from cycleisp_fast import _extension
from cycleisp_fast.checks import check_int, check_tensor

OP_NAME = "winograd_conv3x3"
WEIGHT_GRAD_OP_NAME = "winograd_conv3x3_weight_grad"
TRANSFORM_OP_NAME = "winograd_transform_weight"
# No CUDA kernels: has_native_kernels("cuda") must not ask for them.
assert {OP_NAME, WEIGHT_GRAD_OP_NAME, TRANSFORM_OP_NAME} <= _extension.CPU_ONLY_OPS
POINTS = 36
"""Products per tile: (4 + 3 - 1) ** 2."""


def _kernel_transform() -> torch.Tensor:
    """G (6 x 3) for the points 0, 1, -1, 1/2, -2, infinity, scaled to match the kernel's B^T (whose rows are
    scaled to small integers: exact in float32)."""
    third, fifteenth = Fraction(1, 6), Fraction(1, 15)
    rows = [
        [Fraction(1, 2), 0, 0],
        [third, third, third],
        [third, -third, third],
        [16 * fifteenth, 8 * fifteenth, 4 * fifteenth],
        [Fraction(1, 30), -fifteenth, 2 * fifteenth],
        [0, 0, Fraction(1, 2)],
    ]
    return torch.tensor([[float(v) for v in row] for row in rows], dtype=torch.float64)


KERNEL_TRANSFORM = _kernel_transform()
_KERNEL_TRANSFORM_2D = torch.kron(KERNEL_TRANSFORM, KERNEL_TRANSFORM)
"""(36, 9): row 6a + b, column 3i + j holds G[a, i] G[b, j], so that U = G g G^T is one matrix product."""


def transform_weight(weight: torch.Tensor, *, flip: bool = False, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The transformed weight ``U = G g G^T`` of 3x3 kernels, in the layout the kernel reads.

    Args:
        weight: (K, C, 3, 3), a ``Conv2d``'s weight (any floating dtype, any device).
        flip: transform the kernels of the input gradient instead, ``g`` flipped in space with its channels
            swapped (``weight.flip(2, 3).transpose(0, 1)``), read in place.
        out: a contiguous float32 tensor of the result's shape on the CPU to write into (a module keeps one, so
            that training does not allocate it anew at every step); float32 CPU weights only.

    Returns:
        (36, C, K) float32 (``flip``: (36, K, C)), contiguous, on ``weight``'s device: computed in float64,
        rounded once (float32 CPU weights by the native kernel, others by torch).

    Example:
        >>> w = torch.randn(8, 4, 3, 3)
        >>> transform_weight(w).shape, transform_weight(w, flip=True).shape
        (torch.Size([36, 4, 8]), torch.Size([36, 8, 4]))
    """
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4 or tuple(weight.shape[2:]) != (3, 3):
        shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(f"weight must be the (K, C, 3, 3) kernels of a 3x3 convolution, got {shape}")
    if not weight.is_floating_point():
        raise TypeError(f"weight must have a floating dtype, got {weight.dtype}")
    k, c = weight.shape[:2]
    shape = (POINTS, k, c) if flip else (POINTS, c, k)
    native = weight.device.type == "cpu" and weight.dtype == torch.float32 and available()
    if out is not None and (
        not native
        or out.shape != shape
        or out.dtype != torch.float32
        or not out.is_contiguous()
        or out.device != weight.device
    ):
        raise ValueError(
            f"out must be a contiguous float32 CPU tensor of shape {shape} for a float32 CPU weight, got "
            f"{tuple(out.shape)} {out.dtype} on {out.device} for a {weight.dtype} weight on {weight.device}"
        )
    if not native:
        return _transform_weight_in_torch(weight, flip)
    out = torch.empty(shape) if out is None else out
    torch.ops.cycleisp_fast.winograd_transform_weight(weight.detach(), KERNEL_TRANSFORM, flip, out)
    return out


def _transform_weight_in_torch(weight: torch.Tensor, flip: bool) -> torch.Tensor:
    """:func:`transform_weight` by torch ops in float64 (any device and dtype; the tests' reference)."""
    if flip:
        weight = weight.flip(2, 3).transpose(0, 1)
    k, c = weight.shape[:2]
    u = weight.detach().double().reshape(k * c, 9) @ _KERNEL_TRANSFORM_2D.to(weight.device).T  # (K * C, 36)
    return u.T.reshape(POINTS, k, c).transpose(1, 2).float().contiguous()


def available() -> bool:
    """Whether the native kernel is there (the extension loaded)."""
    return _extension.has_native_kernel(OP_NAME, "cpu")


def _require_extension() -> None:
    if not available():
        raise RuntimeError(
            f"the Winograd ops need the compiled extension: {_extension.LOAD_ERROR}. {_extension.REBUILD}"
        )


def _checked_band_tiles(band_tiles) -> int:
    band_tiles = check_int(band_tiles, "band_tiles")
    if band_tiles < 0:
        raise ValueError(f"band_tiles must be >= 0 (0: automatic), got {band_tiles}")
    return band_tiles


def winograd_conv3x3(
    x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None, *, band_tiles: int = 0
) -> torch.Tensor:
    """``F.conv2d(x, g, bias, padding=1)`` for 3x3 kernels ``g``, by Winograd F(4x4, 3x3), given
    ``weight = transform_weight(g)``.

    Args:
        x: (N, C, H, W) float32 on the CPU (any layout; channels_last is read without a copy).
        weight: (36, C, K) from :func:`transform_weight`.
        bias: (K,) float32, or None.
        band_tiles: tiles per band (0: the kernel's choice, about 768 KiB of buffers per thread, kept by the
            thread for later calls); for tests, which run several bands on small images.

    Returns:
        (N, K, H, W) float32 in channels_last.
    """
    check_tensor(x, "x", shape_doc="(N, C, H, W)")
    if x.dtype != torch.float32 or x.device.type != "cpu":
        raise ValueError(f"x must be float32 on the CPU, got {x.dtype} on {x.device}")
    if not isinstance(weight, torch.Tensor) or weight.dim() != 3 or weight.shape[:2] != (POINTS, x.shape[1]):
        shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(
            f"weight must be transform_weight(kernels), (36, C, K) with C = {x.shape[1]} input channels; got {shape}"
        )
    if weight.dtype != torch.float32 or weight.device != x.device:
        raise ValueError(f"weight must be float32 on {x.device}, got {weight.dtype} on {weight.device}")
    if bias is not None and (
        not isinstance(bias, torch.Tensor)
        or tuple(bias.shape) != (weight.shape[2],)
        or bias.dtype != torch.float32
        or bias.device != x.device
    ):
        got = f"{tuple(bias.shape)} {bias.dtype} on {bias.device}" if isinstance(bias, torch.Tensor) else bias
        raise ValueError(f"bias must be None or ({weight.shape[2]},) float32 on {x.device}, got {got}")
    band_tiles = _checked_band_tiles(band_tiles)
    _require_extension()
    return torch.ops.cycleisp_fast.winograd_conv3x3(x, weight, bias, band_tiles)


def weight_grad(x: torch.Tensor, grad: torch.Tensor, *, band_tiles: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradients of ``F.conv2d(x, g, b, padding=1)`` with respect to the 3x3 kernels ``g`` and the bias ``b``,
    given ``grad``, the gradient of the output, by Winograd F(4x4, 3x3).

    The transpose of the forward: per tile, the input transform ``V = B^T d B`` and the output gradient's
    ``dM = A dY A^T``; the transformed weight's gradient ``dU[p] = sum over tiles V[p]^T dM[p]`` (36 matrix
    products over the tiles, by torch's BLAS, the accumulators kept by the calling thread between calls); then
    ``dg = G^T dU G`` in float64. The bias gradient is the sum of
    ``grad`` (float32 per tile, float64 over the tiles). A quarter of direct convolution's multiplies; the error
    is float rounding, 2-4x oneDNN's (``tests/ops/test_winograd.py`` holds it to a bound).

    Args:
        x: (N, C, H, W) float32 on the CPU, the convolution's input (any layout; channels_last is read as is).
        grad: (N, K, H, W) float32 on the CPU, the gradient of its output.
        band_tiles: tiles per band, as in :func:`winograd_conv3x3`.

    Returns:
        ``(grad_weight, grad_bias)``: (K, C, 3, 3) and (K,), float32.

    Example:
        >>> import torch.nn.functional as F
        >>> x, dy = torch.randn(2, 16, 9, 11), torch.randn(2, 24, 9, 11)
        >>> gw, gb = weight_grad(x, dy)
        >>> w = torch.zeros(24, 16, 3, 3, requires_grad=True)
        >>> F.conv2d(x, w, padding=1).backward(dy)
        >>> torch.allclose(gw, w.grad, rtol=1e-4, atol=1e-4), torch.allclose(gb, dy.sum((0, 2, 3)), atol=1e-4)
        (True, True)
    """
    check_tensor(x, "x", shape_doc="(N, C, H, W)")
    check_tensor(grad, "grad", shape_doc="(N, K, H, W)")
    for name, t in (("x", x), ("grad", grad)):
        if t.dtype != torch.float32 or t.device.type != "cpu":
            raise ValueError(f"{name} must be float32 on the CPU, got {t.dtype} on {t.device}")
    if (grad.shape[0], *grad.shape[2:]) != (x.shape[0], *x.shape[2:]):
        raise ValueError(f"grad must be (N, K, H, W) with x's N, H, W {tuple(x.shape)}, got {tuple(grad.shape)}")
    band_tiles = _checked_band_tiles(band_tiles)
    _require_extension()
    return torch.ops.cycleisp_fast.winograd_conv3x3_weight_grad(x, grad, KERNEL_TRANSFORM, band_tiles)


class _Conv3x3(torch.autograd.Function):
    """y = conv(x, weight) + bias by Winograd; dx by Winograd with the flipped kernels (transformed into
    ``flipped`` when given); dweight, dbias by the Winograd weight gradient."""

    @staticmethod
    def forward(ctx, x, weight, bias, transformed, flipped):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        ctx.flipped = flipped
        return winograd_conv3x3(x, transformed, bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous(memory_format=torch.channels_last)
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            # The input gradient of a stride-1, padding-1 correlation is the correlation of the output gradient
            # with the kernels flipped in space and transposed in channels.
            grad_x = winograd_conv3x3(grad, transform_weight(weight, flip=True, out=ctx.flipped))
        if ctx.needs_input_grad[1] or (ctx.has_bias and ctx.needs_input_grad[2]):
            grad_weight, grad_bias = weight_grad(x, grad)
            grad_weight = grad_weight if ctx.needs_input_grad[1] else None
            grad_bias = grad_bias if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_weight, grad_bias, None, None


def conv3x3(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    transformed: Optional[torch.Tensor] = None,
    flipped: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding=1)`` by Winograd, differentiable in ``x``, ``weight`` and ``bias``
    (the forward, the input gradient and the weight and bias gradients all by Winograd).

    Args:
        x: (N, C, H, W) float32 on the CPU.
        weight: (K, C, 3, 3) float32 kernels.
        bias: (K,) float32, or None.
        transformed: ``transform_weight(weight)`` if already at hand (it is recomputed otherwise).
        flipped: a (36, K, C) float32 buffer for the input gradient's transformed kernels (written by the
            backward; allocated anew when None).

    Returns:
        (N, K, H, W) float32 in channels_last.
    """
    if transformed is None:
        transformed = transform_weight(weight)
    return _Conv3x3.apply(x, weight, bias, transformed, flipped)


if _extension.LOADED:

    @torch.library.register_fake("cycleisp_fast::winograd_conv3x3")
    def _fake(x, weight, bias, band_tiles=0):
        n, _, h, w = x.shape
        return x.new_empty((n, weight.shape[2], h, w)).contiguous(memory_format=torch.channels_last)

    @torch.library.register_fake("cycleisp_fast::winograd_conv3x3_weight_grad")
    def _fake_weight_grad(x, grad, transform, band_tiles=0):
        return x.new_empty((grad.shape[1], x.shape[1], 3, 3)), x.new_empty((grad.shape[1],))

    @torch.library.register_fake("cycleisp_fast::winograd_transform_weight")
    def _fake_transform(weight, transform, flip, out):
        return None
