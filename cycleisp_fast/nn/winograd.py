"""``WinogradConv2d``: an ``nn.Conv2d`` (3x3, stride 1, padding 1) whose CPU float32 inference runs Winograd
F(4x4, 3x3) (:mod:`cycleisp_fast.ops.winograd`), and :func:`use_winograd`, which puts it in a model where it pays.

It is a ``Conv2d``: same parameters, same state-dict keys, same result within float rounding (see the op's
accuracy note), in inference and in training (:func:`cycleisp_fast.ops.winograd.conv3x3`: forward, input and
weight gradients by Winograd). It computes with ``F.conv2d`` wherever Winograd does not apply: on other devices or
dtypes, under CPU autocast, for empty inputs, or without the compiled extension. The transformed weight is
recomputed when the weight changes (loading, an optimizer step, ``.to()``), detected by the weight's version
counter and data pointer, into the same buffer (training writes it once per optimizer step); the input
gradient's transformed kernels go to a second buffer of the module. So one module is not to be called from two
threads at once with gradients.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cycleisp_fast.ops import winograd

MIN_CHANNELS = 16
"""Winograd pays from 16 input and 16 output channels on (``python scripts/bench_winograd.py``: at 256x256,
16 -> 16 channels is 1.0-1.1x oneDNN's channels_last convolution, 32 -> 32 1.7x and 64 -> 64 1.9-2.3x
faster; 8 -> 8 channels 9x slower)."""


def winograd_applies(conv: nn.Module) -> bool:
    """Whether ``conv`` is a plain 3x3 convolution that Winograd runs faster: stride 1, padding 1 (zeros),
    no dilation or groups, at least :data:`MIN_CHANNELS` input and output channels.

    Example:
        >>> winograd_applies(nn.Conv2d(64, 64, 3, padding=1)), winograd_applies(nn.Conv2d(3, 64, 3, padding=1))
        (True, False)
    """
    return (
        type(conv) is nn.Conv2d
        and conv.kernel_size == (3, 3)
        and conv.stride == (1, 1)
        and conv.padding == (1, 1)
        and conv.dilation == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
        and conv.in_channels >= MIN_CHANNELS
        and conv.out_channels >= MIN_CHANNELS
    )


class WinogradConv2d(nn.Conv2d):
    """A 3x3 ``nn.Conv2d`` (stride 1, padding 1) computed by Winograd F(4x4, 3x3) for CPU float32 inference.

    Build it from an existing convolution with :meth:`from_conv` (shares its parameters) or as a ``Conv2d``.

    Shape:
        - input: ``(N, C, H, W)``
        - output: ``(N, K, H, W)``; channels_last from the Winograd path

    Example:
        >>> conv = nn.Conv2d(16, 16, 3, padding=1)
        >>> fast = WinogradConv2d.from_conv(conv)
        >>> x = torch.randn(1, 16, 10, 10)
        >>> with torch.no_grad():
        ...     torch.allclose(fast(x), conv(x), rtol=1e-4, atol=1e-5)
        True
        >>> list(fast.state_dict()) == list(conv.state_dict())
        True
    """

    winograd_weight: Tensor

    def __init__(self, in_channels: int, out_channels: int, kernel_size=3, stride=1, padding=1, **kwargs):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, **kwargs)
        if not winograd_applies(nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, **kwargs)):
            raise ValueError(
                "WinogradConv2d is a 3x3 convolution with stride 1, padding 1 (zeros), no dilation or groups and at "
                f"least {MIN_CHANNELS} input and output channels; got {in_channels} -> {out_channels}, "
                f"kernel_size={kernel_size}, stride={stride}, padding={padding}, {kwargs}"
            )
        self.register_buffer("winograd_weight", torch.empty(0), persistent=False)
        self._transformed_from: Tensor | None = None  # the weight transformed last (holding its storage)
        self._transformed_version = -1
        self._flipped: Tensor | None = None
        self.register_load_state_dict_post_hook(lambda module, _incompatible: module.refresh())

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> "WinogradConv2d":
        """A ``WinogradConv2d`` sharing ``conv``'s weight and bias (``conv`` must satisfy :func:`winograd_applies`)."""
        if not winograd_applies(conv):
            raise ValueError(f"from_conv: Winograd does not apply to {conv} (see winograd_applies)")
        fast = cls(conv.in_channels, conv.out_channels, bias=conv.bias is not None, device="meta")
        fast.weight = conv.weight
        fast.bias = conv.bias
        fast.train(conv.training)
        fast.refresh()
        return fast

    def _fast_path(self, x: Tensor) -> bool:
        """Float32 on the CPU, not empty, not under CPU autocast (which wants its own dtype), extension loaded."""
        return (
            x.dim() == 4
            and x.numel() > 0
            and x.device.type == "cpu"
            and x.dtype == self.weight.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu")
            and winograd.available()
        )

    def _wants_gradients(self, x: Tensor) -> bool:
        parameters = (self.weight,) if self.bias is None else (self.weight, self.bias)
        return torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in parameters))

    def refresh(self) -> None:
        """Transforms the weight again if it changed since the last transform (or was never transformed). Called
        by every eager call, after ``load_state_dict``, and needed only after changing the weight in place
        while a ``torch.compile``-d caller runs (a compiled graph does not look)."""
        weight, source = self.weight, self._transformed_from
        # The source holds the storage it was transformed from, so no other weight can share its address.
        if (
            source is None
            or source.data_ptr() != weight.data_ptr()
            or source.dtype != weight.dtype
            or self._transformed_version != weight._version
        ):
            # In place where the buffer fits (training: one transform per optimizer step, no fresh allocation).
            reuse = self.winograd_weight.shape == (winograd.POINTS, self.in_channels, self.out_channels) and (
                weight.device.type == "cpu" and weight.dtype == torch.float32 and winograd.available()
            )
            self.winograd_weight = winograd.transform_weight(weight, out=self.winograd_weight if reuse else None)
            self._transformed_from = weight.detach()
            self._transformed_version = weight._version

    def forward(self, x: Tensor) -> Tensor:
        """``F.conv2d(x, weight, bias, padding=1)``; by Winograd where it applies (see the class docstring)."""
        if not self._fast_path(x):
            return super().forward(x)
        if not torch.compiler.is_compiling():
            self.refresh()
        if self._wants_gradients(x):
            if self._flipped is None:  # the input gradient's transformed kernels, rewritten by every backward
                self._flipped = torch.empty(winograd.POINTS, self.out_channels, self.in_channels)
            return winograd.conv3x3(x, self.weight, self.bias, self.winograd_weight, self._flipped)
        return winograd.winograd_conv3x3(x, self.winograd_weight, self.bias)


def use_winograd(model: nn.Module) -> int:
    """Replaces, in place, every ``nn.Conv2d`` of ``model`` where :func:`winograd_applies` by a
    :class:`WinogradConv2d` sharing its parameters (state-dict keys unchanged); returns how many.

    Shape:
        - the model's inputs and outputs are unchanged; the swapped convolutions return channels_last

    Example:
        >>> model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1))
        >>> use_winograd(model), type(model[2]).__name__
        (1, 'WinogradConv2d')
    """
    count = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if winograd_applies(child):
                setattr(module, name, WinogradConv2d.from_conv(child))
                count += 1
    return count
