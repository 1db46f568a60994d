"""CycleISP's attention blocks, drop-in for the official modules (same constructor arguments, same
state-dict keys): :class:`ChannelAttention` (``CALayer``), :class:`SpatialAttention` (``spatial_attn_layer``),
:class:`DAB` and :class:`RRG`.

A :class:`DAB` runs its body (conv, act, conv) with PyTorch's convs and its whole attention tail, ``conv1x1(cat(
[SA(res), CA(res)])) + x``, as the one fused op :func:`cycleisp_fast.ops.dual_attention`; its ``SA``, ``CA`` and
``conv1x1`` submodules only hold the parameters. ``backend="reference"`` (per module, or globally) runs the
official computation instead.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from cycleisp_fast import ops
from cycleisp_fast.checks import check_backend_argument
from cycleisp_fast.reference import dual_attention as reference


def default_conv(
    in_channels: int, out_channels: int, kernel_size: int, bias: bool = True, padding: int = 1, stride: int = 1
) -> nn.Conv2d:
    """The official ``conv`` factory: a Conv2d with zero padding ``kernel_size // 2`` ("same" at stride 1). As
    in the official code, ``padding`` is accepted and ignored.

    Example:
        >>> default_conv(64, 32, 3)
        Conv2d(64, 32, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))
    """
    del padding
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias, stride=stride)


class ChannelAttention(nn.Module):
    """The official ``CALayer``: ``x * sigmoid(W2 relu(W1 avgpool(x) + b1) + b2)``, per (sample, channel).

    Args:
        channel: C.
        reduction: r, the MLP's hidden width is ``C // r`` (CycleISP: 8 in the ISP networks, 16 in the denoisers).

    Keys: ``conv_du.0.weight (C/r, C, 1, 1)``, ``conv_du.0.bias``, ``conv_du.2.weight (C, C/r, 1, 1)``,
    ``conv_du.2.bias``.

    Shape:
        - input: ``(N, C, H, W)``
        - output: ``(N, C, H, W)``

    Example:
        >>> ca = ChannelAttention(64, 16)
        >>> [tuple(p.shape) for p in ca.mlp_parameters()]
        [(4, 64, 1, 1), (4,), (64, 4, 1, 1), (64,)]
        >>> ca(torch.randn(2, 64, 8, 8)).shape
        torch.Size([2, 64, 8, 8])
    """

    def __init__(self, channel: int, reduction: int = 16):
        super().__init__()
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in (channel, reduction)):
            raise ValueError(
                f"channel and reduction must be ints >= 1, got channel={channel!r}, reduction={reduction!r}"
            )
        if channel // reduction < 1:
            raise ValueError(f"channel // reduction must be at least 1, got channel={channel}, reduction={reduction}")
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_du = nn.Sequential(
            nn.Conv2d(channel, channel // reduction, 1, padding=0, bias=True),
            nn.ReLU(inplace=True),
            nn.Conv2d(channel // reduction, channel, 1, padding=0, bias=True),
            nn.Sigmoid(),
        )

    def mlp_parameters(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(ca_w1, ca_b1, ca_w2, ca_b2)`` as :func:`cycleisp_fast.ops.dual_attention` takes them."""
        return self.conv_du[0].weight, self.conv_du[0].bias, self.conv_du[2].weight, self.conv_du[2].bias

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, H, W)`` -> ``(N, C, H, W)``."""
        return x * reference.channel_attention_scale(x, *self.mlp_parameters())


class BasicConv(nn.Module):
    """The official ``BasicConv``: a Conv2d (no bias by default), optional BatchNorm and ReLU. Keys:
    ``conv.weight`` (and ``bn.*`` with ``bn=True``).

    Shape:
        - input: ``(N, in_planes, H, W)``
        - output: ``(N, out_planes, H', W')``, as the Conv2d gives them

    Example:
        >>> BasicConv(2, 1, 3, padding=1, relu=False)(torch.randn(1, 2, 5, 5)).shape
        torch.Size([1, 1, 5, 5])
    """

    def __init__(
        self,
        in_planes: int,
        out_planes: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        groups: int = 1,
        relu: bool = True,
        bn: bool = False,
        bias: bool = False,
    ):
        super().__init__()
        self.out_channels = out_planes
        self.conv = nn.Conv2d(
            in_planes,
            out_planes,
            kernel_size=kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=bias,
        )
        self.bn = nn.BatchNorm2d(out_planes, eps=1e-5, momentum=0.01, affine=True) if bn else None
        self.relu = nn.ReLU() if relu else None

    def forward(self, x: Tensor) -> Tensor:
        """Conv, then BatchNorm and ReLU where enabled."""
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return x if self.relu is None else self.relu(x)


class ChannelPool(nn.Module):
    """The official ``ChannelPool``: ``(N, C, H, W)`` -> ``(N, 2, H, W)``, channel max then channel mean.

    Shape:
        - input: ``(N, C, H, W)``
        - output: ``(N, 2, H, W)``

    Example:
        >>> x = torch.randn(1, 8, 4, 4)
        >>> pooled = ChannelPool()(x)
        >>> torch.equal(pooled[:, 0], x.max(1).values), torch.allclose(pooled[:, 1], x.mean(1))
        (True, True)
    """

    def forward(self, x: Tensor) -> Tensor:
        """``[max_c x, mean_c x]``."""
        return reference.channel_pool(x)


class SpatialAttention(nn.Module):
    """The official ``spatial_attn_layer``: ``x * sigmoid(conv_kxk([max_c x, mean_c x]))``, one scale per pixel
    (no bias, no BatchNorm, no ReLU). CycleISP uses ``kernel_size=3``, the only size the fused DAB tail takes.
    Key: ``spatial.conv.weight (1, 2, k, k)``.

    Shape:
        - input: ``(N, C, H, W)``
        - output: ``(N, C, H, W)``

    Example:
        >>> SpatialAttention()(torch.randn(2, 16, 6, 6)).shape
        torch.Size([2, 16, 6, 6])
    """

    def __init__(self, kernel_size: int = 3):
        super().__init__()
        self.compress = ChannelPool()
        self.spatial = BasicConv(2, 1, kernel_size, stride=1, padding=(kernel_size - 1) // 2, relu=False)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, H, W)`` -> ``(N, C, H, W)``."""
        return x * torch.sigmoid(self.spatial(self.compress(x)))


