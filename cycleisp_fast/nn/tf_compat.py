"""TensorFlow 1 layer semantics that PyTorch lacks, for networks ported from TF code (AINDNet).

At sizes that are not multiples of the strides, TF computes other things than the obvious PyTorch calls:

- :func:`avg_pool2d_same`: ``padding='SAME'`` average pooling pads ``total // 2`` before and the rest after,
  and leaves the padded cells out of each window's mean;
- :func:`resize_bilinear_legacy`: TF1's ``resize_bilinear`` / ``resize_images`` (``align_corners=False``, no
  half-pixel centres) samples output pixel ``d`` at ``src = d * (in / out)``, in float32 as TF does; at integer
  factors that is strided subsampling, which is what :func:`resize_bilinear_legacy` then returns (a view);
- :func:`conv_transpose2d_same`: ``conv2d_transpose(..., output_shape, padding='SAME')`` with a 2x2 stride-2
  filter keeps the top-left ``output_shape`` of the full transposed convolution.

And the initialisers of the TF layers, so that a port trains from scratch as the original does:
:func:`variance_scaling_` (``tf.contrib.layers.variance_scaling_initializer``), :func:`truncated_normal_`
(``tf.truncated_normal``) and :func:`conv2d_same`, a stride-1 conv with TF's ``'same'`` padding built with
either the ``tf.layers.conv2d`` + ``variance_scaling_initializer(0.02)`` init or slim's default (Glorot-uniform
weights, zero biases).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

CONV_INITS = ("variance_scaling", "glorot_uniform")
""":func:`conv2d_same`'s ``init``: ``tf.layers.conv2d(kernel_initializer=variance_scaling_initializer(0.02))``
or ``slim.conv2d``'s default ``xavier_initializer()`` (uniform); biases zero in both."""
VARIANCE_SCALING_FACTOR = 0.02
"""The ``factor`` of AINDNet's ``variance_scaling_initializer``."""


def shape_generic() -> bool:
    """Whether a graph is being traced (``torch.compile``, ``torch.export``, the ONNX exporter): then the
    functions here skip their shortcuts for particular sizes (no padding, integer resize factors), whose
    conditions would tie the traced graph to the traced size, and take the path that holds at every size
    (equal to the shortcut there for finite values)."""
    return torch.compiler.is_compiling()


