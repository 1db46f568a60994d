"""Colour photographs shipped inside the scikit-image wheel (no download), for demos, smoke tests and
synthesis examples when no dataset is at hand."""

from __future__ import annotations

from typing import Iterable

import numpy as np
import skimage.data
import torch

from cycleisp_fast.data.crops import centre_crop

SAMPLE_NAMES = ("astronaut", "chelsea", "coffee", "hubble_deep_field", "immunohistochemistry", "retina", "rocket")


def sample_images(names: Iterable[str] | str | None = None, *, max_size: int | None = None) -> dict[str, torch.Tensor]:
    """Loads scikit-image's bundled colour photographs.

    Args:
        names: names from :data:`SAMPLE_NAMES` (one name or several); None loads all of them.
        max_size: centre-crops each side to at most this many pixels (an int >= 2). Sides are always made even
            (an odd side loses one pixel) so that every sample can be mosaicked into whole 2x2 CFA blocks.

    Returns:
        name -> ``(3, H, W)`` float32 in [0, 1] (8-bit samples / 255), in the order asked for.
    """
    if names is None:
        names = SAMPLE_NAMES
    elif isinstance(names, str):
        names = (names,)
    names = tuple(names)
    unknown = [name for name in names if name not in SAMPLE_NAMES]
    if unknown:
        raise ValueError(f"unknown sample image(s) {unknown}; choose from {SAMPLE_NAMES}")
    if max_size is not None and (isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 2):
        raise ValueError(f"max_size must be an int >= 2 or None, got {max_size!r}")
    samples = {}
    for name in names:
        pixels = centre_crop(getattr(skimage.data, name)().transpose(2, 0, 1), max_size, even_sides=True)
        samples[name] = torch.from_numpy(np.ascontiguousarray(pixels)).to(torch.float32) / 255
    return samples
