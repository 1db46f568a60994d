"""CycleISP's networks (Zamir et al., CVPR 2020), as the official code builds them: :class:`Rgb2Raw`,
:class:`CCM`, :class:`Raw2Rgb` and :class:`DenoiseNet` (raw and sRGB), assembled from the
:mod:`cycleisp_fast.nn` blocks so that every DAB runs the fused dual-attention tail (``backend=`` picks its
backend; ``"reference"`` runs the official operations in the official order).

Constructor defaults are the official settings, submodule names and registration order the official ones,
so ``state_dict()`` has the official keys in the official order (``tests/data/cycleisp_state_dict_keys.txt``).
Each network has one PReLU that every DAB and tail shares, stored under many names, as in the official code.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cycleisp_fast import backend as _backend
from cycleisp_fast import ops
from cycleisp_fast.checks import check_tensor
from cycleisp_fast.nn.dual_attention import RRG, default_conv


def _residual_trunk(
    n_feats: int, num_rrg: int, num_dab: int, reduction: int, act: nn.Module, backend: str | None
) -> list[nn.Module]:
    """The official ``body``: ``num_rrg`` RRGs, a 3x3 conv, the shared activation."""
    return [
        RRG(default_conv, n_feats, 3, reduction, act=act, num_dab=num_dab, backend=backend) for _ in range(num_rrg)
    ] + [default_conv(n_feats, n_feats, 3), act]


MOSAIC_SITES = ((0, 0, 0), (1, 0, 1), (1, 1, 0), (2, 1, 1))
"""(colour, row, column) of the packed RGGB planes R, Gr, Gb, B within each 2x2 block."""


def mosaic_conv3x3(features: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``mosaic(conv3x3(features, weight, bias))`` (zero padding 1) computing only the sites the mosaic keeps:
    one stride-2 conv per packed plane, a third of the full conv's work. features ``(N, C, H, W)``, H and W
    even; weight ``(3, C, 3, 3)``; returns packed RGGB ``(N, 4, H/2, W/2)``."""
    padded = F.pad(features, (1, 1, 1, 1))
    return torch.cat(
        [F.conv2d(padded[..., dy:, dx:], weight[c : c + 1], bias[c : c + 1], stride=2) for c, dy, dx in MOSAIC_SITES],
        dim=1,
    )


class Rgb2Raw(nn.Module):
    """The official RGB2RAW branch: sRGB ``(N, 3, H, W)`` in [0, 1], H and W even -> packed RGGB
    ``(N, 4, H/2, W/2)``, ``mosaic(tail(body(head(x))))`` (3 RRGs of 5 DABs, 96 features, reduction 8; no
    clamp, the scripts clamp). 3,143,109 parameters.

    On the fused backends the tail computes only the sites the mosaic keeps (:func:`mosaic_conv3x3`); the
    reference backend computes the three full-resolution channels and mosaics them, as the official code.

    Shape:
        - input: ``(N, 3, H, W)``, H and W even
        - output: ``(N, 4, H/2, W/2)`` packed RGGB

    Example:
        >>> model = Rgb2Raw()
        >>> sum(p.numel() for p in model.parameters())
        3143109
        >>> model(torch.rand(1, 3, 16, 16)).shape
        torch.Size([1, 4, 8, 8])
    """

    def __init__(self, *, backend: str | None = None):
        super().__init__()
        self.backend = backend
        act = nn.PReLU(96)
        self.head = nn.Sequential(default_conv(3, 96, 3))
        self.body = nn.Sequential(*_residual_trunk(96, 3, 5, 8, act, backend))
        self.tail = nn.Sequential(default_conv(96, 3, 3))

    def forward(self, x: Tensor) -> Tensor:
        """Packed RGGB RAW ``(N, 4, H/2, W/2)`` of the sRGB ``x``."""
        check_tensor(x, "x", shape_doc="(N, 3, H, W), H and W even", channels=3, even=True)
        features = self.body(self.head(x))
        if not _backend.is_reference(x.device.type, self.backend):
            return mosaic_conv3x3(features, self.tail[0].weight, self.tail[0].bias)
        return ops.rgb_to_packed_bayer(self.tail(features), "RGGB", backend=self.backend)


