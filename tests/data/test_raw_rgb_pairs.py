"""`cycleisp-fast prepare fivek` and the prepared RAW/sRGB pairs: DNG files written with pidng (every Bayer pattern,
black levels, odd and even sizes, a file whose rendering is stretched, an X-Trans file, a corrupt file) prepared,
then read back and compared with rawpy's own postprocess under the official arguments and with numpy slicing; the
training patches checked for alignment and Bayer phase on mosaics that encode their pixel positions."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import rawpy
import torch
from dng_files import BLACK_BY_POSITION, WHITE, write_dng
from pidng.core import Tag
from test_raw import XTRANS, random_mosaic

from cycleisp_fast import cli
from cycleisp_fast.data.files import DataFileError
from cycleisp_fast.data.raw import RenderingSizeError, read_sensor
from cycleisp_fast.data.raw_rgb_pairs import (
    BAYER_AUGMENTATIONS,
    RawRgbPairs,
    RawRgbPatches,
    entry_paths,
    validation_crops,
    write_entry,
)
from cycleisp_fast.ops import bayer_unpack

# CycleISP's datasets/convert_fivek_raw2rgb.py, written out here rather than imported from the package
OFFICIAL_ARGUMENTS = dict(use_camera_wb=True, half_size=False, user_flip=0, no_auto_bright=True, output_bps=8)
GOOD = {  # name -> (pattern, (H, W), black levels by CFA position)
    "rggb_even": ("RGGB", (40, 56), BLACK_BY_POSITION),
    "bggr_odd": ("BGGR", (41, 57), (64, 64, 64, 64)),
    "grbg_odd": ("GRBG", (43, 50), (0, 0, 0, 0)),
    "gbrg_even": ("GBRG", (48, 42), (256, 250, 260, 254)),
}


@pytest.fixture(scope="module")
def raw_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("raw_photos")
    (folder / "nested").mkdir()
    for seed, (name, (pattern, size, black)) in enumerate(GOOD.items()):
        where = folder / "nested" if seed % 2 else folder
        write_dng(where, random_mosaic(*size, seed=seed), pattern, name=name, black=black)
    mosaic = random_mosaic(40, 56, seed=9)
    write_dng(folder, mosaic, "RGGB", name="stretched", extra=[(Tag.DefaultScale, [[2, 1], [1, 1]])])
    write_dng(folder, mosaic, name="xtrans", extra=[(Tag.CFARepeatPatternDim, [6, 6]), (Tag.CFAPattern, XTRANS)])
    (folder / "corrupt.NEF").write_bytes(np.random.default_rng(1).bytes(3000))
    (folder / "notes.txt").write_text("not a RAW file")
    return folder


@pytest.fixture(scope="module")
def prepared(raw_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    assert cli.main(["prepare", "fivek", os.fspath(raw_folder), "-o", os.fspath(out), "--jobs", "2"]) == 0
    return out


def expected_crop(pattern: str, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the RGGB unification by cropping, with plain arithmetic."""
    top, left = divmod(pattern.index("R"), 2)
    return top, left, (size[0] - top) // 2 * 2, (size[1] - left) // 2 * 2


def test_prepare_writes_the_official_rendering_and_the_mosaic_cropped_alike(prepared, raw_folder):
    pairs = RawRgbPairs(prepared)
    assert pairs.names == sorted(GOOD)
    for index, name in enumerate(pairs.names):
        pattern, size, black = GOOD[name]
        source = next(raw_folder.rglob(f"{name}.dng"))
        with rawpy.imread(os.fspath(source)) as raw:
            rendering = raw.postprocess(**OFFICIAL_ARGUMENTS)
            visible = raw.raw_image_visible.copy()
        top, left, height, width = expected_crop(pattern, size)
        item = pairs[index]
        assert item["name"] == name and rendering.shape[:2] == visible.shape == size
        np.testing.assert_array_equal(
            item["srgb"], rendering[top : top + height, left : left + width].transpose(2, 0, 1)
        )
        np.testing.assert_array_equal(item["raw"], visible[top : top + height, left : left + width])
        meta = item["meta"]
        assert meta["pattern"] == pattern and meta["crop"] == [top, left] and meta["size"] == [height, width]
        assert meta["sensor_size"] == list(size) and meta["white_level"] == WHITE
        by_position = np.array(black).reshape(2, 2)
        plane_black = [by_position[(top + dy) % 2, (left + dx) % 2] for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1))]
        assert meta["black_level"] == plane_black
        assert meta["official_scale"] == 2 ** math.ceil(math.log2(visible.max()))
        assert meta["rendering"] == OFFICIAL_ARGUMENTS and meta["source"] == os.fspath(source)


