"""The pixel limit: the largest image any reader of the package decodes, checked from the file's header before a
single sample is decoded, so that a small file claiming a huge size (a "decompression bomb") fails at once with
an error naming it instead of exhausting the machine's memory.

The limit is :data:`DEFAULT_MAX_PIXELS` (160 million pixels: above every camera sensor on sale, the largest being
151 MP; an RGB image of that size is 1.9 GB as float32) unless the environment variable ``CYCLEISP_FAST_MAX_PIXELS``
sets another (a positive int). MATLAB arrays (benchmark files) are bounded by the same budget in bytes:
``12 * limit`` (what a float32 RGB image of the limit takes).

Example::

    check_pixels(Path("bomb.png"), 100_000, 100_000)
    # DataFileError: bomb.png: 100000 x 100000 pixels (10000 MP) is over the pixel limit of 160 MP; ...
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from cycleisp_fast.data.files import DataFileError

DEFAULT_MAX_PIXELS = 160_000_000
MAX_PIXELS_VARIABLE = "CYCLEISP_FAST_MAX_PIXELS"
BYTES_PER_PIXEL = 12
"""The byte budget of one decoded array per pixel of the limit (float32 RGB)."""


def max_pixels() -> int:
    """The pixel limit in force: ``CYCLEISP_FAST_MAX_PIXELS`` when set (a positive int), else the default."""
    text = os.environ.get(MAX_PIXELS_VARIABLE, "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        limit = int(text.replace("_", ""))
    except ValueError:
        limit = 0
    if limit < 1:
        raise ValueError(
            f"the environment variable {MAX_PIXELS_VARIABLE} must be a positive int (a number of pixels), got {text!r}"
        )
    return limit


def _how_to_raise() -> str:
    return f"set {MAX_PIXELS_VARIABLE} to a larger number of pixels to read it"


def check_pixels(path: Path, height: int, width: int) -> None:
    """Raises DataFileError naming ``path`` when a ``height x width`` image (the size its header claims) is over
    the pixel limit, or has a side < 1."""
    if height < 1 or width < 1:
        raise DataFileError(f"{path}: its header claims an empty image ({height} x {width} pixels)")
    limit = max_pixels()
    if height * width > limit:
        raise DataFileError(
            f"{path}: {height} x {width} pixels ({height * width / 1e6:g} MP) is over the pixel "
            f"limit of {limit / 1e6:g} MP; {_how_to_raise()}"
        )


def check_array_bytes(path: Path, name: str, shape: tuple[int, ...], itemsize: int) -> None:
    """Raises DataFileError naming ``path`` and the array ``name`` when an array of ``shape`` and ``itemsize``
    (read from the file's header) would take more than ``BYTES_PER_PIXEL * max_pixels()`` bytes."""
    size = math.prod(int(side) for side in shape) * int(itemsize)
    limit = max_pixels()
    if size > BYTES_PER_PIXEL * limit:
        raise DataFileError(
            f"{path}: the array {name!r} of shape {tuple(shape)} would take {size / 1e9:.3g} GB, "
            f"over the {BYTES_PER_PIXEL * limit / 1e9:.3g} GB allowed by the pixel limit of "
            f"{limit / 1e6:g} MP; {_how_to_raise()}"
        )
