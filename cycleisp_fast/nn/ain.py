"""AINDNet's adaptive instance normalization (AIN) and AIN-ResBlock, as in the official code.

Each :class:`AIN` holds its own conditioning network: the noise map, resized to the feature resolution,
goes through ``conv1`` (5x5, noise_channels -> hidden, ReLU), then two parallel 3x3 convs ``conv_gamma`` and
``conv_beta`` (hidden -> channels) give the pixel-wise gamma and beta of the fused
:func:`cycleisp_fast.ops.adaptive_instance_norm`. Submodule names follow the TF scopes (``AIN_1/conv1``,
``AIN_1/conv_gamma``, ``conv1``, ...) so a checkpoint converter maps them one to one.

Every conv is a ``tf.layers.conv2d`` in the official code, initialised by TF1's
``variance_scaling_initializer(0.02)`` (:func:`~cycleisp_fast.nn.tf_compat.conv2d_same`); ``backend=None``
follows the backend in force.
"""

from __future__ import annotations

import torch  # noqa: F401 (the examples)
import torch.nn.functional as F
from torch import Tensor, nn

from cycleisp_fast import ops
from cycleisp_fast.checks import check_backend_argument, check_choice, check_tensor
from cycleisp_fast.nn.tf_compat import avg_pool2d_same, ceil_div, conv2d_same, resize_bilinear_legacy, shape_generic

RESIZE_MODES = ("tf_legacy", "avgpool")
RESIZE_ALIASES = {"subsample": "tf_legacy"}
"""Earlier names of the modes (checkpoints written before any size was supported)."""
LEAKY_SLOPE = 0.02
"""The slope of the LeakyReLU after every AIN in AINDNet."""


def _pool_factor(size: tuple[int, int], target: tuple[int, int]) -> int | None:
    """The smallest ``s`` with ``ceil(size / s) == target`` on both axes, or None."""
    for factor in range(1, max(size) + 1):
        if all(ceil_div(extent, factor) == goal for extent, goal in zip(size, target)):
            return factor
        if any(ceil_div(extent, factor) < goal for extent, goal in zip(size, target)):
            return None
    return None


def resize_noise_map(noise_map: Tensor, size: tuple[int, int], mode: str = "tf_legacy") -> Tensor:
    """``(N, K, H, W)`` noise map -> ``(N, K, h, w)``, ``size = (h, w)``.

    ``"tf_legacy"``: what the official code computes, TF1's ``resize_bilinear`` at any sizes
    (:func:`~cycleisp_fast.nn.tf_compat.resize_bilinear_legacy`; strided subsampling when ``H/h = W/w`` is an
    integer). ``"avgpool"``: the paper's Fig. 3, TF ``'SAME'`` average pooling by the factor ``s`` the features
    were pooled by (the smallest ``s`` with ``ceil(H/s) = h`` and ``ceil(W/s) = w``; ``s x s`` means at
    multiples). The identity when the sizes agree.
    """
    mode = check_choice(RESIZE_ALIASES.get(mode, mode), "mode", RESIZE_MODES)
    if not shape_generic() and tuple(noise_map.shape[-2:]) == tuple(size):
        return noise_map
    if mode == "tf_legacy":
        return resize_bilinear_legacy(noise_map, size)
    factor = _pool_factor(tuple(noise_map.shape[-2:]), tuple(size))
    if factor is None:
        raise ValueError(
            f"resize='avgpool' needs a feature resolution {size[0]}x{size[1]} that is the noise map's "
            f"{noise_map.shape[-2]}x{noise_map.shape[-1]} pooled by one factor (ceil(H/s) x ceil(W/s))"
        )
    return avg_pool2d_same(noise_map, factor)


