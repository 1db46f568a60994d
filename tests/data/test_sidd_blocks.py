"""SIDD blocks files (benchmark and validation) read into items, their errors, and the helpers RAW blocks need:
Bayer patterns (given, or SIDD phone codes), flips to RGGB, and the noise level pooled over an image's blocks."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from matlab_files import write_sidd_blocks

from cycleisp_fast.data.datasets import detect_layout, matching_layouts, open_pairs
from cycleisp_fast.data.files import DataFileError
from cycleisp_fast.data.raw import pack_rggb, rggb_flip_axes
from cycleisp_fast.data.sidd_blocks import SIDDBlocks, parse_sidd_patterns, read_sidd_blocks, sidd_validation_blocks
from cycleisp_fast.noise.estimation import estimate_raw_noise

RNG = np.random.default_rng(3)
SRGB_KEY, RAW_KEY = "BenchmarkNoisyBlocksSrgb", "BenchmarkNoisyBlocksRaw"


def noisy_mosaics(n_images: int, n_blocks: int, size: int, shot: float, read: float, seed: int = 0) -> np.ndarray:
    """``(n_images, n_blocks, size, size)`` float64 blocks: smooth ramps plus heteroscedastic noise, in (0, 1)."""
    rng = np.random.default_rng(seed)
    rows, cols = np.indices((size, size)) / size
    clean = 0.15 + 0.6 * (0.5 * rows + 0.5 * cols) + 0.1 * rng.random((n_images, n_blocks, 1, 1))
    return np.clip(clean + rng.standard_normal(clean.shape) * np.sqrt(shot * clean + read), 0.001, 0.999)


@pytest.mark.parametrize("v73", [False, True], ids=["v5", "v7.3"])
def test_blocks_files_of_either_matlab_version_read_in_matlab_order(tmp_path, v73):
    srgb = RNG.integers(0, 256, (2, 3, 16, 12, 3), dtype=np.uint8)
    raw = RNG.random((2, 3, 16, 12)).astype(np.float32)
    write_sidd_blocks(tmp_path / "s.mat", SRGB_KEY, srgb, v73=v73)
    write_sidd_blocks(tmp_path / "r.mat", RAW_KEY, raw, v73=v73)
    name, array = read_sidd_blocks(tmp_path / "s.mat", [RAW_KEY, SRGB_KEY])
    assert name == SRGB_KEY and array.dtype == np.uint8 and np.array_equal(array, srgb)
    name, array = read_sidd_blocks(tmp_path / "r.mat", [RAW_KEY])
    assert name == RAW_KEY and array.dtype == np.float32 and np.array_equal(array, raw)


@pytest.mark.parametrize(
    "key, blocks, message",
    [
        (SRGB_KEY, np.zeros((2, 16, 16, 3), np.uint8), r"must be \(n_images, n_blocks, h, w, 3\) uint8, got shape"),
        (SRGB_KEY, np.zeros((2, 3, 16, 16, 4), np.uint8), r"must be \(n_images, n_blocks, h, w, 3\) uint8, got shape"),
        (SRGB_KEY, np.zeros((2, 3, 16, 16, 3)), r"uint8, got dtype float64"),
        (RAW_KEY, np.zeros((2, 3, 16, 16), np.uint16), r"\(n_images, n_blocks, h, w\) float .*got dtype uint16"),
        (RAW_KEY, np.zeros((2, 3, 16, 16, 3)), r"\(n_images, n_blocks, h, w\) float .*got shape"),
        (
            "x",
            np.zeros((2, 3, 16, 16)),
            r"holds no array 'BenchmarkNoisyBlocksSrgb' or 'BenchmarkNoisyBlocksRaw'; "
            r"it holds \['x'\]",
        ),
    ],
)
def test_bad_blocks_files_name_the_file_and_what_was_expected(tmp_path, key, blocks, message):
    path = tmp_path / "blocks.mat"
    write_sidd_blocks(path, key, blocks)
    with pytest.raises(DataFileError, match=message) as caught:
        read_sidd_blocks(path, [SRGB_KEY, RAW_KEY])
    assert str(path) in str(caught.value)


def test_files_that_are_not_matlab_files(tmp_path):
    (tmp_path / "junk.mat").write_bytes(b"not a MATLAB file at all" * 8)
    with pytest.raises(DataFileError, match="junk.mat is not a MATLAB .mat file"):
        read_sidd_blocks(tmp_path / "junk.mat", [SRGB_KEY])
    with pytest.raises(FileNotFoundError, match="nope.mat"):
        read_sidd_blocks(tmp_path / "nope.mat", [SRGB_KEY])


def test_srgb_blocks_are_items_of_uint8_over_255(tmp_path):
    noisy = RNG.integers(0, 256, (2, 3, 16, 12, 3), dtype=np.uint8)
    write_sidd_blocks(tmp_path / "BenchmarkNoisyBlocksSrgb.mat", SRGB_KEY, noisy)
    blocks = SIDDBlocks(tmp_path / "BenchmarkNoisyBlocksSrgb.mat")
    assert (blocks.kind, blocks.shape, len(blocks)) == ("srgb", (2, 3), 6)
    item = blocks[4]
    assert (item["name"], item["image"], item["block"]) == ("0002_02", 1, 1) and set(item) == {
        "name",
        "image",
        "block",
        "noisy",
    }
    assert item["noisy"].dtype == torch.float32 and item["noisy"].shape == (3, 16, 12)
    torch.testing.assert_close(item["noisy"], torch.from_numpy(noisy[1, 1].transpose(2, 0, 1) / 255).float())
    with pytest.raises(ValueError, match="for RAW blocks"):
        SIDDBlocks(tmp_path / "BenchmarkNoisyBlocksSrgb.mat", pattern="RGGB")


def test_raw_blocks_take_patterns_and_a_noise_level_pooled_per_image(tmp_path):
    noisy = noisy_mosaics(2, 3, 40, shot=4e-3, read=2e-4)
    write_sidd_blocks(tmp_path / "BenchmarkNoisyBlocksRaw.mat", RAW_KEY, noisy, v73=True)
    blocks = SIDDBlocks(tmp_path / "BenchmarkNoisyBlocksRaw.mat", pattern=parse_sidd_patterns("s6,IP"))
    assert blocks.patterns == ["GRBG", "RGGB"]
    item = blocks[3]
    assert item["pattern"] == "RGGB" and item["noisy"].shape == (1, 40, 40)
    torch.testing.assert_close(item["noisy"][0], torch.from_numpy(noisy[1, 0]).float())
    expected = estimate_raw_noise(pack_rggb(torch.from_numpy(noisy[1]).float(), "RGGB"), pooled=True)
    assert (item["shot"], item["read"]) == (float(expected.shot[0]), float(expected.read[0]))
    assert item["shot"] == pytest.approx(4e-3, rel=0.3)
    fixed = SIDDBlocks(tmp_path / "BenchmarkNoisyBlocksRaw.mat", pattern="BGGR", noise=(1e-3, 1e-5))
    assert (fixed[5]["shot"], fixed[5]["read"], fixed[5]["pattern"]) == (1e-3, 1e-5, "BGGR")


def test_raw_blocks_pattern_errors(tmp_path):
    write_sidd_blocks(tmp_path / "r.mat", RAW_KEY, noisy_mosaics(2, 1, 20, 1e-3, 1e-5))
    with pytest.raises(ValueError, match="carry no Bayer pattern.*--pattern"):
        SIDDBlocks(tmp_path / "r.mat")
    with pytest.raises(ValueError, match="3 Bayer patterns given .* for the 2 images"):
        SIDDBlocks(tmp_path / "r.mat", pattern=["RGGB", "BGGR", "GRBG"])
    with pytest.raises(argparse.ArgumentTypeError, match="'XX' .* neither a Bayer pattern .* nor a SIDD phone code"):
        parse_sidd_patterns("RGGB,xx")
    with pytest.raises(DataFileError, match="cannot estimate the noise level of image 1 .*--shot/--read"):
        SIDDBlocks(tmp_path / "r.mat", pattern="RGGB")[0]  # 20x20 mosaics: too few 8x8 blocks to fit a line


def test_pooled_noise_estimate_of_crops_that_are_too_small_alone():
    crops = torch.from_numpy(noisy_mosaics(1, 32, 32, shot=2e-3, read=1e-4, seed=1)[0]).float()
    packed = pack_rggb(crops, "RGGB")  # (32, 4, 16, 16): 4 blocks of 8x8 each, too few for a fit alone
    with pytest.raises(ValueError, match="image 0 of packed has too few"):
        estimate_raw_noise(packed[:1])
    pooled = estimate_raw_noise(packed, pooled=True)
    assert pooled.shot.shape == (1,) and float(pooled.shot[0]) == pytest.approx(2e-3, rel=0.3)
    fitted = float(pooled.shot[0]) * 0.45 + float(pooled.read[0])  # the variance at a mid-level brightness
    assert fitted == pytest.approx(2e-3 * 0.45 + 1e-4, rel=0.1)
    with pytest.raises(TypeError, match="pooled must be a bool"):
        estimate_raw_noise(packed, pooled=1)


@pytest.mark.parametrize("pattern", ["RGGB", "GRBG", "GBRG", "BGGR"])
def test_flips_bring_any_pattern_to_rggb_and_back(pattern):
    colours = np.tile(np.array(list(pattern)).reshape(2, 2), (3, 4))  # a 6x8 mosaic's colour letters
    axes = rggb_flip_axes(pattern)
    flipped = np.flip(colours, [axis % 2 for axis in axes])
    assert "".join(flipped[:2, :2].ravel()) == "RGGB"
    mosaic = torch.rand(1, 6, 8)
    assert torch.equal(torch.flip(torch.flip(mosaic, axes), axes), mosaic)


def test_validation_folders_are_detected_and_need_both_files(tmp_path):
    noisy = RNG.integers(0, 256, (1, 2, 16, 16, 3), dtype=np.uint8)
    write_sidd_blocks(tmp_path / "ValidationNoisyBlocksSrgb.mat", "ValidationNoisyBlocksSrgb", noisy)
    assert matching_layouts(tmp_path) == ["sidd-val-srgb"]
    with pytest.raises(FileNotFoundError, match=r"missing: .*ValidationGtBlocksSrgb.mat"):
        open_pairs(tmp_path)
    write_sidd_blocks(tmp_path / "ValidationGtBlocksSrgb.mat", "ValidationGtBlocksSrgb", noisy[:, :1])
    with pytest.raises(DataFileError, match=r"ground truth .* shape \(1, 1, 16, 16, 3\), the noisy .* \(1, 2, 16"):
        open_pairs(tmp_path, "sidd-val-srgb")
    write_sidd_blocks(tmp_path / "ValidationGtBlocksSrgb.mat", "ValidationGtBlocksSrgb", 255 - noisy)
    blocks = sidd_validation_blocks(tmp_path, "srgb")
    assert detect_layout(tmp_path) == "sidd-val-srgb" and len(blocks) == 2
    torch.testing.assert_close(blocks[1]["clean"], 1 - blocks[1]["noisy"])
