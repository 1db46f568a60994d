"""read_raw / unify_to_rggb / restore_geometry against small DNGs written with pidng, checked with numpy slicing
and direct formulas (and, for the colour matrix, against LibRaw's own camera -> sRGB matrix)."""

from __future__ import annotations

import numpy as np
import pytest
import rawpy
import torch
from dng_files import BLACK_BY_POSITION, CFA_CODES, COLOR_MATRIX, NEUTRAL, WHITE, rationals, write_dng
from pidng.core import Tag
from pidng.defs import CalibrationIlluminant, PhotometricInterpretation

from cycleisp_fast.data.files import DataFileError
from cycleisp_fast.data.raw import RawImage, read_raw, restore_geometry, unify_to_rggb

OTHER_MATRIX = (0.6596, -0.2079, -0.0562, -0.4782, 1.3016, 0.1933, -0.0970, 0.1581, 0.5181)
SRGB_TO_XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],  # IEC 61966-2-1, D65
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
)
PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")


def random_mosaic(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, WHITE + 1, (height, width)).astype(np.uint16)


def expected_planes(mosaic: np.ndarray, cfa: str, black=BLACK_BY_POSITION):
    """Crop unification and packing with plain numpy slicing: ``(planes (4, h, w) float64, (top, left))``."""
    letters = np.array(list(cfa)).reshape(2, 2)
    top, left = (int(i) for i in np.argwhere(letters == "R")[0])
    sub = mosaic[top:, left:].astype(np.float64)
    height, width = sub.shape[0] // 2 * 2, sub.shape[1] // 2 * 2
    black_grid = np.array(black, dtype=np.float64).reshape(2, 2)
    planes = []
    for (dy, dx), colour in zip([(0, 0), (0, 1), (1, 0), (1, 1)], "RGGB"):
        assert letters[(top + dy) % 2, (left + dx) % 2] == colour
        plane_black = black_grid[(top + dy) % 2, (left + dx) % 2]
        planes.append((sub[dy:height:2, dx:width:2] - plane_black) / (WHITE - plane_black))
    return np.stack(planes), (top, left)


def expected_cam_to_srgb(xyz_to_camera: np.ndarray) -> np.ndarray:
    rgb_to_camera = xyz_to_camera @ SRGB_TO_XYZ
    rgb_to_camera /= rgb_to_camera.sum(axis=1, keepdims=True)
    return np.linalg.inv(rgb_to_camera)


@pytest.mark.parametrize("size", [(40, 56), (41, 57)])
@pytest.mark.parametrize("cfa", PATTERNS)
def test_read_raw_packs_like_numpy_slicing(tmp_path, cfa, size):
    mosaic = random_mosaic(*size)
    path = write_dng(tmp_path, mosaic, cfa)
    planes, crop = expected_planes(mosaic, cfa)

    image = read_raw(path)
    assert isinstance(image, RawImage) and str(image.path) == path
    assert image.pattern == cfa and image.crop == crop and image.shape == size and not image.clipped
    assert image.packed.dtype == torch.float32 and image.packed.shape == planes.shape
    np.testing.assert_allclose(image.packed.numpy(), planes, rtol=0, atol=1e-6)
    assert image.packed.min() < 0  # values below the black level keep their noise
    top, left = crop
    black_grid = np.array(BLACK_BY_POSITION).reshape(2, 2)
    expected_black = [black_grid[(top + dy) % 2, (left + dx) % 2] for dy, dx in [(0, 0), (0, 1), (1, 0), (1, 1)]]
    assert image.black_level.tolist() == expected_black and image.white_level == WHITE

    clipped = read_raw(path, clip=True)
    assert clipped.clipped
    np.testing.assert_allclose(clipped.packed.numpy(), np.clip(planes, 0, 1), rtol=0, atol=1e-6)


