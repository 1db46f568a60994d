"""Bayer mosaic / pack / unpack in plain PyTorch, by slicing as CycleISP's ``mosaic`` and ``pack_raw`` do.

Packed planes are always in CycleISP's canonical order (R, Gr, Gb, B), Gr being the green on the red
row, whatever the CFA pattern. A pattern names the colours of the top-left 2x2 block, row by row.
"""

from __future__ import annotations

import torch

from cycleisp_fast._dtypes import accumulation_dtype

PACKED_COLOURS = (0, 1, 1, 2)
"""Colour plane (0 R, 1 G, 2 B) of each packed plane R, Gr, Gb, B."""


def cfa_sites(pattern: str) -> list[tuple[int, int]]:
    """The (dy, dx) position in the 2x2 block of each packed plane R, Gr, Gb, B, read off ``pattern``."""
    position = [(i // 2, i % 2) for i in range(4)]
    red = position[pattern.index("R")]
    blue = position[pattern.index("B")]
    greens = [position[i] for i, colour in enumerate(pattern) if colour == "G"]
    green_on_red_row = next(p for p in greens if p[0] == red[0])
    green_on_blue_row = next(p for p in greens if p[0] == blue[0])
    return [red, green_on_red_row, green_on_blue_row, blue]


def bayer_mosaic(rgb: torch.Tensor, pattern: str = "RGGB") -> torch.Tensor:
    """``(N, 3, H, W)`` -> ``(N, 1, H, W)``: each site keeps the colour its filter passes."""
    cfa = rgb.new_zeros(rgb.shape[0], 1, rgb.shape[2], rgb.shape[3])
    for (dy, dx), colour in zip(cfa_sites(pattern), PACKED_COLOURS):
        cfa[:, 0, dy::2, dx::2] = rgb[:, colour, dy::2, dx::2]
    return cfa


def bayer_pack(cfa: torch.Tensor, pattern: str = "RGGB", black_level=None, white_level=None) -> torch.Tensor:
    """``(N, 1, H, W)`` -> ``(N, 4, H/2, W/2)`` in (R, Gr, Gb, B), with optional ``(x - black) / (white - black)``.

    Integer input (RAW samples) gives float32; levels are per packed channel ``(4,)`` tensors or scalars.
    """
    planes = torch.stack([cfa[:, 0, dy::2, dx::2] for dy, dx in cfa_sites(pattern)], dim=1)
    if not planes.is_floating_point():
        planes = planes.float()
    if black_level is None:
        return planes
    acc_dtype = accumulation_dtype(planes.dtype)
    # levels are rounded once, from float64 to the compute dtype
    black = torch.as_tensor(black_level, dtype=torch.float64).expand(4).to(planes.device, acc_dtype).view(1, 4, 1, 1)
    white = torch.as_tensor(white_level, dtype=torch.float64).expand(4).to(planes.device, acc_dtype).view(1, 4, 1, 1)
    return ((planes.to(acc_dtype) - black) / (white - black)).to(planes.dtype)


def bayer_unpack(packed: torch.Tensor, pattern: str = "RGGB") -> torch.Tensor:
    """``(N, 4, h, w)`` in (R, Gr, Gb, B) -> ``(N, 1, 2h, 2w)``: the inverse of :func:`bayer_pack` without levels."""
    cfa = packed.new_zeros(packed.shape[0], 1, 2 * packed.shape[2], 2 * packed.shape[3])
    for channel, (dy, dx) in enumerate(cfa_sites(pattern)):
        cfa[:, 0, dy::2, dx::2] = packed[:, channel]
    return cfa


def rgb_to_packed_bayer(rgb: torch.Tensor, pattern: str = "RGGB") -> torch.Tensor:
    """``(N, 3, H, W)`` -> ``(N, 4, H/2, W/2)``: CycleISP's ``mosaic`` (for RGGB), for any pattern."""
    return torch.stack(
        [rgb[:, colour, dy::2, dx::2] for (dy, dx), colour in zip(cfa_sites(pattern), PACKED_COLOURS)], dim=1
    )