def gaussian_kernel(kernel_size: int = 21, sigma: float = 5.0, channels: int = 3) -> Tensor:
    """The official ``get_gaussian_kernel``'s weights, ``(channels, 1, k, k)`` float32: a normalised 2-D
    Gaussian of std ``sigma`` centred at ``(k - 1) / 2``, computed in float32 as the official code does.

    Example:
        >>> kernel = gaussian_kernel(21, 12.0, 3)  # CCM's fixed blur
        >>> kernel.shape, round(float(kernel[0].sum()), 6)
        (torch.Size([3, 1, 21, 21]), 1.0)
    """
    coords = torch.arange(kernel_size)
    grid = torch.stack(
        [
            coords.repeat(kernel_size).view(kernel_size, kernel_size),
            coords.repeat(kernel_size).view(kernel_size, kernel_size).t(),
        ],
        dim=-1,
    ).float()
    mean, variance = (kernel_size - 1) / 2.0, float(sigma) ** 2
    kernel = (1.0 / (2.0 * math.pi * variance)) * torch.exp(-torch.sum((grid - mean) ** 2.0, dim=-1) / (2 * variance))
    kernel = kernel / torch.sum(kernel)
    return kernel.view(1, 1, kernel_size, kernel_size).repeat(channels, 1, 1, 1)


def separable_blur(x: Tensor, kernel: Tensor) -> Tensor:
    """The depthwise ``(C, 1, k, k)`` Gaussian ``kernel`` (no padding) as a k-tap vertical then horizontal pass:
    2k instead of k^2 multiply-adds per pixel. The 1-D factor is the kernel's row sums, exact for the official
    kernel (a normalised outer(g, g)) up to its float32 rounding: results differ from the dense blur by ~1e-7
    of the image's range."""
    taps = kernel.sum(dim=3, keepdim=True)  # (C, 1, k, 1): g, the marginal of outer(g, g)
    channels = kernel.shape[0]
    return F.conv2d(F.conv2d(x, taps, groups=channels), taps.transpose(2, 3), groups=channels)


class CCM(nn.Module):
    """The official colour-correction branch: sRGB ``(N, 3, H, W)`` (H, W even, at least 11) -> features
    ``(N, 96, H/2, W/2)`` in (0, 1): reflect pad 10, the fixed 21x21 Gaussian blur (sigma 12, ``blur.weight``,
    not trained), a 3x3 conv, 2x2 max pool, 2 RRGs of 2 DABs, conv, PReLU, conv, sigmoid. 1,084,419 parameters
    (1,323 of them the blur). On the fused backends the blur runs separably (:func:`separable_blur`).

    Shape:
        - input: ``(N, 3, H, W)``, H and W even and at least 11
        - output: ``(N, 96, H/2, W/2)``

    Example:
        >>> CCM()(torch.rand(1, 3, 16, 16)).shape
        torch.Size([1, 96, 8, 8])
    """

    BLUR_SIZE, BLUR_SIGMA = 21, 12.0

    def __init__(self, *, backend: str | None = None):
        super().__init__()
        self.backend = backend
        act = nn.PReLU(96)
        self.head = nn.Sequential(default_conv(3, 96, 3))
        self.downsample = nn.Sequential(nn.MaxPool2d(kernel_size=2))
        self.body = nn.Sequential(*_residual_trunk(96, 2, 2, 8, act, backend))
        self.tail = nn.Sequential(default_conv(96, 96, 3), nn.Sigmoid())
        self.blur = nn.Conv2d(3, 3, self.BLUR_SIZE, groups=3, bias=False)
        self.blur.weight.data.copy_(gaussian_kernel(self.BLUR_SIZE, self.BLUR_SIGMA, 3))
        self.blur.weight.requires_grad = False
        self.pad = self.BLUR_SIZE // 2

    def forward(self, x: Tensor) -> Tensor:
        """The colour-correction features ``(N, 96, H/2, W/2)`` of the sRGB ``x``."""
        check_tensor(x, "x", shape_doc="(N, 3, H, W), H and W even", channels=3, even=True)
        if min(x.shape[-2:]) <= self.pad:
            raise ValueError(
                f"x must be larger than {self.pad} pixels in height and width (reflect padding), got {tuple(x.shape)}"
            )
        x = F.pad(x, (self.pad,) * 4, mode="reflect")
        if _backend.is_reference(x.device.type, self.backend):
            x = self.blur(x)
        else:
            x = separable_blur(x, self.blur.weight)
        return self.tail(self.body(self.downsample(self.head(x))))


