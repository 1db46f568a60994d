"""SIDD's benchmark and validation blocks: MATLAB files of 256x256 crops, 32 from each of 40 images.

The files of https://www.eecs.yorku.ca/~kamel/sidd/benchmark.php each hold one array named after the file:

=================================================================  =================================================
``ValidationNoisyBlocksSrgb.mat``, ``ValidationGtBlocksSrgb.mat``  ``(40, 32, 256, 256, 3)`` uint8
``ValidationNoisyBlocksRaw.mat``, ``ValidationGtBlocksRaw.mat``    ``(40, 32, 256, 256)`` float in [0, 1], mosaics
``BenchmarkNoisyBlocksSrgb.mat`` / ``BenchmarkNoisyBlocksRaw.mat``  the same, noisy only (the server keeps the truth)
=================================================================  =================================================

Any ``(n_images, n_blocks, h, w)`` (RAW) or ``(n_images, n_blocks, h, w, 3)`` (sRGB) array is accepted, from a
MATLAB v5/v7 or v7.3 file. The RAW blocks carry no metadata:

- the Bayer pattern must be given, one for every image or one per image (:func:`parse_sidd_patterns`); the
  phones store theirs in SIDD's RAW files as :data:`SIDD_PHONE_PATTERNS` lists;
- the noise level (``variance = shot * x + read``) is given, or estimated per image from all its noisy blocks
  together (:func:`~cycleisp_fast.noise.estimation.estimate_raw_noise` with ``pooled=True``): the blocks of
  one image share its ISO and exposure, and a dark block alone may be too clipped to fit a noise line.

Example::

    blocks = sidd_validation_blocks("datasets/sidd_val", "srgb")
    blocks[0]["name"], blocks[0]["noisy"].shape  # "0001_01", (3, 256, 256) float32 in [0, 1]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from cycleisp_fast.checks import check_choice
from cycleisp_fast.data.files import DataFileError
from cycleisp_fast.data.matlab import read_mat_variable
from cycleisp_fast.data.raw import pack_rggb
from cycleisp_fast.noise.estimation import estimate_raw_noise
from cycleisp_fast.ops.bayer import PATTERNS

BLOCK_KINDS = ("srgb", "raw")
_SUFFIX = {"srgb": "Srgb", "raw": "Raw"}
SIDD_VALIDATION_FILES = {
    kind: (f"ValidationNoisyBlocks{suffix}.mat", f"ValidationGtBlocks{suffix}.mat") for kind, suffix in _SUFFIX.items()
}
"""Kind -> (noisy file, ground-truth file) of the validation set; each holds the array named after its stem."""
SIDD_BENCHMARK_KEYS = {kind: f"BenchmarkNoisyBlocks{suffix}" for kind, suffix in _SUFFIX.items()}
"""Kind -> name of the array in the benchmark's noisy-blocks file (``BenchmarkNoisyBlocksSrgb.mat``...)."""
SIDD_PHONE_PATTERNS = {"GP": "BGGR", "IP": "RGGB", "S6": "GRBG", "N6": "BGGR", "G4": "BGGR"}
"""SIDD phone code (Google Pixel, iPhone 7, Samsung Galaxy S6 Edge, Motorola Nexus 6, LG G4) -> the Bayer pattern
of its RAW images as SIDD stores them, as every public SIDD RAW loader found agrees (no official table; each SIDD
image's METADATA_RAW file holds its own, see :func:`~cycleisp_fast.data.datasets.read_sidd_pattern`)."""


def parse_sidd_patterns(text: str) -> list[str]:
    """``"GRBG"`` or ``"S6,GP,IP"`` -> one Bayer pattern per entry: a pattern (RGGB, BGGR, GRBG, GBRG) or a SIDD
    phone code of :data:`SIDD_PHONE_PATTERNS`, comma-separated (any case). An argparse type."""
    patterns = []
    for entry in text.upper().split(","):
        entry = entry.strip()
        if entry not in PATTERNS and entry not in SIDD_PHONE_PATTERNS:
            raise argparse.ArgumentTypeError(
                f"{entry!r} in {text!r} is neither a Bayer pattern ({', '.join(PATTERNS)}) nor a SIDD phone code "
                f"({', '.join(SIDD_PHONE_PATTERNS)}); give one for all images or a comma-separated list, one per "
                "image"
            )
        patterns.append(SIDD_PHONE_PATTERNS.get(entry, entry))
    return patterns


