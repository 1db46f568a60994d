"""Paired-image datasets (folder, SIDD sRGB/RAW, DND sRGB/RAW) built in tmp_path, and their layout errors.

The .mat files are written the way MATLAB v7.3 writes them (tests/matlab_files.py). SIDD metadata files are
MATLAB v5 (scipy.io.savemat)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import torch
from matlab_files import DND_BOXES, DND_HEIGHT, DND_NLF, DND_PATTERNS, DND_WIDTH, write_dnd, write_mat73
from PIL import Image
from torch.utils.data import DataLoader

from cycleisp_fast.data.datasets import (
    DND,
    DatasetLayoutError,
    PairedImageFolder,
    SIDDRaw,
    SIDDSrgb,
    detect_layout,
    open_pairs,
)
from cycleisp_fast.data.files import DataFileError

HEIGHT, WIDTH = 16, 24
RNG = np.random.default_rng(0)


def _save_png(path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def _as_tensor(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels.transpose(2, 0, 1) / 255).float()


def _random_pixels(height=HEIGHT, width=WIDTH) -> np.ndarray:
    return RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------------------ folder


def _folder(root, names=("b", "a"), noisy_suffix=".png"):
    pixels = {}
    for name in names:
        clean, noisy = _random_pixels(), _random_pixels()
        _save_png(root / "clean" / f"{name}.png", clean)
        path = root / "noisy" / f"{name}{noisy_suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(noisy).save(path)  # lossless formats only here (PNG, TIFF)
        pixels[name] = clean, noisy
    return pixels


def test_paired_image_folder_pairs_by_stem(tmp_path):
    pixels = _folder(tmp_path, noisy_suffix=".tif")
    dataset = PairedImageFolder(tmp_path)
    assert len(dataset) == 2 and [dataset[i]["name"] for i in range(2)] == ["a", "b"]
    for item in dataset:
        clean, noisy = pixels[item["name"]]
        torch.testing.assert_close(item["clean"], _as_tensor(clean))
        torch.testing.assert_close(item["noisy"], _as_tensor(noisy))


def test_paired_image_folder_custom_subfolders(tmp_path):
    _save_png(tmp_path / "gt" / "x.png", _random_pixels())
    _save_png(tmp_path / "input" / "x.png", _random_pixels())
    assert PairedImageFolder(tmp_path, clean="gt", noisy="input")[0]["name"] == "x"


def test_paired_image_folder_layout_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset folder not found"):
        PairedImageFolder(tmp_path / "nowhere")
    (tmp_path / "clean").mkdir()
    with pytest.raises(DatasetLayoutError, match=f"missing the noisy folder {tmp_path / 'noisy'}"):
        PairedImageFolder(tmp_path)
    (tmp_path / "noisy").mkdir()
    with pytest.raises(DatasetLayoutError, match=f"no image files in {tmp_path / 'clean'}"):
        PairedImageFolder(tmp_path)


def test_paired_image_folder_unmatched_stems_are_listed(tmp_path):
    _folder(tmp_path, names=("a", "b"))
    for name in ("c", "d"):
        _save_png(tmp_path / "clean" / f"{name}.png", _random_pixels())
    _save_png(tmp_path / "noisy" / "z.png", _random_pixels())
    with pytest.raises(DatasetLayoutError, match=r"2 only in .*clean: c, d; 1 only in .*noisy: z"):
        PairedImageFolder(tmp_path)


def test_paired_image_folder_duplicate_stems(tmp_path):
    _folder(tmp_path, names=("a",))
    _save_png(tmp_path / "noisy" / "a.tif", _random_pixels())
    with pytest.raises(DatasetLayoutError, match="two images with the stem 'a'"):
        PairedImageFolder(tmp_path)


def test_paired_image_folder_size_mismatch_names_both_files(tmp_path):
    _save_png(tmp_path / "clean" / "a.png", _random_pixels())
    _save_png(tmp_path / "noisy" / "a.png", _random_pixels(HEIGHT, WIDTH + 2))
    dataset = PairedImageFolder(tmp_path)
    with pytest.raises(DataFileError, match=r"clean .*clean/a.png is 16x24 \(HxW\), noisy .*noisy/a.png is 16x26"):
        dataset[0]


# -------------------------------------------------------------------------------------------------- SIDD


def _sidd_srgb(root, prefixed: bool):
    scenes = {}
    for number, scene in enumerate(["0001_001_S6_00100_00060_3200_L", "0002_001_IP_00400_00400_4400_N"], 1):
        prefix = f"{number:04d}_" if prefixed else ""
        for index in ("010", "011"):
            clean, noisy = _random_pixels(), _random_pixels()
            _save_png(root / "Data" / scene / f"{prefix}GT_SRGB_{index}.PNG", clean)
            _save_png(root / "Data" / scene / f"{prefix}NOISY_SRGB_{index}.PNG", noisy)
            scenes[f"{scene}_{index}"] = clean, noisy
    return scenes


@pytest.mark.parametrize("prefixed", [True, False], ids=["medium", "small"])
def test_sidd_srgb(tmp_path, prefixed):
    scenes = _sidd_srgb(tmp_path, prefixed)
    dataset = SIDDSrgb(tmp_path)
    assert [item["name"] for item in dataset] == sorted(scenes)
    for item in dataset:
        torch.testing.assert_close(item["clean"], _as_tensor(scenes[item["name"]][0]))
        torch.testing.assert_close(item["noisy"], _as_tensor(scenes[item["name"]][1]))


def test_sidd_srgb_accepts_lower_case_names(tmp_path):
    scene = tmp_path / "Data" / "0003_002_GP_00100_00100_5500_N"
    _save_png(scene / "gt_srgb_010.png", _random_pixels())
    _save_png(scene / "noisy_srgb_010.png", _random_pixels())
    assert [item["name"] for item in SIDDSrgb(tmp_path)] == ["0003_002_GP_00100_00100_5500_N_010"]


def test_sidd_layout_errors(tmp_path):
    with pytest.raises(DatasetLayoutError, match=r"Data is missing; expected .*/Data/<scene>/\[<NNNN>_\]GT_SRGB_010"):
        SIDDSrgb(tmp_path)
    (tmp_path / "Data" / "scene").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match="no SIDD SRGB pairs.*expected"):
        SIDDSrgb(tmp_path)
    with pytest.raises(DatasetLayoutError, match="no SIDD RAW pairs.*GT_RAW_010.MAT"):
        SIDDRaw(tmp_path, pattern="RGGB")
    _save_png(tmp_path / "Data" / "scene" / "0001_GT_SRGB_010.PNG", _random_pixels())
    with pytest.raises(DatasetLayoutError, match="without their NOISY_SRGB partner.*scene/0001_GT_SRGB_010.PNG"):
        SIDDSrgb(tmp_path)


def _cfa_metadata(path, codes, nested: bool) -> None:
    """A SIDD-like metadata struct: imfinfo of a DNG, CFAPattern (tag 33422) in UnknownTags at the top level
    or inside SubIFDs{2}."""
    tags = np.zeros((1, 3), dtype=[("ID", "O"), ("Offset", "O"), ("Value", "O")])
    for column, (tag, value) in enumerate([(33421, [2, 2]), (33422, codes), (50706, [1, 4, 0, 0])]):
        tags[0, column] = (np.array([[tag]]), np.array([[0]]), np.array([value], dtype=np.uint8))
    if nested:
        sub_ifds = np.empty((1, 2), dtype=object)
        sub_ifds[0, 0] = {"Width": 256}
        sub_ifds[0, 1] = {"Width": 4032, "UnknownTags": tags}
        metadata = {"Filename": "IMG.dng", "Width": 256, "SubIFDs": sub_ifds}
    else:
        metadata = {"Filename": "IMG.dng", "Width": 4032, "UnknownTags": tags}
    scipy.io.savemat(path, {"metadata": metadata})


def _sidd_raw(root, codes=(1, 0, 2, 1), nested=False, with_metadata=True):
    scene = root / "Data" / "0004_002_N6_00100_00160_5500_N"
    mosaics = {}
    for index in ("010", "011"):
        clean, noisy = RNG.random((HEIGHT, WIDTH)), RNG.random((HEIGHT, WIDTH))
        write_mat73(scene / f"0004_GT_RAW_{index}.MAT", x=clean)
        write_mat73(scene / f"0004_NOISY_RAW_{index}.MAT", x=noisy)
        if with_metadata:
            _cfa_metadata(scene / f"0004_METADATA_RAW_{index}.MAT", list(codes), nested)
        mosaics[f"{scene.name}_{index}"] = clean, noisy
    return mosaics


@pytest.mark.parametrize("nested", [False, True], ids=["top-level-tags", "sub-ifd-tags"])
def test_sidd_raw_reads_mosaics_and_the_pattern_from_metadata(tmp_path, nested):
    mosaics = _sidd_raw(tmp_path, codes=(1, 0, 2, 1), nested=nested)  # TIFF/EP codes: G R / B G
    dataset = SIDDRaw(tmp_path)
    assert len(dataset) == 2
    for item in dataset:
        clean, noisy = mosaics[item["name"]]
        assert item["clean"].shape == (1, HEIGHT, WIDTH) and item["clean"].dtype == torch.float32
        torch.testing.assert_close(item["clean"][0], torch.from_numpy(clean).float())
        torch.testing.assert_close(item["noisy"][0], torch.from_numpy(noisy).float())
        assert item["pattern"] == "GRBG"


def test_sidd_raw_explicit_pattern_needs_no_metadata(tmp_path):
    _sidd_raw(tmp_path, with_metadata=False)
    with pytest.raises(DatasetLayoutError, match="without METADATA_RAW_<index>.MAT.*pass pattern="):
        SIDDRaw(tmp_path)
    assert {item["pattern"] for item in SIDDRaw(tmp_path, pattern="BGGR")} == {"BGGR"}
    with pytest.raises(ValueError, match="pattern must be one of"):
        SIDDRaw(tmp_path, pattern="RGBG")


def test_sidd_raw_metadata_errors(tmp_path):
    _sidd_raw(tmp_path, codes=(0, 1, 1, 0))  # not a Bayer block
    with pytest.raises(DataFileError, match=r"METADATA_RAW_010.MAT: unsupported Bayer pattern codes \[0, 1, 1, 0\]"):
        SIDDRaw(tmp_path)[0]
    metadata = next(tmp_path.glob("Data/*/0004_METADATA_RAW_010.MAT"))
    scipy.io.savemat(metadata, {"metadata": {"Filename": "IMG.dng"}})
    with pytest.raises(DataFileError, match="no CFAPattern .*pass pattern="):
        SIDDRaw(tmp_path)[0]
    write_mat73(metadata, metadata=np.zeros((2, 2)))
    with pytest.raises(DataFileError, match="expected a MATLAB v5 .mat file.*pass pattern="):
        SIDDRaw(tmp_path)[0]


def test_sidd_raw_bad_mat_files(tmp_path):
    _sidd_raw(tmp_path, with_metadata=False)
    gt = next(tmp_path.glob("Data/*/0004_GT_RAW_010.MAT"))
    gt.write_bytes(b"MATLAB 5.0 MAT-file, not HDF5")
    with pytest.raises(DataFileError, match="GT_RAW_010.MAT is not a MATLAB v7.3"):
        SIDDRaw(tmp_path, pattern="RGGB")[0]
    write_mat73(gt, y=np.zeros((HEIGHT, WIDTH)))
    with pytest.raises(DataFileError, match=r"GT_RAW_010.MAT has no array 'x'; it holds \['y'\]"):
        SIDDRaw(tmp_path, pattern="RGGB")[0]
    write_mat73(gt, x=np.zeros((HEIGHT, WIDTH - 2)))
    with pytest.raises(DataFileError, match=r"sizes differ.*16x22.*16x24"):
        SIDDRaw(tmp_path, pattern="RGGB")[0]


# --------------------------------------------------------------------------------------------------- DND


def _colour_map(pattern: str) -> np.ndarray:
    """(DND_HEIGHT, DND_WIDTH) colour letters of a full mosaic whose top-left block is ``pattern``."""
    block = np.array(list(pattern)).reshape(2, 2)
    return np.tile(block, (DND_HEIGHT // 2, DND_WIDTH // 2))


def test_dnd_srgb_crops_follow_the_devkit_box_convention(tmp_path):
    images = write_dnd(tmp_path)
    dataset = DND(tmp_path, kind="srgb")
    assert len(dataset) == 6
    assert [item["name"] for item in dataset] == ["0001_01", "0001_02", "0001_03", "0002_01", "0002_02", "0002_03"]
    for number, item in enumerate(dataset):
        image_number, box_number = divmod(number, 3)
        first_row, first_col, last_row, last_col = DND_BOXES[image_number][box_number]
        expected = images["srgb", image_number][
            first_row - 1 : last_row, first_col - 1 : last_col
        ]  # MATLAB bb(1):bb(3)
        torch.testing.assert_close(item["noisy"], torch.from_numpy(expected.transpose(2, 0, 1)))
        assert item["box"].tolist() == [0, 0, 8, 8]
        assert set(item) == {"name", "noisy", "box"}


def test_dnd_raw_crops_noise_levels_and_patterns(tmp_path):
    images = write_dnd(tmp_path)
    dataset = DND(tmp_path, kind="raw")
    for number, item in enumerate(dataset):
        image_number, box_number = divmod(number, 3)
        first_row, first_col, last_row, last_col = DND_BOXES[image_number][box_number]
        expected = images["raw", image_number][first_row - 1 : last_row, first_col - 1 : last_col]
        torch.testing.assert_close(item["noisy"], torch.from_numpy(expected)[None])
        assert (item["shot"], item["read"]) == DND_NLF[image_number]
        colours = _colour_map(DND_PATTERNS[image_number])[first_row - 1 : last_row, first_col - 1 : last_col]
        assert item["pattern"] == "".join(colours[:2, :2].ravel())
    assert [dataset[index]["pattern"] for index in (0, 1, 3, 4)] == ["RGGB", "GBRG", "BGGR", "RGGB"]  # odd offsets


def test_dnd_margin_keeps_context_clipped_at_the_border(tmp_path):
    images = write_dnd(tmp_path, kinds=("raw",))
    dataset = DND(tmp_path, kind="raw", margin=3)
    for number, item in enumerate(dataset):
        image_number, box_number = divmod(number, 3)
        first_row, first_col, last_row, last_col = DND_BOXES[image_number][box_number]
        top, left = max(first_row - 4, 0), max(first_col - 4, 0)
        bottom, right = min(last_row + 3, DND_HEIGHT), min(last_col + 3, DND_WIDTH)
        image = images["raw", image_number]
        torch.testing.assert_close(item["noisy"][0], torch.from_numpy(image[top:bottom, left:right]))
        box_top, box_left, height, width = item["box"].tolist()
        inner = item["noisy"][0, box_top : box_top + height, box_left : box_left + width]
        torch.testing.assert_close(inner, torch.from_numpy(image[first_row - 1 : last_row, first_col - 1 : last_col]))
        assert item["pattern"] == "".join(
            _colour_map(DND_PATTERNS[image_number])[top : top + 2, left : left + 2].ravel()
        )
    assert dataset[0]["box"].tolist() == [0, 0, 8, 8] and dataset[1]["box"].tolist() == [3, 3, 8, 8]


def test_dnd_items_collate(tmp_path):
    write_dnd(tmp_path, kinds=("raw",))
    batch = next(iter(DataLoader(DND(tmp_path, kind="raw"), batch_size=3)))
    assert batch["noisy"].shape == (3, 1, 8, 8) and batch["name"] == ["0001_01", "0001_02", "0001_03"]
    assert batch["box"].shape == (3, 4) and batch["pattern"] == ["RGGB", "GBRG", "RGGB"]


def test_dnd_layout_errors(tmp_path):
    with pytest.raises(DatasetLayoutError, match=r"info.mat is missing; expected .*/info.mat and .*images_srgb/0001"):
        DND(tmp_path)
    write_dnd(tmp_path, kinds=("srgb",))
    with pytest.raises(DatasetLayoutError, match=r"2 of the 2 DND images .* missing from .*images_raw: 0001.mat, 0002"):
        DND(tmp_path, kind="raw")
    with pytest.raises(ValueError, match="kind must be one of"):
        DND(tmp_path, kind="linear")
    with pytest.raises(ValueError, match="margin must be an int >= 0"):
        DND(tmp_path, margin=-1)


def test_dnd_bad_info_files(tmp_path):
    write_dnd(tmp_path, fields=("boundingboxes",))
    assert len(DND(tmp_path, kind="srgb")) == 6  # sRGB needs neither nlf nor camera
    with pytest.raises(DataFileError, match=r"info.mat: the 'info' struct has no field 'nlf'"):
        DND(tmp_path, kind="raw")
    (tmp_path / "info.mat").write_bytes(b"not hdf5")
    with pytest.raises(DataFileError, match="info.mat is not a MATLAB v7.3"):
        DND(tmp_path)


def test_dnd_box_outside_the_image(tmp_path):
    write_dnd(tmp_path, kinds=("srgb",))
    write_mat73(tmp_path / "images_srgb" / "0001.mat", InoisySRGB=np.zeros((20, 20, 3), np.float32))
    with pytest.raises(DataFileError, match=r"box 2 of image 1 \[10, 21, 17, 28\] lies outside the 20x20 image"):
        DND(tmp_path)[1]


# ------------------------------------------------------------------------------------------- open_pairs


def test_open_pairs_detects_every_layout(tmp_path):
    _folder(tmp_path / "folder")
    _sidd_srgb(tmp_path / "sidd_srgb", prefixed=True)
    _sidd_raw(tmp_path / "sidd_raw")
    write_dnd(tmp_path / "dnd_srgb", kinds=("srgb",))
    write_dnd(tmp_path / "dnd_raw", kinds=("raw",))
    expected = {
        "folder": PairedImageFolder,
        "sidd_srgb": SIDDSrgb,
        "sidd_raw": SIDDRaw,
        "dnd_srgb": DND,
        "dnd_raw": DND,
    }
    for folder, dataset_class in expected.items():
        assert detect_layout(tmp_path / folder) == folder.replace("_", "-")
        dataset = open_pairs(tmp_path / folder)
        assert type(dataset) is dataset_class and len(dataset) > 0
    assert open_pairs(tmp_path / "dnd_raw").kind == "raw"


def test_open_pairs_explicit_layout_and_options(tmp_path):
    _sidd_raw(tmp_path, with_metadata=False)
    assert open_pairs(tmp_path, "sidd-raw", pattern="GBRG")[0]["pattern"] == "GBRG"
    write_dnd(tmp_path / "dnd")
    with pytest.raises(ValueError, match=r"fits several dataset layouts \['dnd-srgb', 'dnd-raw'\]"):
        open_pairs(tmp_path / "dnd")
    assert open_pairs(tmp_path / "dnd", "dnd-raw", margin=2)[1]["box"].tolist() == [2, 2, 8, 8]
    with pytest.raises(ValueError, match="layout must be one of"):
        open_pairs(tmp_path, "sidd")


def test_open_pairs_unknown_layout_lists_what_it_looked_for(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(
        DatasetLayoutError,
        match=r"clean/ \+ noisy/ \(folder\).*GT_SRGB_010.PNG \(sidd-srgb\).*"
        r"GT_RAW_010.MAT \(sidd-raw\).*images_srgb/ \(dnd-srgb\).*"
        r"images_raw/ \(dnd-raw\)",
    ):
        open_pairs(tmp_path)
    with pytest.raises(FileNotFoundError, match="dataset folder not found"):
        open_pairs(tmp_path / "nowhere")
