"""The pixel limit: files whose headers claim huge sizes fail from the header, before decoding, naming the file; the
limit is configurable; ``read_image(max_size=...)`` crops before the float32 conversion."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import scipy.io
import tifffile
import torch
from matlab_files import write_mat73
from PIL import Image
from test_raw import random_mosaic, write_dng

from cycleisp_fast.data.crops import centre_crop
from cycleisp_fast.data.files import DataFileError
from cycleisp_fast.data.images import read_image, write_image
from cycleisp_fast.data.limits import DEFAULT_MAX_PIXELS, MAX_PIXELS_VARIABLE, check_array_bytes, max_pixels
from cycleisp_fast.data.matlab import read_mat_variable
from cycleisp_fast.data.raw import read_raw

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(path, width: int, height: int, bit_depth: int = 8, colour_type: int = 2):
    """A PNG of a few dozen bytes whose IHDR claims ``width x height`` pixels (one empty IDAT)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    path.write_bytes(
        PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\x00")) + _chunk(b"IEND", b"")
    )
    return path


def jpeg_claiming(path, width: int, height: int):
    """A small JPEG whose SOF0 header is patched to claim ``width x height``."""
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path, format="JPEG")
    data = bytearray(path.read_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))
    return path


def tiff_claiming(path, width: int, height: int):
    """A 4x4 RGB TIFF whose ImageWidth / ImageLength tags are patched to claim ``width x height``."""
    tifffile.imwrite(path, np.zeros((4, 4, 3), np.uint8), photometric="rgb")
    with tifffile.TiffFile(path) as tiff:
        order, tags = tiff.byteorder, tiff.pages[0].tags
        patches = [
            (tags[name].valueoffset, tags[name].dtype, value)
            for name, value in (("ImageWidth", width), ("ImageLength", height))
        ]
    data = bytearray(path.read_bytes())
    for offset, dtype, value in patches:
        code = "H" if dtype == tifffile.DATATYPE.SHORT else "I"
        data[offset : offset + struct.calcsize(code)] = struct.pack(order + code, value)
    path.write_bytes(bytes(data))
    return path


BOMBS = {
    "png-8-bit": lambda path: png_claiming(path.with_suffix(".png"), 100_000, 100_000),
    "png-16-bit": lambda path: png_claiming(path.with_suffix(".png"), 100_000, 100_000, bit_depth=16),
    "png-palette": lambda path: png_claiming(path.with_suffix(".png"), 30_000, 30_000, colour_type=3),
    "jpeg": lambda path: jpeg_claiming(path.with_suffix(".jpg"), 60_000, 60_000),
    "tiff": lambda path: tiff_claiming(path.with_suffix(".tif"), 65_000, 65_000),
}


@pytest.mark.parametrize("kind", BOMBS)
def test_a_header_claiming_too_many_pixels_fails_before_decoding_naming_the_file(tmp_path, kind):
    path = BOMBS[kind](tmp_path / "bomb")
    assert path.stat().st_size < 2000
    with pytest.raises(DataFileError, match="is over the pixel limit") as caught:
        read_image(path)
    assert str(path) in str(caught.value) and MAX_PIXELS_VARIABLE in str(caught.value)


def test_an_empty_image_header_is_named(tmp_path):
    with pytest.raises(DataFileError, match="empty image"):
        read_image(png_claiming(tmp_path / "empty.png", 0, 10))


def _small_files(tmp_path) -> dict:
    """One 40x56 file of every reader: 8- and 16-bit PNG, JPEG, TIFF, DNG (LibRaw takes no smaller one)."""
    image = torch.rand(3, 40, 56)
    files = {
        name: write_image(tmp_path / f"small_{name}.{suffix}", image, bits=bits)
        for name, suffix, bits in (("png8", "png", 8), ("png16", "png", 16), ("jpeg", "jpg", 8), ("tiff", "tif", 16))
    }
    files["dng"] = write_dng(tmp_path, random_mosaic(40, 56), name="small_dng")
    return files