def ceil_div(size: int, stride: int) -> int:
    """``ceil(size / stride)`` for sizes >= 0, by a floor division of non-negative numbers (the ONNX exporter
    rounds the floor division of a negative traced size toward zero, which ``-(-size // stride)`` would need)."""
    return (size + stride - 1) // stride


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF ``'SAME'`` padding ``(before, after)`` of one axis: the output has ``ceil(size / stride)`` cells."""
    total = max((ceil_div(size, stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _window_counts(size: int, kernel: int, stride: int, before: int, device) -> Tensor:
    """How many real (unpadded) cells each ``'SAME'`` window of one axis covers."""
    starts = torch.arange(ceil_div(size, stride), device=device) * stride - before
    return (starts + kernel).clamp(max=size) - starts.clamp(min=0)


def avg_pool2d_same(x: Tensor, kernel: int, stride: int | None = None) -> Tensor:
    """TF's ``avg_pool(x, kernel, stride, padding='SAME')`` on ``(N, C, H, W)`` -> ``(N, C, ceil(H/s), ceil(W/s))``.

    Each window's mean is over the cells inside the image only. ``F.avg_pool2d(x, kernel)`` when the size is a
    multiple of the stride and ``kernel == stride``.

    Example:
        >>> avg_pool2d_same(torch.arange(5.0).view(1, 1, 1, 5), 2)  # windows [0, 1] [2, 3] [4]
        tensor([[[[0.5000, 2.5000, 4.0000]]]])
    """
    stride = kernel if stride is None else stride
    height, width = x.shape[-2:]
    (top, bottom), (left, right) = same_padding(height, kernel, stride), same_padding(width, kernel, stride)
    if not shape_generic() and not (top or bottom or left or right):
        return F.avg_pool2d(x, kernel, stride)
    padded = F.pad(x, (left, right, top, bottom))
    if shape_generic():  # ONNX's AveragePool has no divisor_override: the window sums as means times k^2
        sums = F.avg_pool2d(padded, kernel, stride) * float(kernel * kernel)  # exact for the 2x2 and 4x4 pools
    else:
        sums = F.avg_pool2d(padded, kernel, stride, divisor_override=1)
    rows = _window_counts(height, kernel, stride, top, x.device)
    cols = _window_counts(width, kernel, stride, left, x.device)
    return sums / (rows[:, None] * cols[None, :]).to(x.dtype)


class AvgPool2dSame(nn.Module):
    """:func:`avg_pool2d_same` as a module (no parameters).

    Shape:
        - input: ``(N, C, H, W)``
        - output: ``(N, C, ceil(H / stride), ceil(W / stride))``

    Example:
        >>> AvgPool2dSame(4)(torch.rand(1, 3, 10, 9)).shape
        torch.Size([1, 3, 3, 3])
    """

    def __init__(self, kernel: int, stride: int | None = None):
        super().__init__()
        self.kernel, self.stride = kernel, kernel if stride is None else stride

    def forward(self, x: Tensor) -> Tensor:
        """TF ``'SAME'`` average pooling of ``x``."""
        return avg_pool2d_same(x, self.kernel, self.stride)

    def extra_repr(self) -> str:
        """The pooling's settings shown by ``repr``."""
        return f"kernel={self.kernel}, stride={self.stride}, padding='SAME'"


def _legacy_axis(size_in: int, size_out: int, device) -> tuple[Tensor, Tensor, Tensor]:
    """TF's legacy interpolation of one axis, in float32: (lower index, upper index, float32 weight)."""
    # float32 sizes as TF has them; ones() * size keeps a traced size symbolic (torch.tensor would fix it)
    scale = torch.ones((), dtype=torch.float32) * size_in / size_out
    source = torch.arange(size_out, dtype=torch.float32) * scale
    lower = source.floor()
    upper = source.ceil().long().clamp(max=size_in - 1)
    return lower.long().to(device), upper.to(device), (source - lower).to(device)


def _same_integer_factor(size_in: tuple[int, int], size_out: tuple[int, int]) -> bool:
    """Whether both axes shrink by one integer factor (then the legacy resize is strided subsampling)."""
    (height, width), (out_height, out_width) = size_in, size_out
    return height % out_height == 0 and width % out_width == 0 and height // out_height == width // out_width


def resize_bilinear_legacy(image: Tensor, size: tuple[int, int]) -> Tensor:
    """TF1's ``resize_bilinear(image, size)`` (``align_corners=False``, ``half_pixel_centers=False``) on
    ``(N, K, h, w)`` -> ``(N, K, *size)``, any sizes.

    Output row ``d`` samples input row ``src = d * (h / H)`` (float32), linearly between ``floor(src)`` and
    ``ceil(src)`` (clamped to the last row), columns first, then rows, with TF's formula ``a + (b - a) * t``.
    Not ``F.interpolate`` (half-pixel centres). When ``h`` and ``w`` are the same integer multiple ``s`` of the
    output size, this is ``image[..., ::s, ::s]`` exactly and returns that view.

    Example:
        >>> resize_bilinear_legacy(torch.tensor([[[[0.0, 4.0]]]]), (1, 4))  # src 0, 0.5, 1, 1.5 -> clamped
        tensor([[[[0., 2., 4., 4.]]]])
    """
    (height, width), (out_height, out_width) = image.shape[-2:], size
    if not shape_generic() and _same_integer_factor((height, width), (out_height, out_width)):
        factor = height // out_height
        return image if factor == 1 else image[..., ::factor, ::factor]
    (y0, y1, ty), (x0, x1, tx) = (
        _legacy_axis(height, out_height, image.device),
        _legacy_axis(width, out_width, image.device),
    )
    ty, tx = ty.to(image.dtype)[:, None], tx.to(image.dtype)
    left, right = image[..., x0], image[..., x1]
    columns = left + (right - left) * tx
    top, bottom = columns[..., y0, :], columns[..., y1, :]
    return top + (bottom - top) * ty


