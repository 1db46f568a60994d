"""Bayer ops: mosaic (RGB -> CFA), pack (CFA -> 4 planes), unpack, and RGB straight to packed planes.

All four are one registered operator, ``cycleisp_fast::bayer_remap`` (native C++/CUDA) and its Triton twin
``cycleisp_fast::bayer_remap_triton``: a remap between three layouts of the same CFA grid, ``"rgb"``
``(N, 3, H, W)``, ``"cfa"`` ``(N, 1, H, W)`` and ``"packed"`` ``(N, 4, H/2, W/2)``. The backward of a remap
is the remap the other way (into ``"rgb"`` it writes zeros at the colours a site does not keep), so the
backward is the same fused kernel. Packed planes are always (R, Gr, Gb, B), Gr the green on the red row.
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Union

import numpy as np
import torch

from cycleisp_fast._dtypes import accumulation_dtype
from cycleisp_fast.checks import check_choice, check_tensor
from cycleisp_fast.ops.registration import FusedOp, Kernels
from cycleisp_fast.reference import bayer as reference

PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")
LAYOUT_CHANNELS = {"rgb": 3, "cfa": 1, "packed": 4}
OP_NAME = "bayer_remap"

Level = Union[float, Sequence[float], torch.Tensor, None]


def full_resolution(src: torch.Tensor, src_layout: str) -> tuple[int, int]:
    """(H, W) of the CFA grid behind ``src`` in ``src_layout``."""
    height, width = src.shape[2], src.shape[3]
    return (2 * height, 2 * width) if src_layout == "packed" else (height, width)


def remap_output(src: torch.Tensor, src_layout: str, dst_layout: str) -> torch.Tensor:
    """An empty tensor of the remap's output shape and dtype (float32 for integer RAW input)."""
    height, width = full_resolution(src, src_layout)
    if dst_layout == "packed":
        height, width = height // 2, width // 2
    dtype = src.dtype if src.is_floating_point() else torch.float32
    return src.new_empty((src.shape[0], LAYOUT_CHANNELS[dst_layout], height, width), dtype=dtype)


@torch.library.custom_op("cycleisp_fast::bayer_remap_triton", mutates_args=())
def _bayer_remap_triton(
    src: torch.Tensor,
    src_layout: str,
    dst_layout: str,
    pattern: str,
    black: Optional[List[float]] = None,
    white: Optional[List[float]] = None,
) -> torch.Tensor:
    from cycleisp_fast.triton_kernels import bayer as kernels

    dst = remap_output(src, src_layout, dst_layout)
    kernels.bayer_remap(
        src.contiguous(),
        dst,
        src_layout,
        dst_layout,
        pattern.index("R"),
        black,
        white,
        *full_resolution(src, src_layout),
    )
    return dst


def _fake_remap(src, src_layout, dst_layout, pattern, black=None, white=None):
    return remap_output(src, src_layout, dst_layout)


def _setup_context(ctx, inputs, output):
    src, ctx.src_layout, ctx.dst_layout, ctx.pattern, black, white = inputs
    ctx.levels = None
    if black is not None:
        # d/dx of (x - black) / (white - black) is 1 / (white - black): the reverse remap with levels
        # (0, white - black), the span rounded as the forward's compute dtype rounds it.
        acc_dtype = np.float64 if accumulation_dtype(src.dtype) == torch.float64 else np.float32
        span = np.asarray(white, dtype=acc_dtype) - np.asarray(black, dtype=acc_dtype)
        ctx.levels = ([0.0] * 4, span.tolist())


def _make_backward(kernels: Kernels):
    def backward(ctx, grad):
        black, white = ctx.levels if ctx.levels is not None else (None, None)
        grad_src = kernels.forward(grad.contiguous(), ctx.dst_layout, ctx.src_layout, ctx.pattern, black, white)
        return grad_src, None, None, None, None, None

    return backward


BAYER_REMAP = FusedOp(OP_NAME, fake=_fake_remap, setup_context=_setup_context, make_backward=_make_backward)


LEVEL_LIMIT = 2.0**60
"""Black and white levels lie within ±LEVEL_LIMIT, and white - black >= 1 / LEVEL_LIMIT: so that the levels, their
range and its reciprocal are ordinary float32 numbers on every backend (no overflow to inf or NaN)."""


