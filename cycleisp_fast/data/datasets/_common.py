"""What the dataset modules share: :class:`DatasetLayoutError`, the check of a dataset root, pairs of image files
of one size (:func:`load_pair`), Bayer patterns from colour codes and under a crop (:func:`shift_pattern`), and
short lists of offending names for error messages.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cycleisp_fast.data.files import DataFileError
from cycleisp_fast.data.images import read_image
from cycleisp_fast.ops.bayer import PATTERNS

_SHOWN = 5  # how many offending names an error message lists


class DatasetLayoutError(FileNotFoundError):
    """A dataset folder does not have the expected layout; the message shows the expected path pattern."""


def _few(names) -> str:
    names = sorted(names)
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


def _check_root(root) -> Path:
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder (expected a dataset folder)")
    return root


def load_pair(name: str, clean_path: Path, noisy_path: Path) -> dict:
    """``dict(name, clean, noisy)`` from two image files of the same size, each ``(3, H, W)`` float32 in [0, 1]."""
    clean, noisy = read_image(clean_path), read_image(noisy_path)
    _check_same_size(clean, noisy, clean_path, noisy_path)
    return {"name": name, "clean": clean, "noisy": noisy}


def _check_same_size(clean: torch.Tensor, noisy: torch.Tensor, clean_path: Path, noisy_path: Path) -> None:
    if clean.shape != noisy.shape:
        raise DataFileError(
            f"image sizes differ within a pair: clean {clean_path} is {_size(clean)}, "
            f"noisy {noisy_path} is {_size(noisy)}"
        )


def _size(image: torch.Tensor) -> str:
    return f"{image.shape[-2]}x{image.shape[-1]} (HxW)"


def shift_pattern(pattern: str, top: int, left: int) -> str:
    """The Bayer pattern of a crop starting at row ``top``, column ``left`` of a ``pattern`` mosaic."""
    grid = (pattern[:2], pattern[2:])
    return "".join(grid[(row + top) % 2][(col + left) % 2] for row in range(2) for col in range(2))


def _pattern_from_codes(codes, path: Path) -> str:
    """A 2x2 CFA block of colour codes (row-major; 0 = R, 1 = G, 2 = B) -> its name, e.g. ``"RGGB"``."""
    values = np.asarray(codes).ravel()
    if values.size == 4 and np.all((values >= 0) & (values <= 2) & (values == np.round(values))):
        pattern = "".join("RGB"[int(value)] for value in values)
        if pattern in PATTERNS:
            return pattern
    raise DataFileError(
        f"{path}: unsupported Bayer pattern codes {values.tolist()} (expected a 2x2 block of one of {PATTERNS})"
    )
