"""DNG tags that rawpy does not expose (or exposes only for some files), read with tifffile: the colour matrix
calibrated under D65 and the NoiseProfile.

Example:
    >>> from cycleisp_fast.data.dng import read_dng_tags
    >>> read_dng_tags("IMG_0001.dng")  # doctest: +SKIP
    (array([[...]]), (0.00021, 1.3e-06))
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import tifffile

from cycleisp_fast.data.files import DataFileError

# DNG / EXIF tag codes read with tifffile (rawpy does not expose them, or exposes them only for some files).
DNG_VERSION = 50706
COLOR_MATRIX = {1: 50721, 2: 50722}
CAMERA_CALIBRATION = {1: 50723, 2: 50724}
CALIBRATION_ILLUMINANT = {1: 50778, 2: 50779}
ANALOG_BALANCE = 50727
NOISE_PROFILE = 51041
D65_ILLUMINANT = 21
"""EXIF LightSource code of CIE D65, the illuminant of the sRGB matrix the colour matrix is combined with."""


def usable_matrix(matrix: np.ndarray) -> Optional[np.ndarray]:
    """``matrix`` if it is finite and not all zero (LibRaw's 'unknown'), else None."""
    return matrix if np.all(np.isfinite(matrix)) and np.any(matrix != 0) else None


def read_dng_tags(path: Path) -> tuple[Optional[np.ndarray], Optional[tuple[float, float]]]:
    """``(XYZ -> camera matrix, NoiseProfile (shot, read))`` from a DNG's tags; (None, None) for other files."""
    try:
        tiff = tifffile.TiffFile(path)
    except tifffile.TiffFileError:
        return None, None  # not TIFF-based (CR3, RAF, ...): no DNG tags
    with tiff:
        first = tiff.pages.first
        if DNG_VERSION not in first.tags:
            return None, None
        pages = [first, *(first.pages or ())]
        return _dng_xyz_to_camera(first.tags, path), _dng_noise_profile(pages, path)


def _tag_values(tags, code: int, count: int, name: str, path: Path) -> np.ndarray:
    """A numeric tag's ``count`` values as float64 (rationals divided out); DataFileError if malformed."""
    tag = tags[code]
    values = np.asarray(tag.value, dtype=np.float64).ravel()
    if tag.dtype in (tifffile.DATATYPE.RATIONAL, tifffile.DATATYPE.SRATIONAL):
        values = values[0::2] / values[1::2] if values.size % 2 == 0 else values[:0]
    if values.size != count or not np.all(np.isfinite(values)):
        raise DataFileError(
            f"DNG file {path} has a malformed {name} tag (expected {count} finite values, got {tag.value!r})"
        )
    return values


def _dng_xyz_to_camera(tags, path: Path) -> Optional[np.ndarray]:
    """``AnalogBalance @ CameraCalibration @ ColorMatrix`` (DNG spec's XYZ -> camera), for the matrix calibrated
    under D65 when there is one, else the last one given (DNG writers put the daylight matrix second)."""
    given = [index for index, code in COLOR_MATRIX.items() if code in tags]
    if not given:
        return None
    illuminant_of = {index: tags[code].value for index, code in CALIBRATION_ILLUMINANT.items() if code in tags}
    index = next((i for i in given if illuminant_of.get(i) == D65_ILLUMINANT), given[-1])
    xyz_to_camera = _tag_values(tags, COLOR_MATRIX[index], 9, f"ColorMatrix{index}", path).reshape(3, 3)
    if CAMERA_CALIBRATION[index] in tags:
        calibration = _tag_values(tags, CAMERA_CALIBRATION[index], 9, f"CameraCalibration{index}", path)
        xyz_to_camera = calibration.reshape(3, 3) @ xyz_to_camera
    if ANALOG_BALANCE in tags:
        xyz_to_camera = np.diag(_tag_values(tags, ANALOG_BALANCE, 3, "AnalogBalance", path)) @ xyz_to_camera
    return usable_matrix(xyz_to_camera)


def _dng_noise_profile(pages, path: Path) -> Optional[tuple[float, float]]:
    """NoiseProfile (shot, read) from the main-image IFDs first, then any other. The tag holds one (S, O) pair for
    all planes or one per colour plane; per-plane pairs are averaged."""
    for page in sorted(pages, key=lambda page: page.subfiletype != 0):
        tag = page.tags.get(NOISE_PROFILE)
        if tag is None:
            continue
        values = np.asarray(tag.value, dtype=np.float64).ravel()
        if values.size == 0 or values.size % 2 or not np.all(np.isfinite(values)) or np.any(values < 0):
            raise DataFileError(
                f"DNG file {path} has a malformed NoiseProfile tag (expected (S, O) pairs of finite "
                f"non-negative numbers, got {tag.value!r})"
            )
        shot, read = values.reshape(-1, 2).mean(axis=0)
        return float(shot), float(read)
    return None