def test_files_that_do_not_fit_are_skipped_and_reported(prepared):
    report = json.loads((prepared / "report.json").read_text())
    assert report["prepared"] == sorted(GOOD)
    reasons = {entry["name"]: entry["reason"] for entry in report["skipped"]}
    assert sorted(reasons) == ["corrupt", "stretched", "xtrans"]
    assert reasons["stretched"].startswith("size mismatch") and "pixel aspect ratio of 2" in reasons["stretched"]
    assert "6x6 colour filter pattern" in reasons["xtrans"] and "cannot decode" in reasons["corrupt"]
    for name in reasons:
        paths = entry_paths(prepared, name)
        assert paths["skipped"].is_file() and not any(paths[k].exists() for k in ("raw", "srgb", "meta"))
    assert not list(prepared.rglob(".*.tmp*"))  # no temporary file left behind


def test_the_stretched_rendering_really_has_another_size(raw_folder):
    with rawpy.imread(os.fspath(raw_folder / "stretched.dng")) as raw:
        assert raw.postprocess(**OFFICIAL_ARGUMENTS).shape[:2] != raw.raw_image_visible.shape
    with pytest.raises(RenderingSizeError, match="stretched.dng has a pixel aspect ratio of 2"):
        read_sensor(raw_folder / "stretched.dng", rendering=OFFICIAL_ARGUMENTS)
    assert read_sensor(raw_folder / "stretched.dng").rendering is None  # without rendering the mosaic reads


def test_prepare_resumes_without_redoing_finished_files(raw_folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["prepare", "fivek", os.fspath(raw_folder), "-o", os.fspath(out)]) == 0
    first = {path: path.stat().st_mtime_ns for path in out.glob("*/*.*")}  # the entries, not the report or lock
    entry_paths(out, "bggr_odd")["meta"].unlink()  # as if interrupted before the metadata was written
    capsys.readouterr()
    assert cli.main(["prepare", "fivek", os.fspath(raw_folder), "-o", os.fspath(out)]) == 0
    assert "resuming: 6 of 7 files already done" in capsys.readouterr().out
    for path, mtime in first.items():
        redone = path.stem == "bggr_odd"
        assert path.exists() and (path.stat().st_mtime_ns != mtime) == redone, path
    assert RawRgbPairs(out).names == sorted(GOOD)


def test_list_selects_files_and_names_those_missing(raw_folder, tmp_path, capsys):
    names = tmp_path / "split.txt"
    names.write_text("rggb_even\ngbrg_even.dng\n\n")
    out = tmp_path / "out"
    assert cli.main(["prepare", "fivek", os.fspath(raw_folder), "-o", os.fspath(out), "--list", os.fspath(names)]) == 0
    assert RawRgbPairs(out).names == ["gbrg_even", "rggb_even"]
    names.write_text("rggb_even\na0001-jmac_DSC1459\n")
    assert cli.main(["prepare", "fivek", os.fspath(raw_folder), "-o", os.fspath(out), "--list", os.fspath(names)]) == 1
    assert "--list names 1 file(s) that are not in" in capsys.readouterr().err


