"""Tiled inference: run a network on overlapping tiles of a large image and stitch the results.

Tiles are ``tile x tile`` (smaller only where the image is), laid on a grid whose neighbours share at least
``2 * overlap`` pixels; the last tile of a row or column is moved back to end at the image's edge rather than
hanging over it. Each output pixel is taken from one tile: the one in whose centre it lies (the seam sits in the
middle of each shared band, so every kept pixel is at least ``overlap`` pixels away from a tile edge inside the
image). A function whose output pixel depends only on inputs within ``overlap`` pixels (a stack of convolutions
with that receptive-field radius) therefore gives exactly the untiled result. Networks with global statistics
(CycleISP's channel attention pools each tile, AINDNet's instance norms normalise over it) differ slightly from an
untiled run; keep tiles large for them.
"""

from __future__ import annotations

from typing import Callable

import torch.nn.functional as F
from torch import Tensor

from cycleisp_fast.checks import check_tensor


def _positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def tile_spans(extent: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """The tiles along one axis of ``extent`` pixels: ``(start, stop, keep_start, keep_stop)`` per tile, where
    ``[start, stop)`` is what the tile reads and ``[keep_start, keep_stop)`` the part of its output kept. The kept
    parts partition ``[0, extent)``; one tile ``(0, extent, 0, extent)`` when ``extent <= tile``."""
    if extent <= tile:
        return [(0, extent, 0, extent)]
    stride = tile - 2 * overlap
    count = -(-(extent - tile) // stride) + 1
    starts = [index * stride for index in range(count - 1)] + [extent - tile]
    cuts = [0] + [(left + tile + right) // 2 for left, right in zip(starts, starts[1:])] + [extent]
    return [(start, start + tile, cuts[index], cuts[index + 1]) for index, start in enumerate(starts)]


def tiled_apply(
    fn: Callable[[Tensor], Tensor], x: Tensor, *, tile: int = 512, overlap: int = 32, multiple: int = 1, scale: int = 1
) -> Tensor:
    """``fn(x)`` computed tile by tile.

    Args:
        fn: maps ``(N, C, h, w)`` to ``(N, C', scale * h, scale * w)``; called once per tile, on the whole batch.
        x: ``(N, C, H, W)`` floating tensor.
        tile: the tile's height and width in pixels of ``x``; must exceed ``2 * overlap``. An image no larger
            than ``tile`` is one call.
        overlap: the context each tile carries past the part of its output that is kept (see the module's
            docstring); neighbouring tiles share at least ``2 * overlap`` pixels.
        multiple: each tile is padded at its bottom and right (replicated edge pixels) to a multiple of this
            before ``fn`` sees it (a U-Net that halves the size three times needs 8), and its output cropped back.
        scale: the factor by which ``fn``'s output is larger than its input (2 for packed RAW -> sRGB).

    Returns:
        ``(N, C', scale * H, scale * W)``, in ``fn``'s dtype and on ``fn``'s device.
    """
    check_tensor(x, "x", shape_doc="(N, C, H, W)")
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    _positive_int(tile, "tile")
    _positive_int(overlap, "overlap", minimum=0)
    _positive_int(multiple, "multiple")
    _positive_int(scale, "scale")
    if tile <= 2 * overlap:
        raise ValueError(
            f"tile must be larger than 2 * overlap (each tile keeps its centre), got tile={tile} and overlap={overlap}"
        )
    height, width = x.shape[-2:]
    if x.shape[0] == 0 or height == 0 or width == 0:
        raise ValueError(f"x must be non-empty, got shape {tuple(x.shape)}")
    output = None
    for top, bottom, keep_top, keep_bottom in tile_spans(height, tile, overlap):
        for left, right, keep_left, keep_right in tile_spans(width, tile, overlap):
            piece = x[..., top:bottom, left:right]
            pad_h, pad_w = -piece.shape[-2] % multiple, -piece.shape[-1] % multiple
            if pad_h or pad_w:
                piece = F.pad(piece, (0, pad_w, 0, pad_h), mode="replicate")
            result = fn(piece)
            expected = (x.shape[0], scale * piece.shape[-2], scale * piece.shape[-1])
            if not isinstance(result, Tensor) or result.dim() != 4 or (result.shape[0], *result.shape[-2:]) != expected:
                got = tuple(result.shape) if isinstance(result, Tensor) else type(result).__name__
                raise ValueError(
                    f"fn must map (N, C, h, w) to (N, C', {scale}h, {scale}w): for a tile of shape "
                    f"{tuple(piece.shape)} it returned {got}"
                )
            if output is None:
                output = result.new_empty(x.shape[0], result.shape[1], scale * height, scale * width)
            elif result.shape[1] != output.shape[1]:
                raise ValueError(
                    f"fn returned {result.shape[1]} channels for one tile and {output.shape[1]} for another"
                )
            output[..., scale * keep_top : scale * keep_bottom, scale * keep_left : scale * keep_right] = result[
                ...,
                scale * (keep_top - top) : scale * (keep_bottom - top),
                scale * (keep_left - left) : scale * (keep_right - left),
            ]
    return output