def _level_values(level, name: str, device: torch.device) -> list[float]:
    """A scalar, 4 values (R, Gr, Gb, B) or a tensor of either -> 4 Python floats."""
    if isinstance(level, torch.Tensor):
        if level.device != device and level.device.type != "cpu":
            raise ValueError(
                f"{name} is on {level.device} but the image is on {device}; pass it on the CPU or as floats"
            )
        level = level.detach().double().flatten().tolist()
        level = level[0] if len(level) == 1 else level
    if isinstance(level, (int, float)):
        values = [float(level)] * 4
    elif isinstance(level, Sequence) and not isinstance(level, str) and len(level) == 4:
        values = [float(v) for v in level]
    else:
        raise ValueError(f"{name} must be a number or 4 numbers (R, Gr, Gb, B), got {level!r}")
    if not all(math.isfinite(v) and abs(v) <= LEVEL_LIMIT for v in values):
        raise ValueError(f"{name} must be finite and within ±2^60 (float32 computes with it), got {values}")
    return values


def _levels(black_level: Level, white_level: Level, device: torch.device):
    if black_level is None and white_level is None:
        return None, None
    if black_level is None or white_level is None:
        raise ValueError("black_level and white_level must be given together (or neither)")
    black = _level_values(black_level, "black_level", device)
    white = _level_values(white_level, "white_level", device)
    if any(not w - b >= 1 / LEVEL_LIMIT for b, w in zip(black, white)):
        raise ValueError(
            f"white_level must exceed black_level by at least 2^-60 in every channel (the range is "
            f"divided by in float32), got black={black}, white={white}"
        )
    return black, white


def _run(src, src_layout, dst_layout, pattern, black, white, backend, reference_fn):
    impl = BAYER_REMAP.resolve(src.device.type, backend)
    if impl == "reference":
        return reference_fn()
    return BAYER_REMAP.kernel(impl)(src, src_layout, dst_layout, pattern, black, white)


def bayer_mosaic(rgb: torch.Tensor, pattern: str = "RGGB", *, backend: str | None = None) -> torch.Tensor:
    """Samples an RGB image through a Bayer colour filter array.

    Args:
        rgb: ``(N, 3, H, W)`` floating image, H and W even.
        pattern: colours of the top-left 2x2 block, row by row: ``"RGGB" | "BGGR" | "GRBG" | "GBRG"``.
        backend: overrides the backend in force (see :mod:`cycleisp_fast.backend`).

    Returns:
        ``(N, 1, H, W)`` CFA image of rgb's dtype.

    Shape:
        - rgb: ``(N, 3, H, W)``, H and W even
        - output: ``(N, 1, H, W)``

    Example:
        >>> rgb = torch.rand(2, 3, 4, 6)
        >>> cfa = bayer_mosaic(rgb, "RGGB")
        >>> cfa.shape
        torch.Size([2, 1, 4, 6])
        >>> bool(cfa[0, 0, 0, 0] == rgb[0, 0, 0, 0]), bool(cfa[0, 0, 1, 1] == rgb[0, 2, 1, 1])  # R, then B
        (True, True)
    """
    check_tensor(rgb, "rgb", shape_doc="(N, 3, H, W)", channels=3, even=True)
    check_choice(pattern, "pattern", PATTERNS)
    return _run(rgb, "rgb", "cfa", pattern, None, None, backend, lambda: reference.bayer_mosaic(rgb, pattern))