class AIN(nn.Module):
    """Adaptive instance normalization conditioned on a noise map (AINDNet's ``ain``, TF scope ``AIN_*``).

    ``y = act(instance_norm(x) * (1 + gamma) + beta)`` with ``t = relu(conv1(resize(noise_map)))``,
    ``gamma = conv_gamma(t)``, ``beta = conv_beta(t)``, act the fused LeakyReLU when ``negative_slope`` is given.
    With the official init (``variance_scaling_initializer(0.02)``: tiny weights, zero biases) gamma and beta
    start near 0, so AIN starts as plain instance norm.

    Args:
        channels: C, the channels of the features.
        noise_channels: K, the channels of the noise map (AINDNet: 3, RGB).
        hidden: the width of the conditioning network (AINDNet: 64 at every scale).
        eps: added to the biased variance inside the square root.
        negative_slope: fuses a LeakyReLU of this slope on the output (AINDNet: 0.02); None for none.
        resize: how the noise map reaches the feature resolution, one of :data:`RESIZE_MODES` (see
            :func:`resize_noise_map`); ``"tf_legacy"`` is the official code.
        backend: backend of the fused op, one of :data:`cycleisp_fast.backend.BACKENDS`; None follows the one in
            force.

    Shape:
        - x: ``(N, C, h, w)``; noise_map: ``(N, K, H, W)``, any size (resized to ``h x w``)
        - output: ``(N, C, h, w)``

    Example:
        >>> ain = AIN(16, negative_slope=0.02)
        >>> ain(torch.randn(2, 16, 8, 8), torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 16, 8, 8])
    """

    def __init__(
        self,
        channels: int,
        noise_channels: int = 3,
        hidden: int = 64,
        *,
        eps: float = 1e-5,
        negative_slope: float | None = None,
        resize: str = "tf_legacy",
        backend: str | None = None,
    ):
        super().__init__()
        self.channels = channels
        self.noise_channels = noise_channels
        self.eps = eps
        self.negative_slope = negative_slope
        self.resize = check_choice(RESIZE_ALIASES.get(resize, resize), "resize", RESIZE_MODES)
        self.backend = check_backend_argument(backend)
        self.conv1 = conv2d_same(noise_channels, hidden, 5)
        self.conv_gamma = conv2d_same(hidden, channels, 3)
        self.conv_beta = conv2d_same(hidden, channels, 3)

    def forward(self, x: Tensor, noise_map: Tensor) -> Tensor:
        """``(N, C, h, w)`` features and ``(N, K, H, W)`` noise map (any size; resized to ``h x w``) ->
        ``(N, C, h, w)`` of x's dtype."""
        check_tensor(x, "x", shape_doc="(N, C, h, w)", channels=self.channels)
        check_tensor(noise_map, "noise_map", shape_doc="(N, K, H, W)", channels=self.noise_channels)
        if noise_map.shape[0] != x.shape[0]:
            raise ValueError(f"noise_map must have x's batch size {x.shape[0]}, got {tuple(noise_map.shape)}")
        hidden = F.relu(self.conv1(resize_noise_map(noise_map, x.shape[-2:], self.resize)))
        return ops.adaptive_instance_norm(
            x, self.conv_gamma(hidden), self.conv_beta(hidden), self.eps, self.negative_slope, backend=self.backend
        )

    def extra_repr(self) -> str:
        """The constructor arguments shown by ``repr``."""
        return (
            f"channels={self.channels}, noise_channels={self.noise_channels}, eps={self.eps}, "
            f"negative_slope={self.negative_slope}, resize={self.resize!r}"
            + (f", backend={self.backend!r}" if self.backend else "")
        )


class AINResBlock(nn.Module):
    """AINDNet's pre-activation residual block (``ain_resblock``, TF scope ``AINRes*``):
    ``x + conv2(lrelu(ain_2(conv1(lrelu(ain_1(x, σ))), σ)))``, LeakyReLU(0.02) fused into each AIN, convs 3x3
    C -> C with bias and the official init (``variance_scaling_initializer(0.02)``). No scaling of the residual, no
    activation after the sum. Arguments as for :class:`AIN`.

    Shape:
        - x: ``(N, C, h, w)``; noise_map: ``(N, K, H, W)``, any size (AINDNet: the full-resolution map)
        - output: ``(N, C, h, w)``

    Example:
        >>> block = AINResBlock(16)
        >>> block(torch.randn(1, 16, 12, 10), torch.rand(1, 3, 24, 20)).shape
        torch.Size([1, 16, 12, 10])
    """

    def __init__(
        self,
        channels: int,
        noise_channels: int = 3,
        hidden: int = 64,
        *,
        resize: str = "tf_legacy",
        backend: str | None = None,
    ):
        super().__init__()
        ain_args = dict(
            noise_channels=noise_channels, hidden=hidden, negative_slope=LEAKY_SLOPE, resize=resize, backend=backend
        )
        self.ain_1 = AIN(channels, **ain_args)
        self.conv1 = conv2d_same(channels, channels, 3)
        self.ain_2 = AIN(channels, **ain_args)
        self.conv2 = conv2d_same(channels, channels, 3)

    def forward(self, x: Tensor, noise_map: Tensor) -> Tensor:
        """``(N, C, h, w)`` features and ``(N, K, H, W)`` full-resolution noise map -> ``(N, C, h, w)``."""
        out = self.conv1(self.ain_1(x, noise_map))
        return x + self.conv2(self.ain_2(out, noise_map))