def read_sidd_blocks(path, names: Sequence[str]) -> tuple[str, np.ndarray]:
    """Reads a SIDD blocks file: the first array of ``names`` it holds, checked.

    Args:
        path: a ``.mat`` file (v5/v7 or v7.3).
        names: the array names to look for, e.g. ``SIDD_BENCHMARK_KEYS.values()``; a name ending in ``Srgb``
            must hold ``(n_images, n_blocks, h, w, 3)`` uint8, one ending in ``Raw`` ``(n_images, n_blocks, h, w)``
            floats.

    Returns:
        ``(name, array)``, the array in MATLAB's axis order and the file's dtype.

    Raises:
        FileNotFoundError: no such file.
        DataFileError: not a MATLAB file, none of ``names`` in it, or an array of the wrong rank, channel count
            or dtype (the message names the file and what was expected).
    """
    path = Path(path)
    name, array = read_mat_variable(path, tuple(names))
    kind = "srgb" if name.endswith("Srgb") else "raw"
    expected = (
        "(n_images, n_blocks, h, w, 3) uint8"
        if kind == "srgb"
        else "(n_images, n_blocks, h, w) float (Bayer mosaics in [0, 1])"
    )
    rank = 5 if kind == "srgb" else 4
    if array.ndim != rank or (kind == "srgb" and array.shape[-1] != 3) or 0 in array.shape:
        raise DataFileError(f"{path}: {name!r} must be {expected}, got shape {array.shape}")
    if (kind == "srgb" and array.dtype != np.uint8) or (kind == "raw" and not np.issubdtype(array.dtype, np.floating)):
        raise DataFileError(f"{path}: {name!r} must be {expected}, got dtype {array.dtype}")
    return name, array