def bayer_pack(
    cfa: torch.Tensor,
    pattern: str = "RGGB",
    black_level: Level = None,
    white_level: Level = None,
    *,
    backend: str | None = None,
) -> torch.Tensor:
    """Packs a CFA image into four half-resolution planes (R, Gr, Gb, B), whatever its pattern.

    Args:
        cfa: ``(N, 1, H, W)`` CFA image, H and W even: floating, or uint8/int16/uint16/int32 RAW samples.
        pattern: colours of the top-left 2x2 block: ``"RGGB" | "BGGR" | "GRBG" | "GBRG"``.
        black_level: optional, given with ``white_level``: a number or 4 numbers (R, Gr, Gb, B), or a tensor of
            them; the output is then ``(x - black) / (white - black)`` (not clipped), computed in float32
            (float64 for float64 input).
        white_level: optional, given with ``black_level``, in the same forms.
        backend: overrides the backend in force (see :mod:`cycleisp_fast.backend`).

    Returns:
        ``(N, 4, H/2, W/2)``, cfa's dtype (float32 for integer input).

    Shape:
        - cfa: ``(N, 1, H, W)``, H and W even
        - output: ``(N, 4, H/2, W/2)``, planes in (R, Gr, Gb, B) order for every pattern

    Example:
        >>> raw = torch.tensor([[[[600, 1000], [2000, 4095]]]], dtype=torch.uint16)  # one BGGR block
        >>> bayer_pack(raw, "BGGR", black_level=512, white_level=4095).flatten()  # R, Gr (on the R row), Gb, B
        tensor([1.0000, 0.4153, 0.1362, 0.0246])
    """
    check_tensor(cfa, "cfa", shape_doc="(N, 1, H, W)", channels=1, even=True, integer_ok=True)
    check_choice(pattern, "pattern", PATTERNS)
    black, white = _levels(black_level, white_level, cfa.device)
    return _run(
        cfa, "cfa", "packed", pattern, black, white, backend, lambda: reference.bayer_pack(cfa, pattern, black, white)
    )


def bayer_unpack(packed: torch.Tensor, pattern: str = "RGGB", *, backend: str | None = None) -> torch.Tensor:
    """The exact inverse of :func:`bayer_pack` without levels: ``(N, 4, h, w)`` (R, Gr, Gb, B) -> ``(N, 1, 2h, 2w)``.

    Args:
        packed: ``(N, 4, h, w)`` floating planes R, Gr, Gb, B.
        pattern: colours of the top-left 2x2 block of the output: ``"RGGB" | "BGGR" | "GRBG" | "GBRG"``.
        backend: overrides the backend in force (see :mod:`cycleisp_fast.backend`).

    Returns:
        ``(N, 1, 2h, 2w)`` CFA image of packed's dtype.

    Shape:
        - packed: ``(N, 4, h, w)``
        - output: ``(N, 1, 2h, 2w)``

    Example:
        >>> cfa = torch.rand(1, 1, 4, 4)
        >>> torch.equal(bayer_unpack(bayer_pack(cfa, "GRBG"), "GRBG"), cfa)
        True
    """
    check_tensor(packed, "packed", shape_doc="(N, 4, h, w)", channels=4)
    check_choice(pattern, "pattern", PATTERNS)
    return _run(packed, "packed", "cfa", pattern, None, None, backend, lambda: reference.bayer_unpack(packed, pattern))


def rgb_to_packed_bayer(rgb: torch.Tensor, pattern: str = "RGGB", *, backend: str | None = None) -> torch.Tensor:
    """RGB straight to packed planes in one pass (CycleISP's ``mosaic``): ``bayer_pack(bayer_mosaic(rgb))``.

    Args:
        rgb: ``(N, 3, H, W)`` floating image, H and W even.
        pattern: the colour filter array sampled: ``"RGGB" | "BGGR" | "GRBG" | "GBRG"``.
        backend: overrides the backend in force (see :mod:`cycleisp_fast.backend`).

    Returns:
        ``(N, 4, H/2, W/2)`` planes (R, Gr, Gb, B) of rgb's dtype.

    Shape:
        - rgb: ``(N, 3, H, W)``, H and W even
        - output: ``(N, 4, H/2, W/2)``

    Example:
        >>> rgb = torch.rand(2, 3, 8, 8)
        >>> torch.equal(rgb_to_packed_bayer(rgb, "BGGR"), bayer_pack(bayer_mosaic(rgb, "BGGR"), "BGGR"))
        True
    """
    check_tensor(rgb, "rgb", shape_doc="(N, 3, H, W)", channels=3, even=True)
    check_choice(pattern, "pattern", PATTERNS)
    return _run(rgb, "rgb", "packed", pattern, None, None, backend, lambda: reference.rgb_to_packed_bayer(rgb, pattern))
