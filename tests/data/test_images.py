"""Image files (read_image, write_image, list_images) against independent encoders/decoders, and the bundled
sample photographs against scikit-image."""

from __future__ import annotations

import socket
import struct
import zlib

import numpy as np
import pytest
import skimage.data
import tifffile
import torch
from PIL import Image

from cycleisp_fast.data.files import DataFileError
from cycleisp_fast.data.images import IMAGE_SUFFIXES, list_images, read_image, write_image
from cycleisp_fast.data.samples import SAMPLE_NAMES, sample_images

HEIGHT, WIDTH = 16, 24


def _random_image() -> torch.Tensor:
    return torch.rand(3, HEIGHT, WIDTH)


def _levels(image: torch.Tensor, bits: int) -> np.ndarray:
    """The reference quantisation: (H, W, 3) integers round(clamp(x) * (2**bits - 1))."""
    hwc = image.double().clamp(0, 1).permute(1, 2, 0).numpy()
    return np.rint(hwc * (2**bits - 1)).astype(np.int64)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _encode_png16(samples: np.ndarray) -> bytes:
    """A 16-bit PNG (gray (H, W) or RGB (H, W, 3)) built by hand from the PNG specification, filter type 0."""
    height, width = samples.shape[:2]
    colour_type = 0 if samples.ndim == 2 else 2
    rows = samples.reshape(height, -1).astype(">u2")
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)
    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")


def _decode_png16_rgb(data: bytes) -> np.ndarray:
    """(H, W, 3) samples of a 16-bit RGB PNG whose rows all use filter type 0 (what pypng writes)."""
    position, idat, header = 8, b"", None
    while position < len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind, body = data[position + 4 : position + 8], data[position + 8 : position + 8 + length]
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        position += 12 + length
    width, height, depth, colour_type = struct.unpack(">IIBB", header[:10])
    assert (depth, colour_type) == (16, 2)
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, 1 + width * 6)
    assert (raw[:, 0] == 0).all(), "this reference decoder only handles filter type 0"
    return raw[:, 1:].copy().view(">u2").reshape(height, width, 3).astype(np.int64)


# ------------------------------------------------------------------------------------------ round trips


def test_png8_write_matches_pillow_and_reads_back(tmp_path):
    image = _random_image()
    path = write_image(tmp_path / "a.png", image)
    expected = _levels(image, 8)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), expected)
    read = read_image(path)
    assert read.dtype == torch.float32 and read.shape == (3, HEIGHT, WIDTH)
    torch.testing.assert_close(read, torch.from_numpy(expected.transpose(2, 0, 1) / 255).float())


def test_png16_write_matches_a_reference_decoder_and_reads_back(tmp_path):
    image = _random_image()
    path = write_image(tmp_path / "a.png", image, bits=16)
    expected = _levels(image, 16)
    np.testing.assert_array_equal(_decode_png16_rgb(path.read_bytes()), expected)
    torch.testing.assert_close(read_image(path), torch.from_numpy(expected.transpose(2, 0, 1) / 65535).float())
    assert (read_image(path) - image).abs().max() <= 0.5 / 65535 + 1e-7


def test_png16_rgb_and_gray_from_a_hand_built_file(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 65536, (HEIGHT, WIDTH, 3))
    (tmp_path / "rgb.png").write_bytes(_encode_png16(rgb))
    expected = torch.from_numpy(rgb.transpose(2, 0, 1) / 65535).float()
    torch.testing.assert_close(read_image(tmp_path / "rgb.png"), expected)
    gray = rgb[:, :, 1]
    (tmp_path / "gray.png").write_bytes(_encode_png16(gray))
    torch.testing.assert_close(
        read_image(tmp_path / "gray.png"), torch.from_numpy(np.stack([gray] * 3) / 65535).float()
    )


@pytest.mark.parametrize("suffix", [".tif", ".TIFF"])
def test_tiff_default_is_16_bit(tmp_path, suffix):
    image = _random_image()
    path = write_image(tmp_path / f"a{suffix}", image)
    stored = tifffile.imread(path)
    assert stored.dtype == np.uint16
    np.testing.assert_array_equal(stored, _levels(image, 16))
    torch.testing.assert_close(read_image(path), torch.from_numpy(stored.transpose(2, 0, 1) / 65535).float())


def test_tiff_8_bit(tmp_path):
    image = _random_image()
    path = write_image(tmp_path / "a.tif", image, bits=8)
    stored = tifffile.imread(path)
    assert stored.dtype == np.uint8
    np.testing.assert_array_equal(stored, _levels(image, 8))


def test_tiff_gray_and_planar_files_from_tifffile(tmp_path):
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, (HEIGHT, WIDTH), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "gray.tif", gray, photometric="minisblack")
    torch.testing.assert_close(read_image(tmp_path / "gray.tif"), torch.from_numpy(np.stack([gray] * 3) / 255).float())
    planar = rng.integers(0, 65536, (3, HEIGHT, WIDTH), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "planar.tif", planar, photometric="rgb", planarconfig="separate")
    torch.testing.assert_close(read_image(tmp_path / "planar.tif"), torch.from_numpy(planar / 65535).float())


