"""Triton kernel of the Bayer remap (see csrc/ops/bayer_math.h for the layouts and site formulas).

One program handles BLOCK block columns of one full-resolution row (n, y): the even site (dx = 0) and the
odd site (dx = 1) of each 2x2 block, and the zeros of an RGB destination.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from cycleisp_fast._dtypes import accumulation_dtype

LAYOUT_CODES = {"rgb": 0, "cfa": 1, "packed": 2}
BLOCK = 256


@triton.jit
def _site_offsets(LAYOUT: tl.constexpr, n, y, dx, channel, bx, H, W):
    """Element offsets of sites (n, y, 2*bx + dx) in a contiguous tensor of LAYOUT."""
    if LAYOUT == 2:  # packed (N, 4, H/2, W/2)
        offsets = ((n * 4 + channel) * (H // 2) + y // 2) * (W // 2) + bx
    elif LAYOUT == 0:  # rgb (N, 3, H, W)
        offsets = ((n * 3 + (channel + 1) // 2) * H + y) * W + dx + 2 * bx
    else:  # cfa (N, 1, H, W)
        offsets = (n * H + y) * W + dx + 2 * bx
    return offsets


@triton.jit
def _normalise(value, black, white, out_dtype: tl.constexpr):
    """(value - black) / (white - black) in the levels' dtype (IEEE division), rounded once to out_dtype."""
    value = value.to(black.dtype) - black
    if black.dtype == tl.float64:
        value = value / (white - black)
    else:
        value = tl.math.div_rn(value, white - black)
    if out_dtype == tl.bfloat16:
        value = value.to(tl.bfloat16, fp_downcast_rounding="rtne")
    return value


@triton.jit
def bayer_remap_kernel(
    src_ptr,
    dst_ptr,
    black_ptr,
    white_ptr,
    H,
    W,
    red_site,
    SRC: tl.constexpr,
    DST: tl.constexpr,
    LEVELS: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """One program: BLOCK 2x2-block columns of full-resolution row (n, y), from the SRC layout to the DST layout.

    Both sites of each block in that row are moved (the channel of a site is its RGGB index XOR ``red_site``),
    normalised with that channel's black and white levels when LEVELS; an rgb DST also gets the site's other two
    colours zeroed.
    """
    block_columns = W // 2
    programs_per_row = tl.cdiv(block_columns, BLOCK)
    pid = tl.program_id(0).to(tl.int64)
    row = pid // programs_per_row
    bx = (pid % programs_per_row) * BLOCK + tl.arange(0, BLOCK)
    mask = bx < block_columns
    n = row // H
    y = row % H
    dy = y % 2
    for dx in tl.static_range(2):
        channel = (dy * 2 + dx) ^ red_site
        value = tl.load(src_ptr + _site_offsets(SRC, n, y, dx, channel, bx, H, W), mask=mask)
        if LEVELS:
            value = _normalise(
                value, tl.load(black_ptr + channel), tl.load(white_ptr + channel), dst_ptr.dtype.element_ty
            )
        dst_offsets = _site_offsets(DST, n, y, dx, channel, bx, H, W)
        tl.store(dst_ptr + dst_offsets, value.to(dst_ptr.dtype.element_ty), mask=mask)
        if DST == 0:  # an rgb destination: the other two colours at this site are 0
            colour = (channel + 1) // 2
            zeros = tl.zeros([BLOCK], dtype=dst_ptr.dtype.element_ty)
            plane = H * W
            tl.store(dst_ptr + dst_offsets + (((colour + 1) % 3) - colour) * plane, zeros, mask=mask)
            tl.store(dst_ptr + dst_offsets + (((colour + 2) % 3) - colour) * plane, zeros, mask=mask)


def bayer_remap(
    src: torch.Tensor,
    dst: torch.Tensor,
    src_layout: str,
    dst_layout: str,
    red_site: int,
    black: list[float] | None,
    white: list[float] | None,
    full_height: int,
    full_width: int,
) -> None:
    """Writes the remap of contiguous ``src`` into the preallocated contiguous ``dst``."""
    batch = src.shape[0]
    if dst.numel() == 0:
        return
    level_dtype = accumulation_dtype(dst.dtype)
    levels = black is not None
    black_t = torch.tensor(black if levels else [0.0] * 4, dtype=level_dtype, device=src.device)
    white_t = torch.tensor(white if levels else [1.0] * 4, dtype=level_dtype, device=src.device)
    grid = (batch * full_height * triton.cdiv(full_width // 2, BLOCK),)
    bayer_remap_kernel[grid](
        src,
        dst,
        black_t,
        white_t,
        full_height,
        full_width,
        red_site,
        SRC=LAYOUT_CODES[src_layout],
        DST=LAYOUT_CODES[dst_layout],
        LEVELS=levels,
        BLOCK=BLOCK,
    )
