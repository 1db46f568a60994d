"""Plain-PyTorch references of the camera ops (Brooks et al.'s unprocess/process steps that have no
transcendentals): the truth the native kernels are tested against, and their autograd."""

from __future__ import annotations

import torch
import torch.nn.functional as F

HIGHLIGHT_INFLECTION = 0.9
"""Brooks' safe gains: above this grey level the inverse gains fade out quadratically, so that highlights stay
saturated instead of taking a colour cast."""

# Bilinear demosaic kernels as (dy, dx, weight) taps: on a plane holding one colour's samples (zeros elsewhere), the
# green kernel averages the 4 direct neighbours at non-green sites and keeps green sites; the red/blue kernel
# averages 2 or 4 neighbours. Only the nonzero taps are summed, so a NaN sample reaches exactly the outputs whose
# formula uses it (a convolution would also multiply it by the kernel's zeros).
_GREEN_TAPS = ((0, 1, 0.25), (1, 0, 0.25), (1, 1, 1.0), (1, 2, 0.25), (2, 1, 0.25))
_RED_BLUE_TAPS = tuple((dy, dx, (1.0, 0.5, 0.25)[abs(dy - 1) + abs(dx - 1)]) for dy in range(3) for dx in range(3))


def apply_color_matrix(image: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """``out[n, i] = sum_j matrix[n, i, j] image[n, j]`` for ``(N, 3, H, W)`` images and ``(N, 3, 3)`` matrices."""
    return torch.einsum("nij,njhw->nihw", matrix, image)


def camera_mosaic(linear: torch.Tensor, rgb2cam: torch.Tensor, gains: torch.Tensor) -> torch.Tensor:
    """Linear sRGB ``(N, 3, H, W)`` -> packed RGGB ``(N, 4, H/2, W/2)``: ``rgb2cam`` ``(N, 3, 3)``, then the inverse
    ``gains`` ``(N, 3)`` (R, G, B) made safe for highlights (Brooks' ``safe_invert_gains``), clip to [0, 1], mosaic."""
    camera = apply_color_matrix(linear, rgb2cam)
    gains = gains[:, :, None, None]
    grey = camera.mean(dim=1, keepdim=True)
    mask = (torch.clamp_min(grey - HIGHLIGHT_INFLECTION, 0.0) / (1.0 - HIGHLIGHT_INFLECTION)) ** 2
    safe_gains = torch.maximum(mask + (1.0 - mask) * gains, gains)
    camera = torch.clamp(camera * safe_gains, 0.0, 1.0)
    return torch.stack(
        [camera[:, 0, 0::2, 0::2], camera[:, 1, 0::2, 1::2], camera[:, 1, 1::2, 0::2], camera[:, 2, 1::2, 1::2]], dim=1
    )


def demosaic_bilinear(packed: torch.Tensor) -> torch.Tensor:
    """Bilinear demosaic of packed RGGB ``(N, 4, h, w)`` -> ``(N, 3, 2h, 2w)``: each colour's samples are kept and
    the missing ones averaged from the nearest samples of that colour (2 or 4 of them). Borders are reflect-padded
    by one pixel, which keeps the CFA's parity."""
    n, _, h, w = packed.shape
    mosaic = F.pixel_shuffle(packed, 2)  # (N, 1, 2h, 2w): planes R, Gr, Gb, B at (0,0), (0,1), (1,0), (1,1)
    rows = torch.arange(2 * h, device=packed.device)[:, None] % 2
    cols = torch.arange(2 * w, device=packed.device)[None, :] % 2
    masks = torch.stack([(rows == 0) & (cols == 0), rows != cols, (rows == 1) & (cols == 1)])
    planes = F.pad(torch.where(masks, mosaic, 0.0), (1, 1, 1, 1), mode="reflect")  # (N, 3, 2h + 2, 2w + 2)

    def interpolate(plane: torch.Tensor, taps) -> torch.Tensor:
        return sum(weight * plane[:, :, dy : dy + 2 * h, dx : dx + 2 * w] for dy, dx, weight in taps)

    return torch.cat(
        [
            interpolate(planes[:, 0:1], _RED_BLUE_TAPS),
            interpolate(planes[:, 1:2], _GREEN_TAPS),
            interpolate(planes[:, 2:3], _RED_BLUE_TAPS),
        ],
        dim=1,
    )


def camera_demosaic(packed: torch.Tensor, gains: torch.Tensor, cam2rgb: torch.Tensor) -> torch.Tensor:
    """Packed RGGB ``(N, 4, h, w)`` -> linear sRGB ``(N, 3, 2h, 2w)``: ``gains`` ``(N, 4)`` per plane, clip to
    [0, 1], bilinear demosaic, ``cam2rgb`` ``(N, 3, 3)``, clip to [0, 1]."""
    raw = torch.clamp(packed * gains[:, :, None, None], 0.0, 1.0)
    return torch.clamp(apply_color_matrix(demosaic_bilinear(raw), cam2rgb), 0.0, 1.0)