@pytest.mark.parametrize("suffix", [".jpg", ".JPEG"])
def test_jpeg_round_trip_is_close_and_reads_like_pillow(tmp_path, suffix):
    yy, xx = torch.meshgrid(torch.linspace(0, 1, HEIGHT), torch.linspace(0, 1, WIDTH), indexing="ij")
    image = torch.stack([yy, xx, (yy + xx) / 2])  # smooth, so JPEG keeps it well
    path = write_image(tmp_path / f"a{suffix}", image)
    with Image.open(path) as decoded:
        assert decoded.format == "JPEG"
        reference = np.asarray(decoded.convert("RGB"))
    read = read_image(path)
    torch.testing.assert_close(read, torch.from_numpy(reference.transpose(2, 0, 1) / 255).float())
    assert (read - image).abs().mean() < 0.01


def test_write_clamps_and_rounds_to_nearest(tmp_path):
    values = torch.tensor([-0.5, 0.0, 0.4 / 255, 0.6 / 255, 1.0, 1.5])
    image = values.view(1, 1, 6).expand(3, 2, 6).contiguous()
    read = read_image(write_image(tmp_path / "a.png", image))
    torch.testing.assert_close(read[0, 0], torch.tensor([0, 0, 0, 1, 255, 255]) / 255)


def test_write_accepts_an_hwc_numpy_array(tmp_path):
    image = _random_image()
    path = write_image(tmp_path / "a.png", image.permute(1, 2, 0).numpy().astype(np.float64))
    np.testing.assert_array_equal(np.asarray(Image.open(path)), _levels(image, 8))


