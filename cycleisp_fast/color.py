"""Colour math shared by the data readers and the pipelines: the sRGB/XYZ matrix and the normalised sRGB -> camera
matrix of a camera's XYZ -> camera matrix (DNG ColorMatrix, LibRaw's rgb_xyz_matrix).

Example::

    rgb2cam = normalised_rgb_to_camera(xyz_to_camera)  # (3, 3) float64, rows summing to 1
    cam2rgb = torch.linalg.inv(rgb2cam)
"""

from __future__ import annotations

import torch
from torch import Tensor

SRGB_TO_XYZ = torch.tensor(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]],
    dtype=torch.float64,
)
"""``(3, 3)``: linear sRGB (D65) -> CIE XYZ (IEC 61966-2-1)."""


def normalised_rgb_to_camera(xyz_to_camera: Tensor) -> Tensor:
    """``xyz_to_camera @ SRGB_TO_XYZ`` with each row scaled to sum to 1 (so grey stays grey before the white
    balance).

    Shape: ``(..., 3, 3)`` float64 -> ``(..., 3, 3)`` float64.
    """
    rgb2cam = xyz_to_camera @ SRGB_TO_XYZ.to(xyz_to_camera.device)
    return rgb2cam / rgb2cam.sum(dim=-1, keepdim=True)
