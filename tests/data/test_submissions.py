"""The files the DND and SIDD servers take, read back with scipy field by field: names, MATLAB classes, shapes,
dtypes; written atomically (nothing else left in the folder)."""

from __future__ import annotations

import base64
import csv

import numpy as np
import pytest
import scipy.io

from cycleisp_fast.data.submissions import (
    is_complete_dnd_crop,
    read_dnd_crop,
    write_dnd_bundle,
    write_dnd_crop,
    write_sidd_kaggle_csv,
    write_sidd_submission,
)

RNG = np.random.default_rng(5)


def test_dnd_crop_is_float32_clipped_and_checked_from_its_header(tmp_path):
    crop = RNG.normal(0.5, 0.5, (6, 4, 3))
    path = write_dnd_crop(tmp_path / "0001_01.mat", crop)
    assert scipy.io.whosmat(path) == [("Idenoised_crop", (6, 4, 3), "single")]
    saved = read_dnd_crop(path)
    assert saved.dtype == np.float32 and np.array_equal(saved, np.clip(crop, 0, 1).astype(np.float32))
    assert is_complete_dnd_crop(path, (6, 4, 3))
    assert not is_complete_dnd_crop(path, (6, 4)) and not is_complete_dnd_crop(tmp_path / "0001_02.mat", (6, 4, 3))
    (tmp_path / "0001_03.mat").write_bytes(b"half a file")
    assert not is_complete_dnd_crop(tmp_path / "0001_03.mat", (6, 4, 3))
    write_dnd_crop(tmp_path / "0002_01.mat", RNG.random((6, 4)))
    assert scipy.io.whosmat(tmp_path / "0002_01.mat") == [("Idenoised_crop", (6, 4), "single")]
    with pytest.raises(ValueError, match=r"\(h, w, 3\) sRGB or \(h, w\) RAW"):
        write_dnd_crop(tmp_path / "x.mat", np.zeros((6, 4, 4)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0001_01.mat", "0001_03.mat", "0002_01.mat"]


@pytest.mark.parametrize("israw", [False, True])
def test_dnd_bundle_fields_as_the_official_bundle_submissions(tmp_path, israw):
    crops = [RNG.random((4, 6) if israw else (4, 6, 3)).astype(np.float32) for _ in range(3)]
    path = write_dnd_bundle(tmp_path / "bundled" / "0007.mat", crops, israw=israw)
    assert scipy.io.whosmat(path) == [
        ("Idenoised", (1, 3), "cell"),
        ("israw", (1, 1), "logical"),
        ("eval_version", (1,), "char"),
    ]
    contents = scipy.io.loadmat(path)
    assert contents["Idenoised"].shape == (1, 3) and contents["Idenoised"].dtype == object
    for saved, crop in zip(contents["Idenoised"][0], crops):
        assert saved.dtype == np.float32 and np.array_equal(saved, crop)
    assert contents["israw"].tolist() == [[int(israw)]] and contents["eval_version"].tolist() == ["1.0"]
    with pytest.raises(TypeError, match="israw must be a bool"):
        write_dnd_bundle(tmp_path / "b.mat", crops, israw=1)
    assert [p.name for p in (tmp_path / "bundled").iterdir()] == ["0007.mat"]


@pytest.mark.parametrize("kind", ["srgb", "raw"])
def test_sidd_submission_fields(tmp_path, kind):
    blocks = (
        RNG.integers(0, 256, (2, 3, 5, 4, 3), dtype=np.uint8)
        if kind == "srgb"
        else RNG.random((2, 3, 5, 4)).astype(np.float32)
    )
    optional = {"MethodName": "cycleisp-srgb (w.pth)", "MachineSpecs": "a CPU", "Authors": "Me"}
    path = write_sidd_submission(tmp_path, kind, blocks, 0.25, optional)
    suffix = "Srgb" if kind == "srgb" else "Raw"
    assert path == tmp_path / f"Submit{suffix}.mat"
    assert scipy.io.whosmat(path) == [
        (f"DenoisedBlocks{suffix}", (2, 3), "cell"),
        (f"TimeMP{suffix}", (1, 1), "double"),
        ("OptionalData", (1, 1), "struct"),
    ]
    contents = scipy.io.loadmat(path)
    cells = contents[f"DenoisedBlocks{suffix}"]
    for image in range(2):
        for block in range(3):
            assert cells[image, block].dtype == blocks.dtype
            assert np.array_equal(cells[image, block], blocks[image, block])
    assert contents[f"TimeMP{suffix}"].tolist() == [[0.25]]
    struct = contents["OptionalData"][0, 0]
    assert {name: str(struct[name][0]) for name in struct.dtype.names} == optional
    with pytest.raises(ValueError, match="'2nd' is not a MATLAB field name"):
        write_sidd_submission(tmp_path, kind, blocks, 0.25, {"2nd": "x"})
    with pytest.raises(ValueError, match="seconds_per_megapixel must be > 0"):
        write_sidd_submission(tmp_path, kind, blocks, 0.0, {})
    with pytest.raises(ValueError, match="blocks must be a numpy array"):
        write_sidd_submission(tmp_path, kind, blocks[0], 0.25, {})
    assert [p.name for p in tmp_path.iterdir()] == [f"Submit{suffix}.mat"]


def test_sidd_kaggle_csv_holds_base64_blocks_image_major(tmp_path):
    blocks = RNG.random((2, 3, 5, 4)).astype(np.float64)
    path = write_sidd_kaggle_csv(tmp_path, "raw", blocks)
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["ID", "BLOCK"] and [row[0] for row in rows[1:]] == [str(i) for i in range(6)]
    for index, (_, text) in enumerate(rows[1:]):
        decoded = np.frombuffer(base64.b64decode(text), dtype=np.float64).reshape(5, 4)
        assert np.array_equal(decoded, blocks[index // 3, index % 3])