def test_bad_arguments_are_named(raw_folder, tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    cases = [
        (["prepare", "fivek", os.fspath(tmp_path / "none"), "-o", os.fspath(tmp_path / "o")], "does not exist"),
        (["prepare", "fivek", os.fspath(raw_folder), "-o", os.fspath(a_file)], "is an existing file"),
        (["prepare", "fivek", os.fspath(raw_folder), "-o", os.fspath(tmp_path / "o"), "--jobs", "0"], "--jobs"),
        (["prepare", "fivek", os.fspath(tmp_path), "-o", os.fspath(tmp_path / "o")], "holds no RAW files"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit):
            cli.main(argv)
        assert message in capsys.readouterr().err, argv
    twins = tmp_path / "twins"
    for sub in ("a", "b"):
        (twins / sub).mkdir(parents=True)
        write_dng(twins / sub, random_mosaic(8, 8), name="same")
    assert cli.main(["prepare", "fivek", os.fspath(twins), "-o", os.fspath(tmp_path / "o")]) == 1
    assert "two RAW files are named 'same'" in capsys.readouterr().err


def positional_entry(root, name, height, width, black=(0, 0, 0, 0)):
    """A prepared entry whose mosaic holds each pixel's index ``y * width + x`` and whose sRGB holds ``(y, x, 0)``:
    any crop or flip can be traced back to the pixels it took."""
    rows, columns = np.mgrid[:height, :width]
    mosaic = (rows * width + columns).astype(np.uint16)
    srgb = np.stack([rows, columns, np.zeros_like(rows)]).astype(np.uint8)
    meta = {
        "source": f"{name}.dng",
        "pattern": "RGGB",
        "crop": [0, 0],
        "sensor_size": [height, width],
        "black_level": list(black),
        "white_level": 65535.0,
        "official_scale": 1.0,  # raw_scale "official" then returns the indices themselves
        "white_balance": [2.0, 1.0, 1.5],
        "white_balance_source": "as_shot",
        "cam_to_srgb": None,
        "cam_to_srgb_source": None,
        "noise_profile": None,
        "rendering": OFFICIAL_ARGUMENTS,
    }
    write_entry(root, name, mosaic, srgb, meta)


def test_patches_are_aligned_keep_the_bayer_phase_and_use_every_augmentation(tmp_path):
    positional_entry(tmp_path, "a", 60, 70)
    positional_entry(tmp_path, "b", 50, 80)
    pairs = RawRgbPairs(tmp_path)
    patches = RawRgbPatches(pairs, 16, length=64, seed=3, raw_scale="official")
    flips = set()
    for index in range(len(patches)):
        item = patches[index]
        assert item["srgb"].shape == (3, 16, 16) and item["raw"].shape == (4, 8, 8)
        mosaic = bayer_unpack(item["raw"][None], "RGGB")[0, 0].round().long()
        rows, columns = (item["srgb"][:2] * 255).round().long()
        assert any(torch.equal(mosaic, rows * width + columns) for width in (70, 80)), index  # the same pixels
        site_row, site_column = rows % 2, columns % 2
        assert (site_row[0::2, 0::2] == 0).all() and (site_column[0::2, 0::2] == 0).all()  # R sites stay R
        assert (site_row[1::2, 1::2] == 1).all() and (site_column[1::2, 1::2] == 1).all()  # B sites stay B
        flips.add((bool(rows[1, 0] < rows[0, 0]), bool(columns[0, 1] < columns[0, 0]), bool(rows[0, 1] != rows[0, 0])))
    assert len(flips) == len(BAYER_AUGMENTATIONS)  # identity, vertical, horizontal flip and transpose all drawn
    again = RawRgbPatches(pairs, 16, length=64, seed=3, raw_scale="official")
    assert all(torch.equal(again[i]["raw"], patches[i]["raw"]) for i in (0, 7, 63))
    other = RawRgbPatches(pairs, 16, length=64, seed=4, raw_scale="official")
    assert not all(torch.equal(other[i]["raw"], patches[i]["raw"]) for i in range(8))


def test_levels_subtract_each_planes_black_level_and_clip(tmp_path):
    black = (1000, 1100, 1200, 1300)
    positional_entry(tmp_path, "a", 40, 48, black=black)
    pair = RawRgbPairs(tmp_path)[0]
    crops = validation_crops([pair], 1, 24, "levels")
    top, left = (40 - 24) // 4 * 2, (48 - 24) // 4 * 2  # centre crop at even offsets
    window = pair["raw"][top : top + 24, left : left + 24].astype(np.float64)
    for plane, (dy, dx) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        expected = np.clip((window[dy::2, dx::2] - black[plane]) / (65535.0 - black[plane]), 0, 1)
        np.testing.assert_allclose(crops["raw"][0, plane].numpy(), expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(crops["srgb"][0].numpy() * 255, pair["srgb"][:, top : top + 24, left : left + 24])
    assert (crops["raw"][0] == 0).any()  # the pixels below the black level are clipped


def test_broken_prepared_folders_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no meta/ in it"):
        RawRgbPairs(tmp_path)
    positional_entry(tmp_path, "a", 20, 20)
    np.save(entry_paths(tmp_path, "a")["raw"], np.zeros((20, 22), np.uint16))
    with pytest.raises(DataFileError, match=r"a.npy holds uint16 \(20, 22\), its metadata says uint16 \(20, 20\)"):
        RawRgbPairs(tmp_path)[0]
    entry_paths(tmp_path, "a")["meta"].write_text('{"format": 1}')
    with pytest.raises(DataFileError, match="a.json lacks name, source"):
        RawRgbPairs(tmp_path)
    with pytest.raises(DataFileError, match="smaller than patch_size \\+ 2 = 22"):
        positional_entry(tmp_path, "a", 20, 20)
        RawRgbPatches(RawRgbPairs(tmp_path), 20, length=1, seed=0)[0]


def test_a_second_run_into_the_same_folder_fails_at_once(raw_folder, tmp_path, capsys):
    from cycleisp_fast.data.locks import run_folder_lock

    out = tmp_path / "out"
    with run_folder_lock(out, "prepare"):  # another run holds the folder
        assert cli.main(["prepare", "fivek", os.fspath(raw_folder), "-o", os.fspath(out)]) == 1
    assert "is in use by another run" in capsys.readouterr().err
    assert not (out / "meta").exists() and not (out / "report.json").exists()