class DAB(nn.Module):
    """The official Dual Attention Block: ``res = body(x)`` (conv, act, conv), then
    ``conv1x1(cat([SA(res), CA(res)])) + x`` fused (:func:`cycleisp_fast.ops.dual_attention`).

    The arguments are the official ones, in the same order and with the same defaults.

    Args:
        conv: the conv factory, called as ``conv(n_feat, n_feat, kernel_size, bias=bias)`` (:func:`default_conv`).
        n_feat: C.
        kernel_size: the body convs' size.
        reduction: the CA reduction r.
        bias: whether the body convs have a bias.
        bn: a BatchNorm2d after each body conv (never used by CycleISP).
        act: the activation module between the body convs. Pass the network's one shared PReLU, as the
            official networks do: the same module object appears in every DAB.
        backend: the tail op's backend (see :mod:`cycleisp_fast.backend`); None follows the one in force.

    Keys, in the official order: ``SA.spatial.conv.weight``, ``CA.conv_du.{0,2}.{weight,bias}``,
    ``body.{0,2}.{weight,bias}`` (``body.1.*`` is the act's), ``conv1x1.{weight,bias}``.

    Shape:
        - input: ``(N, C, H, W)``, any memory format (channels_last stays channels_last)
        - output: ``(N, C, H, W)``

    Example:
        >>> act = torch.nn.PReLU(32)
        >>> dab = DAB(default_conv, 32, 3, 16, act=act)  # the fused tail
        >>> official = DAB(default_conv, 32, 3, 16, act=act, backend="reference")  # the official computation
        >>> _ = official.load_state_dict(dab.state_dict())
        >>> x = torch.randn(1, 32, 10, 10)
        >>> torch.allclose(dab(x), official(x), atol=1e-5)
        True
    """

    def __init__(
        self,
        conv: Callable[..., nn.Module],
        n_feat: int,
        kernel_size: int,
        reduction: int,
        bias: bool = True,
        bn: bool = False,
        act: nn.Module | None = None,
        *,
        backend: str | None = None,
    ):
        super().__init__()
        act = nn.ReLU(True) if act is None else act
        body: list[nn.Module] = []
        for i in range(2):
            body.append(conv(n_feat, n_feat, kernel_size, bias=bias))
            if bn:
                body.append(nn.BatchNorm2d(n_feat))
            if i == 0:
                body.append(act)
        self.SA = SpatialAttention()
        self.CA = ChannelAttention(n_feat, reduction)
        self.body = nn.Sequential(*body)
        self.conv1x1 = nn.Conv2d(n_feat * 2, n_feat, kernel_size=1)
        self.backend = check_backend_argument(backend)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, H, W)`` -> ``(N, C, H, W)``."""
        return ops.dual_attention(
            self.body(x),
            x,
            self.SA.spatial.conv.weight,
            *self.CA.mlp_parameters(),
            self.conv1x1.weight,
            self.conv1x1.bias,
            backend=self.backend,
        )

    def extra_repr(self) -> str:
        """The backend shown by ``repr``, when one is set."""
        return f"backend={self.backend!r}" if self.backend else ""


class RRG(nn.Module):
    """The official Recursive Residual Group: ``x + conv(DAB_D(... DAB_1(x)))``.

    Args:
        conv: the conv factory (:func:`default_conv`).
        n_feat: C.
        kernel_size: the convs' size.
        reduction: the CA reduction r of every DAB.
        act: the activation module shared by every DAB (every DAB gets ``bias=True, bn=False``).
        num_dab: D, the number of DABs.
        backend: goes to every DAB; None follows the backend in force.

    Keys: ``body.{0..D-1}.<DAB keys>``, ``body.D.{weight,bias}``.

    Shape:
        - input: ``(N, C, H, W)``
        - output: ``(N, C, H, W)``

    Example:
        >>> rrg = RRG(default_conv, 32, 3, 16, act=torch.nn.PReLU(32), num_dab=2)
        >>> len(rrg.body), rrg(torch.randn(1, 32, 8, 8)).shape
        (3, torch.Size([1, 32, 8, 8]))
    """

    def __init__(
        self,
        conv: Callable[..., nn.Module],
        n_feat: int,
        kernel_size: int,
        reduction: int,
        act: nn.Module,
        num_dab: int,
        *,
        backend: str | None = None,
    ):
        super().__init__()
        blocks: list[nn.Module] = [
            DAB(conv, n_feat, kernel_size, reduction, bias=True, bn=False, act=act, backend=backend)
            for _ in range(num_dab)
        ]
        blocks.append(conv(n_feat, n_feat, kernel_size))
        self.body = nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, H, W)`` -> ``(N, C, H, W)``."""
        return self.body(x) + x