def test_metadata_white_balance_colour_matrix_and_no_noise_profile(tmp_path):
    path = write_dng(tmp_path, random_mosaic(40, 56), "GRBG")
    image = read_raw(path)
    gains = 1.0 / np.array(NEUTRAL)
    assert image.white_balance_source == "as_shot" and image.white_balance.dtype == torch.float32
    np.testing.assert_allclose(image.white_balance.numpy(), gains / gains[1], rtol=1e-6)

    expected = expected_cam_to_srgb(np.array(COLOR_MATRIX).reshape(3, 3))
    assert image.cam_to_srgb_source == "dng_color_matrix" and image.cam_to_srgb.dtype == torch.float32
    np.testing.assert_allclose(image.cam_to_srgb.numpy(), expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(image.cam_to_srgb.sum(dim=1).numpy(), np.ones(3), rtol=0, atol=1e-6)
    with rawpy.imread(path) as raw:  # LibRaw's own camera -> sRGB matrix, computed by its C code
        np.testing.assert_allclose(image.cam_to_srgb.numpy(), raw.color_matrix[:, :3], rtol=0, atol=1e-5)
    assert image.noise_profile is None


@pytest.mark.parametrize("d65_first", [True, False])
def test_colour_matrix_prefers_d65_and_applies_camera_calibration(tmp_path, d65_first):
    calibration = np.array([1.1, 0.05, 0.0, -0.03, 1.0, 0.02, 0.0, 0.04, 0.9])
    balance = np.array([1.2, 1.0, 0.8])
    first, second = (CalibrationIlluminant.D65, 17) if d65_first else (17, CalibrationIlluminant.D65)  # 17: A
    d65_index = 1 if d65_first else 2
    matrices = {d65_index: COLOR_MATRIX, 3 - d65_index: OTHER_MATRIX}
    extra = [
        (Tag.ColorMatrix1, rationals(matrices[1])),
        (Tag.CalibrationIlluminant1, first),
        (Tag.ColorMatrix2, rationals(matrices[2])),
        (Tag.CalibrationIlluminant2, second),
        (Tag.CameraCalibration1 if d65_first else Tag.CameraCalibration2, rationals(calibration)),
        (Tag.AnalogBalance, rationals(balance)),
    ]
    image = read_raw(write_dng(tmp_path, random_mosaic(40, 56), "RGGB", extra=extra))
    xyz_to_camera = np.diag(balance) @ calibration.reshape(3, 3) @ np.array(COLOR_MATRIX).reshape(3, 3)
    np.testing.assert_allclose(image.cam_to_srgb.numpy(), expected_cam_to_srgb(xyz_to_camera), rtol=0, atol=1e-6)


def test_white_balance_falls_back_to_daylight_then_to_ones(tmp_path):
    daylight = read_raw(write_dng(tmp_path, random_mosaic(40, 56), name="daylight", neutral=None))
    # LibRaw's daylight multipliers: 1 / the row sums of xyz2cam @ srgb2xyz (white = equal sRGB).
    gains = 1.0 / (np.array(COLOR_MATRIX).reshape(3, 3) @ SRGB_TO_XYZ).sum(axis=1)
    assert daylight.white_balance_source == "daylight"
    np.testing.assert_allclose(daylight.white_balance.numpy(), gains / gains[1], rtol=1e-5)

    bare = read_raw(write_dng(tmp_path, random_mosaic(40, 56), name="bare", neutral=None, color_matrix=None))
    assert bare.white_balance_source == "none" and bare.white_balance.tolist() == [1.0, 1.0, 1.0]
    assert bare.cam_to_srgb is None and bare.cam_to_srgb_source is None


@pytest.mark.parametrize(
    "profile, expected", [([2e-3, 3e-5], (2e-3, 3e-5)), ([1e-3, 1e-5, 2e-3, 2e-5, 3e-3, 3e-5], (2e-3, 2e-5))]
)
def test_noise_profile_round_trip(tmp_path, profile, expected):
    image = read_raw(write_dng(tmp_path, random_mosaic(40, 56), extra=[(Tag.NoiseProfile, profile)]))
    assert image.noise_profile == pytest.approx(expected, rel=1e-12)


def test_malformed_noise_profile_is_an_error(tmp_path):
    path = write_dng(tmp_path, random_mosaic(40, 56), extra=[(Tag.NoiseProfile, [1e-3, 1e-5, 2e-3])])
    with pytest.raises(DataFileError, match="NoiseProfile"):
        read_raw(path)


XTRANS = [1, 1, 0, 1, 1, 2, 1, 1, 2, 1, 1, 0, 2, 0, 1, 0, 2, 1, 1, 1, 2, 1, 1, 0, 1, 1, 0, 1, 1, 2, 0, 2, 1, 2, 0, 1]


def bad_file(folder, kind: str) -> tuple[str, str]:
    """(path, a phrase the error must contain) for a file read_raw must refuse."""
    mosaic = random_mosaic(40, 56)
    if kind == "truncated":
        path = write_dng(folder, mosaic)
        with open(path, "rb") as handle:
            data = handle.read()
        with open(path, "wb") as handle:
            handle.write(data[: len(data) // 2])
        return path, "cannot decode"
    if kind == "random bytes":
        path = folder / "noise.dng"
        path.write_bytes(np.random.default_rng(1).bytes(5000))
        return str(path), "cannot decode"
    if kind == "linear raw":
        linear = np.random.default_rng(2).integers(0, WHITE, (40, 56, 3)).astype(np.uint16)
        extra = [
            (Tag.PhotometricInterpretation, PhotometricInterpretation.Linear_Raw),
            (Tag.SamplesPerPixel, 3),
            (Tag.BitsPerSample, [16, 16, 16]),
            (Tag.BlackLevelRepeatDim, [1, 1]),
            (Tag.BlackLevel, 512),
        ]
        return write_dng(folder, linear, extra=extra), "no colour filter array"
    if kind == "x-trans":
        return write_dng(folder, mosaic, extra=[(Tag.CFARepeatPatternDim, [6, 6]), (Tag.CFAPattern, XTRANS)]), "6x6"
    if kind == "two reds":
        return write_dng(folder, mosaic, extra=[(Tag.CFAPattern, [0, 1, 0, 2])]), "RGRB"
    assert kind == "no blue"  # LibRaw itself refuses this one
    return write_dng(folder, mosaic, extra=[(Tag.CFAPattern, [0, 1, 1, 0])]), "cannot decode"


@pytest.mark.parametrize("kind", ["truncated", "random bytes", "linear raw", "x-trans", "two reds", "no blue"])
def test_unusable_files_are_data_file_errors_naming_the_file(tmp_path, kind):
    path, phrase = bad_file(tmp_path, kind)
    with pytest.raises(DataFileError, match=phrase) as error:
        read_raw(path)
    assert str(path) in str(error.value)


def test_missing_file_and_bad_arguments(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.dng"):
        read_raw(tmp_path / "missing.dng")
    with pytest.raises(FileNotFoundError, match="not a file"):
        read_raw(tmp_path)
    with pytest.raises(TypeError, match="clip"):
        read_raw(write_dng(tmp_path, random_mosaic(40, 56)), clip=1)


@pytest.mark.parametrize("size", [(6, 8), (7, 9)])
@pytest.mark.parametrize("cfa", PATTERNS)
def test_unify_to_rggb_crops_to_the_largest_even_rggb_block(cfa, size):
    height, width = size
    letters = np.tile(np.array(list(cfa)).reshape(2, 2), (height // 2 + 1, width // 2 + 1))[:height, :width]
    codes = np.vectorize(CFA_CODES.get)(letters) + 10 * np.arange(height * width).reshape(height, width)
    for mosaic in (np.broadcast_to(codes, (2, 3, height, width)), torch.from_numpy(codes)[None]):
        unified, (top, left) = unify_to_rggb(mosaic, cfa)
        out_height, out_width = unified.shape[-2:]
        assert unified.shape[:-2] == mosaic.shape[:-2]
        assert out_height % 2 == 0 and out_width % 2 == 0
        assert height - top - out_height in (0, 1) and width - left - out_width in (0, 1)
        kept = np.asarray(unified)[(0,) * (unified.ndim - 2)] // 10
        np.testing.assert_array_equal(
            kept, np.arange(height * width).reshape(height, width)[top : top + out_height, left : left + out_width]
        )
        np.testing.assert_array_equal(letters[top : top + 2, left : left + 2].ravel(), list("RGGB"))
        assert np.shares_memory(np.asarray(unified), np.asarray(mosaic))  # a view


def test_unify_to_rggb_rejects_bad_input():
    with pytest.raises(ValueError, match="pattern"):
        unify_to_rggb(np.zeros((4, 4)), "RGBG")
    with pytest.raises(TypeError, match="mosaic"):
        unify_to_rggb([[0, 1], [1, 2]], "RGGB")
    with pytest.raises(ValueError, match="mosaic"):
        unify_to_rggb(np.zeros(4), "RGGB")
    with pytest.raises(ValueError, match="no whole RGGB block"):
        unify_to_rggb(np.zeros((4, 2)), "GRBG")


@pytest.mark.parametrize("size", [(40, 56), (41, 57)])
@pytest.mark.parametrize("cfa", PATTERNS)
def test_restore_geometry_puts_planes_back_in_the_file_layout(tmp_path, cfa, size):
    mosaic = random_mosaic(*size)
    image = read_raw(write_dng(tmp_path, mosaic, cfa))
    restored = restore_geometry(image.packed, image, raw_units=True)
    assert restored.shape == size and restored.dtype == torch.float32
    (top, left), (height, width) = image.crop, image.packed.shape[1:]
    inner = (slice(top, top + 2 * height), slice(left, left + 2 * width))
    np.testing.assert_allclose(restored[inner].numpy(), mosaic[inner], rtol=0, atol=2e-3)
    restored = restored.numpy()
    for row in range(size[0]):  # cropped rows/columns repeat the same-colour row/column two pixels inwards
        source_row = row + 2 if row < top else row - 2 if row >= top + 2 * height else row
        for column in [*range(left), *range(left + 2 * width, size[1])]:
            source_column = column + 2 if column < left else column - 2
            assert restored[row, column] == restored[source_row, source_column]
        if source_row != row:
            assert np.array_equal(restored[row, inner[1]], restored[source_row, inner[1]])

    normalised = restore_geometry(image.packed, image)
    black = np.array(BLACK_BY_POSITION, dtype=np.float64).reshape(2, 2)
    site_black = np.tile(black, (size[0] // 2 + 1, size[1] // 2 + 1))[: size[0], : size[1]]
    np.testing.assert_allclose(normalised.numpy(), (restored - site_black) / (WHITE - site_black), rtol=0, atol=1e-6)

    # Written back as a DNG, the restored mosaic reads back to the same planes.
    written = write_dng(tmp_path, np.round(restored).astype(np.uint16), cfa, name="restored")
    np.testing.assert_allclose(read_raw(written).packed.numpy(), image.packed.numpy(), rtol=0, atol=1e-6)


def test_restore_geometry_rejects_bad_input(tmp_path):
    image = read_raw(write_dng(tmp_path, random_mosaic(40, 56)))
    with pytest.raises(ValueError, match="packed_rggb"):
        restore_geometry(image.packed[:, 1:], image)
    with pytest.raises(ValueError, match="packed_rggb"):
        restore_geometry(image.packed.numpy(), image)
    with pytest.raises(TypeError, match="packed_rggb"):
        restore_geometry(image.packed.to(torch.int32), image)
    with pytest.raises(TypeError, match="raw"):
        restore_geometry(image.packed, image.packed)
