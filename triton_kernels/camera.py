"""Triton kernels of the camera ops (see csrc/ops/camera_math.h for the per-site formulas, which these follow
operation for operation).

One program handles BLOCK sites of one full-resolution row (n, y): ``camera_mosaic`` reads the three linear sRGB
values of each site and writes its packed plane; ``camera_demosaic`` reads the site's 3x3 neighbourhood of the
mosaic (reflect borders) and writes the three linear sRGB values.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 256
HIGHLIGHT_INFLECTION = tl.constexpr(0.9)


# propagate_nan=ALL: NaN in, NaN out, as torch.clamp / torch.maximum (Triton's default min/max drop a NaN operand).
@triton.jit
def _clip01(v):
    return tl.minimum(tl.maximum(v, 0.0, propagate_nan=tl.PropagateNan.ALL), 1.0, propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def _row_sites(H, W, BLOCK: tl.constexpr):
    """This program's image n, row y, BLOCK columns x of the full-resolution grid, and the mask of x < W."""
    programs_per_row = tl.cdiv(W, BLOCK)
    pid = tl.program_id(0).to(tl.int64)
    row = pid // programs_per_row
    x = (pid % programs_per_row) * BLOCK + tl.arange(0, BLOCK)
    return row // H, row % H, x, x < W