class SIDDBlocks(Dataset):
    """The blocks of a SIDD blocks file, one item per block, image by image.

    Args:
        noisy_path: the noisy blocks (``BenchmarkNoisyBlocks*.mat`` or ``ValidationNoisyBlocks*.mat``).
        clean_path: the matching ground truth (``ValidationGtBlocks*.mat``), or None.
        pattern: RAW only, required: the Bayer pattern of every image, or a list of one per image.
        noise: RAW only: ``(shot, read)`` for every block, or None to estimate it per image (module docstring).

    Items: ``name`` (``"0001_01"``: image and block, 1-based), ``image`` and ``block`` (0-based ints), ``noisy``
    (and ``clean`` with a ``clean_path``): ``(3, h, w)`` float32 in [0, 1] (sRGB, the uint8 values / 255) or
    ``(1, h, w)`` float32 mosaics (RAW, with ``pattern``, ``shot`` and ``read``).

    Attributes:
        kind: ``"srgb"`` or ``"raw"``; ``key``: the noisy array's name; ``noisy``: that array (file dtype);
        ``shape``: ``(n_images, n_blocks)``.
    """

    def __init__(
        self,
        noisy_path,
        clean_path=None,
        *,
        pattern: str | Sequence[str] | None = None,
        noise: tuple[float, float] | None = None,
    ):
        self.noisy_path = Path(noisy_path)
        names = [SIDD_BENCHMARK_KEYS[kind] for kind in BLOCK_KINDS] + [
            Path(SIDD_VALIDATION_FILES[kind][0]).stem for kind in BLOCK_KINDS
        ]
        self.key, self.noisy = read_sidd_blocks(self.noisy_path, names)
        self.kind = "srgb" if self.key.endswith("Srgb") else "raw"
        self.shape = self.noisy.shape[:2]
        self.clean = None
        if clean_path is not None:
            clean_path = Path(clean_path)
            _, self.clean = read_sidd_blocks(clean_path, [Path(SIDD_VALIDATION_FILES[self.kind][1]).stem])
            if self.clean.shape != self.noisy.shape:
                raise DataFileError(
                    f"the ground truth {clean_path} holds blocks of shape {self.clean.shape}, the "
                    f"noisy {self.noisy_path} {self.noisy.shape}; they must match"
                )
        self.patterns, self.noise, self._levels = None, None, {}
        if self.kind == "raw":
            self.patterns = self._check_patterns(pattern)
            if noise is not None:
                self.noise = tuple(float(level) for level in noise)
                if len(self.noise) != 2 or not all(level >= 0 for level in self.noise):
                    raise ValueError(f"noise must be (shot, read), two variances >= 0, got {noise!r}")
        elif pattern is not None or noise is not None:
            raise ValueError(
                f"a Bayer pattern and a noise level (pattern=, noise=; --pattern, --shot/--read) are "
                f"for RAW blocks; {self.noisy_path} holds sRGB blocks"
            )

    def _check_patterns(self, pattern) -> list[str]:
        if pattern is None:
            raise ValueError(
                f"{self.noisy_path} holds RAW blocks, which carry no Bayer pattern: give it (pattern=, "
                "--pattern on the command line), one for all images or one per image"
            )
        patterns = [pattern] if isinstance(pattern, str) else list(pattern)
        for entry in patterns:
            check_choice(entry, "pattern", PATTERNS)
        if len(patterns) == 1:
            patterns *= self.shape[0]
        if len(patterns) != self.shape[0]:
            raise ValueError(
                f"{len(patterns)} Bayer patterns given (pattern=, --pattern) for the {self.shape[0]} "
                f"images of {self.noisy_path}; give one for all or one per image"
            )
        return patterns

    def __len__(self) -> int:
        return self.shape[0] * self.shape[1]

    def noise_level(self, image: int) -> tuple[float, float]:
        """``(shot, read)`` of RAW image ``image`` (0-based): the given ``noise``, or the estimate pooled over
        its noisy blocks (computed once)."""
        if self.noise is not None:
            return self.noise
        if image not in self._levels:
            blocks = torch.from_numpy(np.ascontiguousarray(self.noisy[image], dtype=np.float32))
            try:
                levels = estimate_raw_noise(pack_rggb(blocks, self.patterns[image]), pooled=True)
            except ValueError as error:
                raise DataFileError(
                    f"{self.noisy_path}: cannot estimate the noise level of image {image + 1} from "
                    f"its blocks ({error}); give it instead (noise=; --shot/--read)"
                ) from error
            self._levels[image] = float(levels.shot[0]), float(levels.read[0])
        return self._levels[image]

    def _block(self, array: np.ndarray, image: int, block: int) -> torch.Tensor:
        values = array[image, block]
        if self.kind == "srgb":
            return torch.from_numpy(values.transpose(2, 0, 1) / np.float32(255)).contiguous()
        return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))[None]

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"block index {index} out of range for {len(self)} blocks")
        image, block = divmod(index, self.shape[1])
        item = {
            "name": f"{image + 1:04d}_{block + 1:02d}",
            "image": image,
            "block": block,
            "noisy": self._block(self.noisy, image, block),
        }
        if self.clean is not None:
            item["clean"] = self._block(self.clean, image, block)
        if self.kind == "raw":
            shot, read = self.noise_level(image)
            item.update(pattern=self.patterns[image], shot=shot, read=read)
        return item


def sidd_validation_blocks(root, kind: str, *, pattern=None, noise=None) -> SIDDBlocks:
    """The SIDD validation blocks in the folder ``root``: ``ValidationNoisyBlocks<Srgb|Raw>.mat`` paired with
    ``ValidationGtBlocks<Srgb|Raw>.mat`` (:data:`SIDD_VALIDATION_FILES`); ``pattern``/``noise`` as for
    :class:`SIDDBlocks` (RAW)."""
    check_choice(kind, "kind", BLOCK_KINDS)
    root = Path(root)
    noisy, clean = (root / name for name in SIDD_VALIDATION_FILES[kind])
    missing = [str(path) for path in (noisy, clean) if not path.is_file()]
    if missing:
        raise FileNotFoundError(
            f"SIDD validation blocks need {noisy.name} and {clean.name} in {root}; missing: {', '.join(missing)}"
        )
    return SIDDBlocks(noisy, clean, pattern=pattern, noise=noise)