def test_write_is_atomic_when_encoding_fails(tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    path.write_bytes(b"previous")

    def failing_save(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        write_image(path, _random_image())
    assert path.read_bytes() == b"previous"
    assert [entry.name for entry in tmp_path.iterdir()] == ["a.png"]


@pytest.mark.parametrize(
    "image, bits, suffix, error, message",
    [
        (torch.rand(3, 4, 4), 16, ".jpg", ValueError, "JPEG stores 8 bits"),
        (torch.rand(3, 4, 4), 12, ".png", ValueError, "bits must be 8 or 16"),
        (torch.rand(3, 4, 4), None, ".bmp", ValueError, "must end with one of"),
        (torch.rand(4, 4, 3), None, ".png", ValueError, r"\(3, H, W\) tensor"),
        (np.random.rand(3, 4, 4), None, ".png", ValueError, r"\(H, W, 3\) numpy"),
        (torch.ones(3, 4, 4, dtype=torch.uint8), None, ".png", TypeError, "floating tensor"),
        (torch.full((3, 4, 4), float("nan")), None, ".png", ValueError, "NaN"),
        ([[0.5]], None, ".png", TypeError, "got list"),
    ],
)
def test_write_rejects_bad_arguments(tmp_path, image, bits, suffix, error, message):
    with pytest.raises(error, match=message):
        write_image(tmp_path / f"a{suffix}", image, bits)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------- gray / alpha / palette


def test_gray_alpha_and_palette_pngs_from_pillow(tmp_path):
    rng = np.random.default_rng(2)
    rgba = rng.integers(0, 256, (HEIGHT, WIDTH, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    torch.testing.assert_close(
        read_image(tmp_path / "rgba.png"), torch.from_numpy(rgba[:, :, :3].transpose(2, 0, 1) / 255).float()
    )
    gray_alpha = rgba[:, :, :2]
    Image.fromarray(gray_alpha, "LA").save(tmp_path / "la.png")
    torch.testing.assert_close(
        read_image(tmp_path / "la.png"), torch.from_numpy(np.stack([gray_alpha[:, :, 0]] * 3) / 255).float()
    )
    palette = [0, 0, 0, 255, 0, 0, 0, 128, 255]  # black, red, a blue
    indices = rng.integers(0, 3, (HEIGHT, WIDTH), dtype=np.uint8)
    paletted = Image.fromarray(indices, "P")
    paletted.putpalette(palette)
    paletted.save(tmp_path / "p.png")
    colours = np.asarray(palette, dtype=np.float64).reshape(3, 3)[indices]
    torch.testing.assert_close(
        read_image(tmp_path / "p.png"), torch.from_numpy(colours.transpose(2, 0, 1) / 255).float()
    )


def test_low_bit_depth_gray_png_is_scaled_to_its_own_range(tmp_path):
    import png

    values = np.array([[0, 5, 10, 15], [1, 2, 3, 4]])
    with open(tmp_path / "g4.png", "wb") as handle:
        png.Writer(4, 2, greyscale=True, bitdepth=4).write(handle, values.tolist())
    torch.testing.assert_close(read_image(tmp_path / "g4.png"), torch.from_numpy(np.stack([values] * 3) / 15).float())


# ---------------------------------------------------------------------------------------------- bad files


def _truncate(path, keep: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize("suffix, bits", [(".png", 8), (".png", 16), (".jpg", 8), (".tif", 16)])
@pytest.mark.parametrize("keep", [0.6, 0.05])
def test_truncated_files_raise_data_file_error_naming_the_file(tmp_path, suffix, bits, keep):
    path = write_image(tmp_path / f"cut{suffix}", _random_image(), bits)
    _truncate(path, keep)
    with pytest.raises(DataFileError, match=f"cut{suffix}"):
        read_image(path)


@pytest.mark.parametrize("suffix", IMAGE_SUFFIXES)
def test_non_image_and_empty_files_raise_data_file_error(tmp_path, suffix):
    (tmp_path / f"text{suffix}").write_text("this is not an image\n" * 4)
    (tmp_path / f"empty{suffix}").write_bytes(b"")
    for name in (f"text{suffix}", f"empty{suffix}"):
        with pytest.raises(DataFileError, match=name):
            read_image(tmp_path / name)


def test_corrupt_png_data_raises_data_file_error(tmp_path):
    path = write_image(tmp_path / "flip.png", _random_image(), bits=16)
    data = bytearray(path.read_bytes())
    data[60:80] = bytes(20)  # inside the IDAT chunk: its checksum no longer matches
    path.write_bytes(bytes(data))
    with pytest.raises(DataFileError, match="flip.png"):
        read_image(path)


def test_unsupported_sample_types_raise_data_file_error(tmp_path):
    tifffile.imwrite(tmp_path / "float.tif", np.zeros((HEIGHT, WIDTH, 3), np.float32), photometric="rgb")
    with pytest.raises(DataFileError, match="float.tif.*float32"):
        read_image(tmp_path / "float.tif")
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((2, HEIGHT, WIDTH, 3), np.uint8), photometric="rgb")
    with pytest.raises(DataFileError, match="stack.tif.*one 2-D image"):
        read_image(tmp_path / "stack.tif")


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "a.bmp").write_bytes(b"BM")
    with pytest.raises(DataFileError, match="a.bmp.*unknown image suffix"):
        read_image(tmp_path / "a.bmp")
    (tmp_path / "folder.png").mkdir()
    with pytest.raises(DataFileError, match="folder.png is not a file"):
        read_image(tmp_path / "folder.png")


# ------------------------------------------------------------------------------------------- list_images


def test_list_images_sorted_by_name_and_filtered(tmp_path):
    for name in ("b.PNG", "a.jpg", "c.tiff", "notes.txt", ".hidden.png", "d.JPEG", "e.Tif"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.png").mkdir()
    assert [path.name for path in list_images(tmp_path)] == ["a.jpg", "b.PNG", "c.tiff", "d.JPEG", "e.Tif"]


def test_list_images_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found.*nowhere"):
        list_images(tmp_path / "nowhere")
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(NotADirectoryError, match="file.png is not a folder"):
        list_images(tmp_path / "file.png")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(FileNotFoundError, match="no image files.*empty"):
        list_images(tmp_path / "empty")


# ----------------------------------------------------------------------------------------------- samples


def test_samples_load_offline_and_match_scikit_image(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("sample_images tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    samples = sample_images()
    assert tuple(samples) == SAMPLE_NAMES and len(SAMPLE_NAMES) >= 6
    for name, image in samples.items():
        reference = getattr(skimage.data, name)()
        height, width = reference.shape[0] // 2 * 2, reference.shape[1] // 2 * 2
        assert image.dtype == torch.float32 and image.shape == (3, height, width)
        assert 0 <= image.min() and image.max() <= 1 and image.std() > 0.02
        top, left = (reference.shape[0] - height) // 2, (reference.shape[1] - width) // 2
        torch.testing.assert_close(
            image, torch.from_numpy(reference[top : top + height, left : left + width].transpose(2, 0, 1) / 255).float()
        )


def test_sample_max_size_centre_crops_to_even_sides():
    samples = sample_images(["astronaut", "chelsea"], max_size=101)  # astronaut 512x512, chelsea 300x451
    assert list(samples) == ["astronaut", "chelsea"]
    assert samples["astronaut"].shape == (3, 100, 100) and samples["chelsea"].shape == (3, 100, 100)
    astronaut = skimage.data.astronaut()
    torch.testing.assert_close(
        samples["astronaut"], torch.from_numpy(astronaut[206:306, 206:306].transpose(2, 0, 1) / 255).float()
    )
    assert sample_images("coffee", max_size=1000)["coffee"].shape == (3, 400, 600)


@pytest.mark.parametrize(
    "names, max_size, message",
    [
        (["astronaut", "lena"], None, r"unknown sample image\(s\) \['lena'\]; choose from"),
        (None, 1, "max_size must be an int >= 2"),
        (None, 64.0, "max_size must be an int >= 2"),
    ],
)
def test_sample_errors(names, max_size, message):
    with pytest.raises(ValueError, match=message):
        sample_images(names, max_size=max_size)
