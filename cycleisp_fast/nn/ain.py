"""AINDNet's adaptive instance normalization (AIN) and AIN-ResBlock, as in the official code.

Each :class:`AIN` holds its own conditioning network: the noise map, resized to the feature resolution,
goes through ``conv1`` (5x5, noise_channels -> hidden, ReLU), then two parallel 3x3 convs ``conv_gamma`` and
``conv_beta`` (hidden -> channels) give the pixel-wise gamma and beta of the fused
:func:`cycleisp_fast.ops.adaptive_instance_norm`. Submodule names follow the TF scopes (``AIN_1/conv1``,
``AIN_1/conv_gamma``, ``conv1``, ...) so a checkpoint converter maps them one to one.

Every conv is initialised like TF1's ``variance_scaling_initializer(0.02)`` (see :func:`tf_conv2d`);
``backend=None`` follows the backend in force.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

from cycleisp_fast import ops
from cycleisp_fast.ops._checks import check_backend_argument, check_choice, check_tensor

RESIZE_MODES = ("subsample", "avgpool")
INIT_FACTOR = 0.02
"""The ``factor`` of the official code's ``variance_scaling_initializer``."""
LEAKY_SLOPE = 0.02
"""The slope of the LeakyReLU after every AIN in AINDNet."""


def tf_conv2d(in_channels: int, out_channels: int, kernel_size: int) -> nn.Conv2d:
    """A stride-1 ``kernel_size`` (odd) conv with bias and TF ``padding='same'``, initialised like the official
    code: weights from TF1's ``variance_scaling_initializer(factor=0.02)`` (FAN_IN, not uniform), i.e. a normal
    of std ``sqrt(1.3 * 0.02 / fan_in)``, ``fan_in = in_channels * kernel_size**2``, truncated to within 2 std
    (the 1.3 makes up for the truncation: the drawn values have std ~ ``sqrt(0.02 / fan_in)``); biases zero."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
    std = math.sqrt(1.3 * INIT_FACTOR / (in_channels * kernel_size**2))
    nn.init.trunc_normal_(conv.weight, std=std, a=-2 * std, b=2 * std)
    nn.init.zeros_(conv.bias)
    return conv


def resize_noise_map(noise_map: Tensor, size: tuple[int, int], mode: str = "subsample") -> Tensor:
    """``(N, K, H, W)`` noise map -> ``(N, K, h, w)``, ``size = (h, w)``, ``H = s*h`` and ``W = s*w`` for one
    integer factor ``s``.

    ``"subsample"``: ``noise_map[..., ::s, ::s]``, what the official code's TF 1.8 ``resize_bilinear`` (legacy
    mapping ``src = dst * s``, no half-pixel centres) computes for integer factors. ``"avgpool"``: the
    ``s x s`` average pooling of the paper's Fig. 3. The identity when ``s == 1``.
    """
    check_choice(mode, "mode", RESIZE_MODES)
    (height, width), (h, w) = noise_map.shape[-2:], size
    if height % h or width % w or height // h != width // w:
        raise ValueError(f"noise_map must be an integer multiple, the same in height and width, of the feature "
                         f"resolution {h}x{w}; got {height}x{width}")
    factor = height // h
    if factor == 1:
        return noise_map
    if mode == "subsample":
        return noise_map[..., ::factor, ::factor]
    return F.avg_pool2d(noise_map, factor)


class AIN(nn.Module):
    """Adaptive instance normalization conditioned on a noise map (AINDNet's ``ain``, TF scope ``AIN_*``).

    ``y = act(instance_norm(x) * (1 + gamma) + beta)`` with ``t = relu(conv1(resize(noise_map)))``,
    ``gamma = conv_gamma(t)``, ``beta = conv_beta(t)``, act the fused LeakyReLU when ``negative_slope`` is given.
    With the official init (see :func:`tf_conv2d`: tiny weights, zero biases) gamma and beta start near 0, so
    AIN starts as plain instance norm.

    Args:
        channels: C, the channels of the features.
        noise_channels: K, the channels of the noise map (AINDNet: 3, RGB).
        hidden: the width of the conditioning network (AINDNet: 64 at every scale).
        eps: added to the biased variance inside the square root.
        negative_slope: fuses a LeakyReLU of this slope on the output (AINDNet: 0.02); None for none.
        resize: how the noise map reaches the feature resolution, one of :data:`RESIZE_MODES` (see
            :func:`resize_noise_map`); ``"subsample"`` reproduces the released weights.
        backend: backend of the fused op, one of :data:`cycleisp_fast.backend.BACKENDS`; None follows the one in
            force.
    """

    def __init__(self, channels: int, noise_channels: int = 3, hidden: int = 64, *, eps: float = 1e-5,
                 negative_slope: float | None = None, resize: str = "subsample", backend: str | None = None):
        super().__init__()
        self.channels = channels
        self.noise_channels = noise_channels
        self.eps = eps
        self.negative_slope = negative_slope
        self.resize = check_choice(resize, "resize", RESIZE_MODES)
        self.backend = check_backend_argument(backend)
        self.conv1 = tf_conv2d(noise_channels, hidden, 5)
        self.conv_gamma = tf_conv2d(hidden, channels, 3)
        self.conv_beta = tf_conv2d(hidden, channels, 3)

    def forward(self, x: Tensor, noise_map: Tensor) -> Tensor:
        """``(N, C, h, w)`` features and ``(N, K, H, W)`` full-resolution noise map (``H/h = W/w`` an integer)
        -> ``(N, C, h, w)`` of x's dtype."""
        check_tensor(x, "x", shape_doc="(N, C, h, w)", channels=self.channels)
        check_tensor(noise_map, "noise_map", shape_doc="(N, K, H, W)", channels=self.noise_channels)
        if noise_map.shape[0] != x.shape[0]:
            raise ValueError(f"noise_map must have x's batch size {x.shape[0]}, got {tuple(noise_map.shape)}")
        hidden = F.relu(self.conv1(resize_noise_map(noise_map, x.shape[-2:], self.resize)))
        return ops.adaptive_instance_norm(x, self.conv_gamma(hidden), self.conv_beta(hidden), self.eps,
                                          self.negative_slope, backend=self.backend)

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, noise_channels={self.noise_channels}, eps={self.eps}, "
                f"negative_slope={self.negative_slope}, resize={self.resize!r}"
                + (f", backend={self.backend!r}" if self.backend else ""))


