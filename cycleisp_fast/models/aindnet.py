"""AINDNet (Kim et al., CVPR 2020), as the official TF code (``terryoo/AINDNet/code/model.py``) builds it:
:class:`NoiseEstimator` (``FCN_Avg``) and the reconstruction U-Net of 14 :class:`~cycleisp_fast.nn.AINResBlock`
(:class:`AINDNet` holds both), plus the transfer-learning helpers :func:`transfer_tf` / :func:`transfer_rt`.

Any input size computes what the official graph computes on that size, unpadded: TF ``'SAME'`` average pooling
(windows padded ``total // 2`` before, padded cells left out of the mean), TF1's legacy bilinear resizes of the
noise map at any factor, transposed convs cropped to the skip's size as TF does (see
:mod:`cycleisp_fast.nn.tf_compat`). Where the paper and the released code disagree, the default is the code's
(it reproduces the released weights) and an option gives the paper's: ``coarse_scale=8`` (code) or 4 (paper) for
the estimator's coarse map; ``noise_resize="tf_legacy"`` (code) or ``"avgpool"`` (paper's Fig. 3) for the noise
map entering each AIN.

Submodule names are the TF scopes where the spec gives them (``fcn_avg``, ``conv1_1``, ``conv2_1``,
``conv3_1``, ``conv6``); the rest are ours (``level1`` ... ``level5``, ``up4``/``up5`` for the transposed convs,
``skip4``/``skip5`` for the plain ResBlocks on the skips); :mod:`cycleisp_fast.models.tf_checkpoint` maps them
to the TF variable names. Initialisation, layer by layer as the official code: the ``slim.conv2d`` layers
(the estimator's seven convs, ``conv1_1``, ``conv2_1``, ``conv3_1``, the skip ResBlocks, ``conv6``) Glorot-uniform
weights and zero biases (slim's defaults); the ``tf.layers.conv2d`` layers of the AIN-ResBlocks
``variance_scaling_initializer(0.02)`` and zero biases; the transposed-conv filters ``tf.truncated_normal(stddev
=0.02)``, as the official ``deconv_filter`` variables.
"""

from __future__ import annotations

import torch  # noqa: F401 (the Example: sections, run as doctests, use the module's globals)
import torch.nn.functional as F
from torch import Tensor, nn

from cycleisp_fast.checks import check_backend_argument, check_choice, check_tensor
from cycleisp_fast.nn.ain import AIN, RESIZE_ALIASES, RESIZE_MODES, AINResBlock, resize_noise_map
from cycleisp_fast.nn.tf_compat import (
    AvgPool2dSame,
    avg_pool2d_same,
    conv2d_same,
    conv_transpose2d_same,
    resize_bilinear_legacy,
    truncated_normal_,
)

COARSE_SCALES = (8, 4)
UPSAMPLE_MODES = ("tf_legacy", "bilinear")
COARSE_WEIGHT = 0.8
"""sigma = 0.8 upsampled coarse + 0.2 refined (the paper's Eq. 1, lambda_ms)."""
DECONV_STD = 0.02
"""The std of the official ``deconv_filter``'s truncated normal."""


def _slim_conv(in_channels: int, out_channels: int, kernel_size: int = 3) -> nn.Conv2d:
    """A ``slim.conv2d`` layer: 'same' padding, bias, Glorot-uniform weights, zero biases."""
    return conv2d_same(in_channels, out_channels, kernel_size, init="glorot_uniform")


def _relu_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(_slim_conv(in_channels, out_channels), nn.ReLU())


def estimator_pool(x: Tensor, coarse_scale: int) -> Tensor:
    """The estimator's pooling from full resolution to its coarse map, without the convs between: TF 'SAME'
    4x4 average pooling, then 2x2 for ``coarse_scale=8``. ``(N, C, H, W)`` -> ``(N, C, ceil(H/4), ...)`` or
    ``(N, C, ceil(ceil(H/4)/2), ...)``; the ``s x s`` mean at multiples of ``s``. The multi-scale loss's coarse
    target is ``estimator_pool(sigma)``."""
    x = avg_pool2d_same(x, 4)
    return avg_pool2d_same(x, 2) if coarse_scale == 8 else x