@pytest.mark.parametrize("limit, fails", [(40 * 56 - 1, True), (40 * 56, False)])
def test_the_limit_is_configurable_and_checked_by_every_reader(tmp_path, monkeypatch, limit, fails):
    files = _small_files(tmp_path)
    monkeypatch.setenv(MAX_PIXELS_VARIABLE, str(limit))
    for name, path in files.items():
        read = read_raw if name == "dng" else read_image
        if fails:
            with pytest.raises(DataFileError, match=f"40 x 56 pixels .* over the pixel limit of {limit / 1e6:g} MP"):
                read(path)
        else:
            read(path)


@pytest.mark.parametrize("version", ["v5", "v7.3"])
def test_matlab_arrays_are_bounded_by_the_same_budget(tmp_path, monkeypatch, version):
    path = tmp_path / "blocks.mat"
    blocks = np.zeros((2, 3, 8, 8), np.uint8)  # 384 bytes
    if version == "v5":
        scipy.io.savemat(path, {"Blocks": blocks})
    else:
        write_mat73(path, Blocks=blocks)
    monkeypatch.setenv(MAX_PIXELS_VARIABLE, "32")  # 12 * 32 = 384 bytes: just enough
    assert read_mat_variable(path, ("Blocks",))[1].shape == blocks.shape
    monkeypatch.setenv(MAX_PIXELS_VARIABLE, "31")
    with pytest.raises(DataFileError, match="'Blocks' of shape"):
        read_mat_variable(path, ("Blocks",))


@pytest.mark.parametrize("value", ["0", "-5", "many", "1e9"])
def test_a_bad_limit_variable_is_named(monkeypatch, value):
    monkeypatch.setenv(MAX_PIXELS_VARIABLE, value)
    with pytest.raises(ValueError, match=MAX_PIXELS_VARIABLE):
        max_pixels()


def test_the_default_limit_and_underscores(monkeypatch):
    monkeypatch.delenv(MAX_PIXELS_VARIABLE, raising=False)
    assert max_pixels() == DEFAULT_MAX_PIXELS
    monkeypatch.setenv(MAX_PIXELS_VARIABLE, "300_000_000")
    assert max_pixels() == 300_000_000
    check_array_bytes("x.mat", "a", (300_000_000,), 12)  # exactly the budget passes
    with pytest.raises(DataFileError, match="x.mat: the array 'a'"):
        check_array_bytes("x.mat", "a", (300_000_001,), 12)


@pytest.mark.parametrize("suffix, bits", [(".png", 8), (".png", 16), (".tif", 16), (".jpg", 8)])
@pytest.mark.parametrize("max_size", [2, 5, 8, 64])
def test_read_image_max_size_is_the_centre_crop_of_the_full_image(tmp_path, suffix, bits, max_size):
    path = write_image(tmp_path / f"photo{suffix}", torch.rand(3, 13, 10), bits=bits)
    assert torch.equal(read_image(path, max_size=max_size), centre_crop(read_image(path), max_size, even_sides=True))


def test_read_image_max_size_checks_its_argument(tmp_path):
    path = write_image(tmp_path / "photo.png", torch.rand(3, 4, 4))
    for bad in (1, 0, 2.5, True):
        with pytest.raises(ValueError, match="max_size"):
            read_image(path, max_size=bad)


MEMORY_PROBE = """
import resource, sys
from cycleisp_fast.data.images import read_image
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
image = read_image(sys.argv[1], max_size=64)
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(grown * 1024, tuple(image.shape))
"""


def test_max_size_keeps_a_large_file_from_becoming_float32_in_full(tmp_path):
    """A 6000 x 6000 PNG (36 MP; 432 MB as float32 RGB) read with max_size=64 grows the process by less than its
    float32 size: only the decoder's integer samples are held in full (issue: 2.7 GB before the crop)."""
    side = 6000
    path = tmp_path / "large.png"
    Image.fromarray(np.zeros((side, side), np.uint8), mode="L").save(path)
    probe = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(path)], capture_output=True, text=True, check=True)
    grown, shape = probe.stdout.split(" ", 1)
    assert shape.strip() == "(3, 64, 64)"
    assert int(grown) < 12 * side * side, f"reading grew the process by {int(grown) / 1e6:.0f} MB"