class AINResBlock(nn.Module):
    """AINDNet's pre-activation residual block (``ain_resblock``, TF scope ``AINRes*``):
    ``x + conv2(lrelu(ain_2(conv1(lrelu(ain_1(x, σ))), σ)))``, LeakyReLU(0.02) fused into each AIN, convs 3x3
    C -> C with bias and the official init (:func:`tf_conv2d`). No scaling of the residual, no activation
    after the sum. Arguments as for :class:`AIN`.
    """

    def __init__(self, channels: int, noise_channels: int = 3, hidden: int = 64, *, resize: str = "subsample",
                 backend: str | None = None):
        super().__init__()
        ain_args = dict(noise_channels=noise_channels, hidden=hidden, negative_slope=LEAKY_SLOPE, resize=resize,
                        backend=backend)
        self.ain_1 = AIN(channels, **ain_args)
        self.conv1 = tf_conv2d(channels, channels, 3)
        self.ain_2 = AIN(channels, **ain_args)
        self.conv2 = tf_conv2d(channels, channels, 3)

    def forward(self, x: Tensor, noise_map: Tensor) -> Tensor:
        """``(N, C, h, w)`` features and ``(N, K, H, W)`` full-resolution noise map -> ``(N, C, h, w)``."""
        out = self.conv1(self.ain_1(x, noise_map))
        return x + self.conv2(self.ain_2(out, noise_map))
