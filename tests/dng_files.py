"""Small DNG files for the tests (pidng): a uint16 mosaic with the tags LibRaw needs, per-position black levels,
white level, and optionally a colour matrix and as-shot neutral. Importable from every test folder (tests/ is on
sys.path through its conftest.py)."""

from __future__ import annotations

import numpy as np
from pidng.core import RAW2DNG, DNGTags, Tag
from pidng.defs import CalibrationIlluminant, DNGVersion, Orientation, PhotometricInterpretation, PreviewColorSpace

WHITE = 4095
BLACK_BY_POSITION = (500, 510, 520, 530)  # BlackLevel for the CFA positions (0,0), (0,1), (1,0), (1,1)
NEUTRAL = (0.5, 1.0, 2.0 / 3.0)  # AsShotNeutral, written as the rationals 1/2, 1/1, 2/3
COLOR_MATRIX = (1.9549, -0.7877, -0.2582, -0.5724, 1.0121, 0.1917, -0.1267, -0.0110, 0.6621)
CFA_CODES = {"R": 0, "G": 1, "B": 2}


def rationals(values, denominator: int = 10000) -> list[list[int]]:
    return [[round(v * denominator), denominator] for v in values]


def write_dng(
    folder,
    mosaic: np.ndarray,
    cfa: str = "RGGB",
    *,
    name: str = "image",
    black=BLACK_BY_POSITION,
    neutral=NEUTRAL,
    color_matrix=COLOR_MATRIX,
    white: int = WHITE,
    extra=(),
) -> str:
    """``folder/name.dng`` of the uint16 ``(H, W)`` mosaic (or ``(H, W, 3)`` with a LinearRaw ``extra``); ``extra``
    tags (Tag, value) are set last. ``neutral``/``color_matrix`` None leave the tag out. Returns the path."""
    height, width = mosaic.shape[:2]
    tags = DNGTags()
    for tag, value in [
        (Tag.ImageWidth, width),
        (Tag.ImageLength, height),
        (Tag.TileWidth, width),
        (Tag.TileLength, height),
        (Tag.Orientation, Orientation.Horizontal),
        (Tag.PhotometricInterpretation, PhotometricInterpretation.Color_Filter_Array),
        (Tag.SamplesPerPixel, 1),
        (Tag.BitsPerSample, 16),
        (Tag.CFARepeatPatternDim, [2, 2]),
        (Tag.CFAPattern, [CFA_CODES[c] for c in cfa]),
        (Tag.BlackLevelRepeatDim, [2, 2]),
        (Tag.BlackLevel, list(black)),
        (Tag.WhiteLevel, white),
        (Tag.DNGVersion, DNGVersion.V1_4),
        (Tag.DNGBackwardVersion, DNGVersion.V1_2),
        (Tag.PreviewColorSpace, PreviewColorSpace.sRGB),
        (Tag.Make, "Test"),
        (Tag.Model, "Cam"),
    ]:
        tags.set(tag, value)
    if color_matrix is not None:
        tags.set(Tag.ColorMatrix1, rationals(color_matrix))
        tags.set(Tag.CalibrationIlluminant1, CalibrationIlluminant.D65)
    if neutral is not None:
        tags.set(Tag.AsShotNeutral, [[1, 2], [1, 1], [2, 3]] if neutral == NEUTRAL else rationals(neutral))
    for tag, value in extra:
        tags.set(tag, value)
    writer = RAW2DNG()
    writer.options(tags, path="", compress=False)
    return writer.convert(mosaic, filename=str(folder / name))