class NoiseEstimator(nn.Module):
    """AINDNet's noise-level estimator (``FCN_Avg``, TF scope ``fcn_avg``), 29,675 parameters.

    ``noisy (N, 3, H, W)`` -> four 3x3 convs (32 channels, ReLU) with a TF 'SAME' 4x4 average pool after the
    second and, for ``coarse_scale=8``, a 2x2 one after the fourth, then conv 32 -> 3 + ReLU: the coarse map
    ``(N, 3, h, w)`` (``h = ceil(ceil(H/4)/2)`` for scale 8, ``ceil(H/4)`` for 4); it is upsampled to
    ``H x W`` and refined by two 3 -> 3 convs (ReLU); the estimate is ``0.8 * upsampled + 0.2 * refined``
    (>= 0). Any ``H, W >= 1``.

    Args:
        coarse_scale: 8 (the released code) or 4 (the paper).
        upsample: ``"tf_legacy"`` (TF1's bilinear resize, the released weights) or ``"bilinear"``
            (``F.interpolate``, half-pixel centres).

    Shape:
        - noisy: ``(N, 3, H, W)``, any ``H, W >= 1``
        - output: ``(N, 3, H, W)``; with ``return_coarse=True`` also the coarse map ``(N, 3, h, w)``

    Example:
        >>> noise_map, coarse = NoiseEstimator()(torch.rand(1, 3, 61, 47), return_coarse=True)
        >>> tuple(noise_map.shape), tuple(coarse.shape)
        ((1, 3, 61, 47), (1, 3, 8, 6))
    """

    def __init__(self, coarse_scale: int = 8, upsample: str = "tf_legacy"):
        super().__init__()
        if coarse_scale not in COARSE_SCALES:
            raise ValueError(f"coarse_scale must be one of {COARSE_SCALES}, got {coarse_scale!r}")
        self.coarse_scale = coarse_scale
        self.upsample = check_choice(upsample, "upsample", UPSAMPLE_MODES)
        self.features = nn.Sequential(
            _relu_conv(3, 32),
            _relu_conv(32, 32),
            AvgPool2dSame(4),
            _relu_conv(32, 32),
            _relu_conv(32, 32),
            AvgPool2dSame(2) if coarse_scale == 8 else nn.Identity(),
            _relu_conv(32, 3),
        )
        self.refine = nn.Sequential(_relu_conv(3, 3), _relu_conv(3, 3))

    def forward(self, noisy: Tensor, return_coarse: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """``(N, 3, H, W)`` -> the noise map ``(N, 3, H, W)``; with ``return_coarse`` also the coarse map
        ``(N, 3, h, w)`` (what the multi-scale loss supervises)."""
        check_tensor(noisy, "noisy", shape_doc="(N, 3, H, W)", channels=3)
        size = tuple(noisy.shape[-2:])
        if 0 in size:
            raise ValueError(f"noisy must have a nonzero height and width, got {tuple(noisy.shape)}")
        coarse = self.features(noisy)
        if self.upsample == "tf_legacy":
            upsampled = resize_bilinear_legacy(coarse, size)
        else:
            upsampled = F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)
        noise_map = COARSE_WEIGHT * upsampled + (1 - COARSE_WEIGHT) * self.refine(upsampled)
        return (noise_map, coarse) if return_coarse else noise_map


class ResBlock(nn.Module):
    """The plain residual block on AINDNet's skips (``resBlock``, slim convs): ``x + conv(relu(conv(x)))``, 3x3
    C -> C with bias, no norm."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = _slim_conv(channels, channels)
        self.conv2 = _slim_conv(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        """``x + conv2(relu(conv1(x)))``."""
        return x + self.conv2(F.relu(self.conv1(x)))


class _Level(nn.Module):
    """``blocks`` AIN-ResBlocks applied in turn, each conditioned on the same noise map. The map is resized to
    the level's resolution once (every AIN of the official graph resizes it the same way)."""

    def __init__(self, channels: int, blocks: int, resize: str, backend: str | None):
        super().__init__()
        self.resize = resize
        self.blocks = nn.ModuleList(AINResBlock(channels, resize=resize, backend=backend) for _ in range(blocks))

    def forward(self, x: Tensor, noise_map: Tensor) -> Tensor:
        noise_map = resize_noise_map(noise_map, x.shape[-2:], self.resize).contiguous()
        for block in self.blocks:
            x = block(x, noise_map)
        return x


def _transposed_conv(in_channels: int, out_channels: int) -> nn.ConvTranspose2d:
    """2x2, stride 2, no bias; the official ``deconv_filter``: ``tf.truncated_normal(stddev=0.02)``."""
    conv = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2, bias=False)
    truncated_normal_(conv.weight, DECONV_STD)
    return conv


