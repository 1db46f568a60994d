"""AINDNet (Kim et al., CVPR 2020), as the official TF code (``terryoo/AINDNet/code/model.py``) builds it:
:class:`NoiseEstimator` (``FCN_Avg``) and the reconstruction U-Net of 14 :class:`~cycleisp_fast.nn.AINResBlock`
(:class:`AINDNet` holds both), plus the transfer-learning helpers :func:`transfer_tf` / :func:`transfer_rt`.

Where the paper and the released code disagree, the default is the code's (it reproduces the released
weights) and an option gives the paper's: ``coarse_scale=8`` (code) or 4 (paper) for the estimator's coarse
map; ``noise_resize="subsample"`` (code: TF1's legacy bilinear resize at integer factors) or ``"avgpool"``
(paper's Fig. 3) for the noise map entering each AIN.

Submodule names are the TF scopes where the spec gives them (``fcn_avg``, ``conv1_1``, ``conv2_1``,
``conv3_1``, ``conv6``); the rest are ours (``level1`` ... ``level5``, ``up4``/``up5`` for the transposed convs,
``skip4``/``skip5`` for the plain ResBlocks on the skips). Initialisation: every 3x3 / 1x1 conv as the AIN blocks
(TF1 ``variance_scaling_initializer(0.02)``, :func:`~cycleisp_fast.nn.ain.tf_conv2d`), the transposed convs a
truncated normal of std 0.02 as the official ``deconv_filter``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cycleisp_fast.nn.ain import AIN, RESIZE_MODES, AINResBlock, tf_conv2d
from cycleisp_fast.ops._checks import check_backend_argument, check_choice, check_tensor

COARSE_SCALES = (8, 4)
UPSAMPLE_MODES = ("tf_legacy", "bilinear")
COARSE_WEIGHT = 0.8
"""sigma = 0.8 upsampled coarse + 0.2 refined (the paper's Eq. 1, lambda_ms)."""
PAD_MULTIPLE = 8
"""Inputs are padded to a multiple of this (three scales of the U-Net, and the estimator's 1/8 map)."""


def tf_legacy_resize_bilinear(image: Tensor, size: tuple[int, int]) -> Tensor:
    """TF1's ``resize_bilinear`` (``align_corners=False``, no half-pixel centres): output pixel ``d`` samples
    the input at ``src = d * in / out``, interpolating linearly between ``floor(src)`` and the next pixel,
    clamped at the far edge. ``(N, K, h, w)`` -> ``(N, K, *size)``. Not ``F.interpolate`` (half-pixel centres)."""

    def axis(extent_in: int, extent_out: int):
        src = torch.arange(extent_out, device=image.device, dtype=torch.float64) * (extent_in / extent_out)
        low = src.floor().long()
        return low, (low + 1).clamp(max=extent_in - 1), (src - low).to(image.dtype)

    (y0, y1, fy), (x0, x1, fx) = axis(image.shape[-2], size[0]), axis(image.shape[-1], size[1])
    rows = torch.lerp(image[..., y0, :], image[..., y1, :], fy[:, None])
    return torch.lerp(rows[..., x0], rows[..., x1], fx)


def _relu_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(tf_conv2d(in_channels, out_channels, 3), nn.ReLU())


class NoiseEstimator(nn.Module):
    """AINDNet's noise-level estimator (``FCN_Avg``, TF scope ``fcn_avg``), 29,675 parameters.

    ``noisy (N, 3, H, W)`` -> four 3x3 convs (32 channels, ReLU) with a 4x4 average pool after the second and,
    for ``coarse_scale=8``, a 2x2 one after the fourth, then conv 32 -> 3 + ReLU: the coarse map
    ``(N, 3, H/s, W/s)``; it is upsampled to ``H x W`` and refined by two 3 -> 3 convs (ReLU); the estimate is
    ``0.8 * upsampled + 0.2 * refined`` (>= 0). H and W must be multiples of ``coarse_scale``.

    Args:
        coarse_scale: 8 (the released code) or 4 (the paper).
        upsample: ``"tf_legacy"`` (TF1's bilinear resize, the released weights) or ``"bilinear"``
            (``F.interpolate``, half-pixel centres).
    """

    def __init__(self, coarse_scale: int = 8, upsample: str = "tf_legacy"):
        super().__init__()
        if coarse_scale not in COARSE_SCALES:
            raise ValueError(f"coarse_scale must be one of {COARSE_SCALES}, got {coarse_scale!r}")
        self.coarse_scale = coarse_scale
        self.upsample = check_choice(upsample, "upsample", UPSAMPLE_MODES)
        self.features = nn.Sequential(_relu_conv(3, 32), _relu_conv(32, 32), nn.AvgPool2d(4), _relu_conv(32, 32),
                                      _relu_conv(32, 32), nn.AvgPool2d(2) if coarse_scale == 8 else nn.Identity(),
                                      _relu_conv(32, 3))
        self.refine = nn.Sequential(_relu_conv(3, 3), _relu_conv(3, 3))

    def forward(self, noisy: Tensor, return_coarse: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """``(N, 3, H, W)`` -> the noise map ``(N, 3, H, W)``; with ``return_coarse`` also the coarse map
        ``(N, 3, H/s, W/s)`` (what the multi-scale loss supervises)."""
        check_tensor(noisy, "noisy", shape_doc="(N, 3, H, W)", channels=3)
        height, width = noisy.shape[-2:]
        if height % self.coarse_scale or width % self.coarse_scale:
            raise ValueError(f"noisy height and width must be multiples of coarse_scale={self.coarse_scale}, got "
                             f"{height}x{width} (AINDNet pads its input; pad or crop before calling the estimator)")
        coarse = self.features(noisy)
        if self.upsample == "tf_legacy":
            upsampled = tf_legacy_resize_bilinear(coarse, (height, width))
        else:
            upsampled = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
        noise_map = COARSE_WEIGHT * upsampled + (1 - COARSE_WEIGHT) * self.refine(upsampled)
        return (noise_map, coarse) if return_coarse else noise_map


class ResBlock(nn.Module):
    """The plain residual block on AINDNet's skips: ``x + conv(relu(conv(x)))``, 3x3 C -> C with bias, no norm."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = tf_conv2d(channels, channels, 3)
        self.conv2 = tf_conv2d(channels, channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class _Level(nn.Module):
    """``blocks`` AIN-ResBlocks applied in turn, each conditioned on the same full-resolution noise map."""

    def __init__(self, channels: int, blocks: int, resize: str, backend: str | None):
        super().__init__()
        self.blocks = nn.ModuleList(AINResBlock(channels, resize=resize, backend=backend) for _ in range(blocks))

    def forward(self, x: Tensor, noise_map: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x, noise_map)
        return x


def _transposed_conv(in_channels: int, out_channels: int) -> nn.ConvTranspose2d:
    """2x2, stride 2, no bias; the official ``deconv_filter``'s truncated normal (std 0.02, cut at 2 std)."""
    conv = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2, bias=False)
    nn.init.trunc_normal_(conv.weight, std=0.02, a=-0.04, b=0.04)
    return conv


class AINDNet(nn.Module):
    """AINDNet: the noise estimator and the reconstruction U-Net, 13,764,014 parameters.

    ``forward(noisy)``: ``(N, 3, H, W)`` sRGB, any ``H, W >= 1`` -> denoised ``(N, 3, H, W)`` (not clamped).
    The input is padded at the bottom and right to a multiple of 8 (replicated edge pixels: defined for any
    size, unlike reflection, and free of the black border zero padding would show the estimator), run, and
    cropped back. U-Net: 3x3 conv + ReLU and 2 AIN-ResBlocks at 64 channels; 2x2 average pool; 128 channels,
    2 blocks; pool; 256 channels, 5 blocks; 2x2 stride-2 transposed conv to 128, **added** to the 1/2-scale
    features through a plain :class:`ResBlock`; 3 blocks; the same up to 64; 2 blocks; 1x1 conv to 3; plus the
    input. Every AIN is conditioned on the estimator's full-resolution map.

    Args:
        coarse_scale: the estimator's coarse scale, 8 (code, default) or 4 (paper).
        noise_resize: how each AIN resizes the noise map, ``"subsample"`` (code, default) or ``"avgpool"``.
        upsample: the estimator's upsampling, ``"tf_legacy"`` (default) or ``"bilinear"``.
        backend: backend of the fused AIN op; None follows the one in force.
    """

    def __init__(self, coarse_scale: int = 8, noise_resize: str = "subsample", upsample: str = "tf_legacy", *,
                 backend: str | None = None):
        super().__init__()
        check_choice(noise_resize, "noise_resize", RESIZE_MODES)
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
        self.conv6 = tf_conv2d(64, 3, 1)

    def reconstruct(self, noisy: Tensor, noise_map: Tensor) -> Tensor:
        """The U-Net's residual for ``noisy`` and ``noise_map``, both ``(N, 3, H, W)``, H and W multiples of 8."""
        skip1 = self.level1(self.conv1_1(noisy), noise_map)
        skip2 = self.level2(self.conv2_1(F.avg_pool2d(skip1, 2)), noise_map)
        x = self.level3(self.conv3_1(F.avg_pool2d(skip2, 2)), noise_map)
        x = self.level4(self.up4(x) + self.skip4(skip2), noise_map)
        x = self.level5(self.up5(x) + self.skip5(skip1), noise_map)
        return self.conv6(x)

    def forward(self, noisy: Tensor, return_noise_map: bool = False) -> Tensor | tuple[Tensor, Tensor, Tensor]:
        """``(N, 3, H, W)`` -> denoised ``(N, 3, H, W)``; with ``return_noise_map`` the tuple ``(denoised,
        noise_map (N, 3, H, W), coarse (N, 3, H'/s, W'/s))``, ``H', W'`` the padded size (= H, W when they are
        multiples of 8, as training crops are)."""
        check_tensor(noisy, "noisy", shape_doc="(N, 3, H, W) sRGB", channels=3)
        height, width = noisy.shape[-2:]
        if height == 0 or width == 0:
            raise ValueError(f"noisy must have a nonzero height and width, got {tuple(noisy.shape)}")
        pad_h, pad_w = -height % PAD_MULTIPLE, -width % PAD_MULTIPLE
        padded = F.pad(noisy, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else noisy
        noise_map, coarse = self.fcn_avg(padded, return_coarse=True)
        denoised = (self.reconstruct(padded, noise_map) + padded)[..., :height, :width]
        if return_noise_map:
            return denoised, noise_map[..., :height, :width], coarse
        return denoised


def trainable_parameters(model: nn.Module) -> int:
    """The number of parameters with ``requires_grad``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def transfer_tf(model: AINDNet) -> int:
    """AINDNet+TF: freezes everything but the 28 AIN conditioning networks, the noise estimator and the last
    conv (``conv6``); returns the trainable count (5,188,270 for the default model)."""
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
    """AINDNet+RT: every parameter trainable (common transfer learning); returns the count (13,764,014)."""
    if not isinstance(model, AINDNet):
        raise TypeError(f"model must be an AINDNet, got {type(model).__name__}")
    model.requires_grad_(True)
    return trainable_parameters(model)