class Raw2Rgb(nn.Module):
    """The official RAW2RGB branch: packed RGGB ``(N, 4, h, w)`` and CCM features ``(N, 96, h, w)`` -> sRGB
    ``(N, 3, 2h, 2w)`` (not clamped). The trunk's output y is modulated as ``y * ccm + y`` (a multiply, then an
    add, as the official code rounds it), then PReLU, conv + PReLU, a 1x1 conv to 12 channels and
    ``pixel_shuffle(2)``. ``conv1x1`` is kept for its checkpoint keys and never used, as in the official code.
    3,244,110 parameters.

    Shape:
        - x: ``(N, 4, h, w)`` packed RGGB; ccm_features: ``(N, 96, h, w)``
        - output: ``(N, 3, 2h, 2w)``

    Example:
        >>> srgb = torch.rand(1, 3, 16, 16)
        >>> Raw2Rgb()(Rgb2Raw()(srgb), CCM()(srgb)).shape
        torch.Size([1, 3, 16, 16])
    """

    def __init__(self, *, backend: str | None = None):
        super().__init__()
        act = nn.PReLU(96)
        self.head = nn.Sequential(default_conv(4, 96, 3))
        self.body = nn.Sequential(*_residual_trunk(96, 3, 5, 8, act, backend))
        self.tail = nn.Sequential(default_conv(96, 96, 3), act)
        self.tail_rgb = nn.Sequential(default_conv(96, 12, 1))
        self.conv1x1 = nn.Sequential(default_conv(192, 96, 1))

    def forward(self, x: Tensor, ccm_features: Tensor) -> Tensor:
        """The sRGB image ``(N, 3, 2h, 2w)`` of the packed RAW ``x``, coloured by ``ccm_features``."""
        check_tensor(x, "x", shape_doc="(N, 4, h, w) packed RGGB", channels=4)
        check_tensor(ccm_features, "ccm_features", shape_doc="(N, 96, h, w) like x", channels=96)
        if ccm_features.shape[0] != x.shape[0] or ccm_features.shape[-2:] != x.shape[-2:]:
            raise ValueError(
                f"ccm_features must be (N, 96, h, w) for x of shape {tuple(x.shape)}, got {tuple(ccm_features.shape)}"
            )
        y = self.head(x)
        for module in self.body[:-1]:
            y = module(y)
        y = y * ccm_features + y
        y = self.tail_rgb(self.tail(self.body[-1](y)))
        return F.pixel_shuffle(y, 2)


class DenoiseNet(nn.Module):
    """The official denoisers: 4 RRGs of 8 DABs, 64 features, reduction 16, global residual.

    ``DenoiseNet(raw=True)``: ``forward(noisy, variance)``, packed RGGB ``(N, 4, h, w)`` and its variance map
    ``(N, 4, h, w)`` -> ``noisy + tail(body(head(cat([noisy, variance]))))``, 2,838,404 parameters.
    ``DenoiseNet(raw=False)``: ``forward(noisy)``, sRGB ``(N, 3, H, W)`` -> ``noisy + ...``, 2,834,947
    parameters. Outputs are not clamped (the scripts clamp).

    ``n_feats``, ``num_rrg``, ``num_dab`` and ``reduction`` default to the official 64, 4, 8, 16; smaller values
    build the same architecture scaled down (e.g. for a quick demo on a CPU), whose checkpoints are not official.

    Shape:
        - raw: noisy, variance: ``(N, 4, h, w)``; sRGB: noisy ``(N, 3, H, W)``
        - output: noisy's shape

    Example:
        >>> srgb = DenoiseNet(raw=False)
        >>> sum(p.numel() for p in srgb.parameters())
        2834947
        >>> srgb(torch.rand(1, 3, 12, 12)).shape
        torch.Size([1, 3, 12, 12])
        >>> raw = DenoiseNet(raw=True, n_feats=16, num_rrg=1, num_dab=1, reduction=4)  # scaled down
        >>> noisy = torch.rand(2, 4, 8, 8)
        >>> raw(noisy, variance=0.01 * noisy + 1e-4).shape
        torch.Size([2, 4, 8, 8])
    """

    def __init__(
        self,
        raw: bool = True,
        *,
        n_feats: int = 64,
        num_rrg: int = 4,
        num_dab: int = 8,
        reduction: int = 16,
        backend: str | None = None,
    ):
        super().__init__()
        self.raw = raw
        channels = 4 if raw else 3
        act = nn.PReLU(n_feats)
        self.head = nn.Sequential(default_conv(2 * channels if raw else channels, n_feats, 3))
        self.body = nn.Sequential(*_residual_trunk(n_feats, num_rrg, num_dab, reduction, act, backend))
        self.tail = nn.Sequential(default_conv(n_feats, channels, 3))

    def forward(self, noisy: Tensor, variance: Tensor | None = None) -> Tensor:
        """The denoised image, noisy's shape; ``variance`` (noisy's shape) is required by the RAW denoiser only."""
        if self.raw:
            check_tensor(noisy, "noisy", shape_doc="(N, 4, h, w) packed RGGB", channels=4)
            if not isinstance(variance, Tensor) or variance.shape != noisy.shape:
                raise ValueError(
                    "variance must be the (N, 4, h, w) variance map of noisy (shot * x + read), got "
                    f"{getattr(variance, 'shape', variance)!r}"
                )
            inputs = torch.cat([noisy, variance], dim=1)
        else:
            check_tensor(noisy, "noisy", shape_doc="(N, 3, H, W) sRGB", channels=3)
            if variance is not None:
                raise ValueError("DenoiseNet(raw=False) takes no variance map")
            inputs = noisy
        return noisy + self.tail(self.body(self.head(inputs)))