@triton.jit
def camera_mosaic_kernel(linear_ptr, matrix_ptr, gains_ptr, packed_ptr, H, W, BLOCK: tl.constexpr):
    """One program: BLOCK sites of full-resolution row (n, y) of the linear sRGB ``(N, 3, H, W)``.

    Each site's three values go through image n's 3x3 matrix, the highlight-safe inverse gain of the site's RGGB
    colour and a clip to [0, 1]; the site's colour is stored in its plane of the packed ``(N, 4, H/2, W/2)``.
    """
    n, y, x, mask = _row_sites(H, W, BLOCK)
    acc = matrix_ptr.dtype.element_ty if matrix_ptr.dtype.element_ty == tl.float64 else tl.float32
    base = linear_ptr + n * 3 * H * W + y * W + x
    l0 = tl.load(base, mask=mask).to(acc)
    l1 = tl.load(base + H * W, mask=mask).to(acc)
    l2 = tl.load(base + 2 * H * W, mask=mask).to(acc)
    m = matrix_ptr + n * 9
    c0 = tl.load(m).to(acc) * l0 + tl.load(m + 1).to(acc) * l1 + tl.load(m + 2).to(acc) * l2
    c1 = tl.load(m + 3).to(acc) * l0 + tl.load(m + 4).to(acc) * l1 + tl.load(m + 5).to(acc) * l2
    c2 = tl.load(m + 6).to(acc) * l0 + tl.load(m + 7).to(acc) * l1 + tl.load(m + 8).to(acc) * l2
    grey = (c0 + c1 + c2) / 3.0
    ramp = tl.maximum(grey - HIGHLIGHT_INFLECTION, 0.0, propagate_nan=tl.PropagateNan.ALL) / (
        1.0 - HIGHLIGHT_INFLECTION
    )
    mask_hl = ramp * ramp
    plane = (y % 2) * 2 + (x % 2)
    colour = tl.where(plane == 0, 0, tl.where(plane == 3, 2, 1))
    gain = tl.load(gains_ptr + n * 3 + colour, mask=mask).to(acc)
    safe = tl.maximum(mask_hl + (1.0 - mask_hl) * gain, gain, propagate_nan=tl.PropagateNan.ALL)
    cam = tl.where(colour == 0, c0, tl.where(colour == 1, c1, c2))
    out = _clip01(cam * safe)
    offsets = ((n * 4 + plane) * (H // 2) + y // 2) * (W // 2) + x // 2
    tl.store(packed_ptr + offsets, out.to(packed_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _raw_at(packed_ptr, gains_ptr, n, H, W, yy, xx, mask, acc: tl.constexpr):
    """The gained, clipped RAW value at full-resolution sites (yy, xx) of image n."""
    plane = (yy % 2) * 2 + (xx % 2)
    value = tl.load(packed_ptr + ((n * 4 + plane) * (H // 2) + yy // 2) * (W // 2) + xx // 2, mask=mask).to(acc)
    return _clip01(value * tl.load(gains_ptr + n * 4 + plane, mask=mask).to(acc))


@triton.jit
def _reflect1(i, size):
    return tl.where(i < 0, 1, tl.where(i >= size, size - 2, i))


@triton.jit
def camera_demosaic_kernel(packed_ptr, gains_ptr, matrix_ptr, out_ptr, H, W, BLOCK: tl.constexpr):
    """One program: BLOCK sites of full-resolution row (n, y) of the linear sRGB output ``(N, 3, H, W)``.

    The gained, clipped RAW of the site's 3x3 neighbourhood (reflected at the borders) gives its bilinear R, G
    and B, which image n's 3x3 matrix turns into the three sRGB values, clipped to [0, 1].
    """
    n, y, x, mask = _row_sites(H, W, BLOCK)
    acc = matrix_ptr.dtype.element_ty if matrix_ptr.dtype.element_ty == tl.float64 else tl.float32
    yu = _reflect1(y - 1, H)
    yd = _reflect1(y + 1, H)
    xl = _reflect1(x - 1, W)
    xr = _reflect1(x + 1, W)
    centre = _raw_at(packed_ptr, gains_ptr, n, H, W, y, x, mask, acc)
    up = _raw_at(packed_ptr, gains_ptr, n, H, W, yu, x, mask, acc)
    down = _raw_at(packed_ptr, gains_ptr, n, H, W, yd, x, mask, acc)
    left = _raw_at(packed_ptr, gains_ptr, n, H, W, y, xl, mask, acc)
    right = _raw_at(packed_ptr, gains_ptr, n, H, W, y, xr, mask, acc)
    diagonal = (
        _raw_at(packed_ptr, gains_ptr, n, H, W, yu, xl, mask, acc)
        + _raw_at(packed_ptr, gains_ptr, n, H, W, yu, xr, mask, acc)
        + _raw_at(packed_ptr, gains_ptr, n, H, W, yd, xl, mask, acc)
        + _raw_at(packed_ptr, gains_ptr, n, H, W, yd, xr, mask, acc)
    ) * 0.25
    cross = (up + down + left + right) * 0.25
    horizontal = (left + right) * 0.5
    vertical = (up + down) * 0.5
    plane = (y % 2) * 2 + (x % 2)
    red = tl.where(plane == 0, centre, tl.where(plane == 3, diagonal, tl.where(plane == 1, horizontal, vertical)))
    green = tl.where((plane == 0) | (plane == 3), cross, centre)
    blue = tl.where(plane == 3, centre, tl.where(plane == 0, diagonal, tl.where(plane == 1, vertical, horizontal)))
    m = matrix_ptr + n * 9
    base = out_ptr + n * 3 * H * W + y * W + x
    for i in tl.static_range(3):
        value = (
            tl.load(m + 3 * i).to(acc) * red
            + tl.load(m + 3 * i + 1).to(acc) * green
            + tl.load(m + 3 * i + 2).to(acc) * blue
        )
        tl.store(base + i * H * W, _clip01(value).to(out_ptr.dtype.element_ty), mask=mask)


def camera_mosaic(linear: torch.Tensor, matrix: torch.Tensor, gains: torch.Tensor) -> torch.Tensor:
    """Contiguous ``(N, 3, H, W)``, ``(N, 3, 3)``, ``(N, 3)`` of one dtype -> packed ``(N, 4, H/2, W/2)``."""
    n, _, height, width = linear.shape
    packed = linear.new_empty((n, 4, height // 2, width // 2))
    if packed.numel():
        camera_mosaic_kernel[(n * height * triton.cdiv(width, BLOCK),)](
            linear, matrix, gains, packed, height, width, BLOCK=BLOCK
        )
    return packed


def camera_demosaic(packed: torch.Tensor, gains: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Contiguous ``(N, 4, h, w)``, ``(N, 4)``, ``(N, 3, 3)`` of one dtype -> linear sRGB ``(N, 3, 2h, 2w)``."""
    n, _, h, w = packed.shape
    out = packed.new_empty((n, 3, 2 * h, 2 * w))
    if out.numel():
        camera_demosaic_kernel[(n * 2 * h * triton.cdiv(2 * w, BLOCK),)](
            packed, gains, matrix, out, 2 * h, 2 * w, BLOCK=BLOCK
        )
    return out