class AINDNet(nn.Module):
    """AINDNet: the noise estimator and the reconstruction U-Net, 13,764,014 parameters.

    ``forward(noisy)``: ``(N, 3, H, W)`` sRGB, any ``H, W >= 1`` -> denoised ``(N, 3, H, W)`` (not clamped),
    what the official graph computes on that input (no padding). U-Net: 3x3 conv + ReLU and 2 AIN-ResBlocks at
    64 channels; 2x2 'SAME' average pool; 128 channels, 2 blocks; pool; 256 channels, 5 blocks; 2x2 stride-2
    transposed conv to 128, cropped to the skip's size and **added** to the 1/2-scale features through a plain
    :class:`ResBlock`; 3 blocks; the same up to 64; 2 blocks; 1x1 conv to 3; plus the input. Every AIN is
    conditioned on the estimator's full-resolution map, resized to its features.

    Args:
        coarse_scale: the estimator's coarse scale, 8 (code, default) or 4 (paper).
        noise_resize: how each AIN resizes the noise map, ``"tf_legacy"`` (code, default) or ``"avgpool"``
            (paper).
        upsample: the estimator's upsampling, ``"tf_legacy"`` (default) or ``"bilinear"``.
        backend: backend of the fused AIN op; None follows the one in force.

    Shape:
        noisy ``(N, 3, H, W)``; output ``(N, 3, H, W)``; with ``return_noise_map`` also the noise map ``(N, 3, H,
        W)`` and the coarse map ``(N, 3, h, w)`` (see :class:`NoiseEstimator`).

    Example:
        >>> model = AINDNet().eval()
        >>> with torch.no_grad():
        ...     model(torch.rand(1, 3, 13, 21)).shape
        torch.Size([1, 3, 13, 21])
    """

    def __init__(
        self,
        coarse_scale: int = 8,
        noise_resize: str = "tf_legacy",
        upsample: str = "tf_legacy",
        *,
        backend: str | None = None,
    ):
        super().__init__()
        noise_resize = check_choice(RESIZE_ALIASES.get(noise_resize, noise_resize), "noise_resize", RESIZE_MODES)
        backend = check_backend_argument(backend)
        self.fcn_avg = NoiseEstimator(coarse_scale, upsample)
        self.conv1_1 = _relu_conv(3, 64)
        self.level1 = _Level(64, 2, noise_resize, backend)
        self.conv2_1 = _relu_conv(64, 128)
        self.level2 = _Level(128, 2, noise_resize, backend)
        self.conv3_1 = _relu_conv(128, 256)
        self.level3 = _Level(256, 5, noise_resize, backend)
        self.up4, self.skip4 = _transposed_conv(256, 128), ResBlock(128)
        self.level4 = _Level(128, 3, noise_resize, backend)
        self.up5, self.skip5 = _transposed_conv(128, 64), ResBlock(64)
        self.level5 = _Level(64, 2, noise_resize, backend)
        self.conv6 = _slim_conv(64, 3, 1)

    def reconstruct(self, noisy: Tensor, noise_map: Tensor) -> Tensor:
        """The U-Net's residual for ``noisy`` and ``noise_map``, both ``(N, 3, H, W)``."""
        skip1 = self.level1(self.conv1_1(noisy), noise_map)
        skip2 = self.level2(self.conv2_1(avg_pool2d_same(skip1, 2)), noise_map)
        x = self.level3(self.conv3_1(avg_pool2d_same(skip2, 2)), noise_map)
        x = self.level4(conv_transpose2d_same(x, self.up4.weight, skip2.shape[-2:]) + self.skip4(skip2), noise_map)
        x = self.level5(conv_transpose2d_same(x, self.up5.weight, skip1.shape[-2:]) + self.skip5(skip1), noise_map)
        return self.conv6(x)

    def forward(self, noisy: Tensor, return_noise_map: bool = False) -> Tensor | tuple[Tensor, Tensor, Tensor]:
        """``(N, 3, H, W)`` -> denoised ``(N, 3, H, W)``; with ``return_noise_map`` the tuple ``(denoised,
        noise_map (N, 3, H, W), coarse (N, 3, h, w))``."""
        check_tensor(noisy, "noisy", shape_doc="(N, 3, H, W) sRGB", channels=3)
        if 0 in noisy.shape[-2:]:
            raise ValueError(f"noisy must have a nonzero height and width, got {tuple(noisy.shape)}")
        noise_map, coarse = self.fcn_avg(noisy, return_coarse=True)
        denoised = self.reconstruct(noisy, noise_map) + noisy
        return (denoised, noise_map, coarse) if return_noise_map else denoised


def trainable_parameters(model: nn.Module) -> int:
    """The number of parameters with ``requires_grad``.

    Example:
        >>> trainable_parameters(torch.nn.Conv2d(3, 8, 3))  # 8 * 3 * 3 * 3 + 8
        224
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def transfer_tf(model: AINDNet) -> int:
    """AINDNet+TF: freezes everything but the 28 AIN conditioning networks, the noise estimator and the last
    conv (``conv6``); returns the trainable count (5,188,270 for the default model).

    Example:
        >>> model = AINDNet()
        >>> frozen = lambda module: not any(p.requires_grad for p in module.parameters())
        >>> transfer_tf(model), frozen(model.conv1_1), frozen(model.conv6)
        (5188270, True, False)
    """
    if not isinstance(model, AINDNet):
        raise TypeError(f"model must be an AINDNet, got {type(model).__name__}")
    model.requires_grad_(False)
    for module in model.modules():
        if isinstance(module, AIN):
            module.requires_grad_(True)
    model.fcn_avg.requires_grad_(True)
    model.conv6.requires_grad_(True)
    return trainable_parameters(model)


def transfer_rt(model: AINDNet) -> int:
    """AINDNet+RT: every parameter trainable (common transfer learning); returns the count (13,764,014).

    Example:
        >>> model = AINDNet()
        >>> transfer_tf(model) < transfer_rt(model) == sum(p.numel() for p in model.parameters())
        True
    """
    if not isinstance(model, AINDNet):
        raise TypeError(f"model must be an AINDNet, got {type(model).__name__}")
    model.requires_grad_(True)
    return trainable_parameters(model)