def conv_transpose2d_same(x: Tensor, weight: Tensor, output_size: tuple[int, int], stride: int = 2) -> Tensor:
    """TF's ``conv2d_transpose(x, filter, output_shape, strides=stride, padding='SAME')`` for a ``stride x
    stride`` filter (PyTorch layout ``(C_in, C_out, s, s)``, no bias): the full transposed convolution cropped to
    its top-left ``output_size`` (TF pads the forward conv at the end only). ``output_size`` must satisfy
    ``ceil(output / stride) == input`` on both axes, as TF requires."""
    height, width = x.shape[-2:]
    if weight.shape[-2:] != (stride, stride):
        raise ValueError(f"conv_transpose2d_same needs a {stride}x{stride} filter, got {tuple(weight.shape)}")
    if ceil_div(output_size[0], stride) != height or ceil_div(output_size[1], stride) != width:
        raise ValueError(f"output_size {tuple(output_size)} does not fit a {height}x{width} input at stride {stride}")
    full = F.conv_transpose2d(x, weight, stride=stride)
    if shape_generic():  # a gather, not a view: the traced graph must not depend on whether the crop cuts
        rows, cols = (torch.arange(extent, device=x.device) for extent in output_size)
        return full.index_select(-2, rows).index_select(-1, cols)
    return full[..., : output_size[0], : output_size[1]]


def truncated_normal_(tensor: Tensor, std: float) -> Tensor:
    """``tf.truncated_normal(stddev=std)`` in place: a normal of std ``std`` redrawn outside 2 std."""
    return nn.init.trunc_normal_(tensor, std=std, a=-2 * std, b=2 * std)


def variance_scaling_(weight: Tensor, factor: float = VARIANCE_SCALING_FACTOR) -> Tensor:
    """TF1 ``contrib.layers.variance_scaling_initializer(factor)`` (FAN_IN, not uniform) in place on a conv
    weight ``(C_out, C_in, kh, kw)``: a truncated normal of std ``sqrt(1.3 * factor / fan_in)``, ``fan_in =
    C_in * kh * kw`` (the 1.3 makes up for the truncation at 2 std)."""
    fan_in = weight.shape[1] * weight[0, 0].numel()
    return truncated_normal_(weight, math.sqrt(1.3 * factor / fan_in))


def conv2d_same(in_channels: int, out_channels: int, kernel_size: int, init: str = "variance_scaling") -> nn.Conv2d:
    """A stride-1 conv with bias and TF ``padding='same'`` (``kernel_size`` odd), initialised as TF does.

    The initialisers:

    - ``"variance_scaling"``: ``tf.layers.conv2d(..., kernel_initializer=variance_scaling_initializer(0.02))``
      (:func:`variance_scaling_`), as AINDNet's AIN blocks;
    - ``"glorot_uniform"``: ``slim.conv2d``'s default, Glorot/Xavier uniform (limit ``sqrt(6 / (fan_in +
      fan_out))``).

    Biases are zero in both (``tf.layers`` and slim default to zeros).

    Example:
        >>> conv = conv2d_same(3, 64, 5, init="glorot_uniform")
        >>> conv(torch.rand(1, 3, 7, 9)).shape
        torch.Size([1, 64, 7, 9])
    """
    if init not in CONV_INITS:
        raise ValueError(f"init must be one of {CONV_INITS}, got {init!r}")
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd ('same' padding is symmetric only then), got {kernel_size}")
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
    if init == "variance_scaling":
        variance_scaling_(conv.weight)
    else:
        nn.init.xavier_uniform_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv
