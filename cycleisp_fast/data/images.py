"""Reading and writing 8/16-bit RGB images (PNG, JPEG, TIFF) as ``(3, H, W)`` float32 tensors in [0, 1].

Decoders: Pillow for PNGs of up to 8 bits per sample and for JPEG; pypng for 16-bit PNG (Pillow would truncate
16-bit RGB to 8 bits); tifffile for TIFF. Integer samples are divided by the largest value of their bit
depth (255, 65535; 2**bits - 1 for 1/2/4-bit PNG), grayscale is replicated to three channels and alpha is
dropped (not composited). Writers round to the nearest level and write through :func:`atomic_path`.

Every reader checks the size its file's header claims against the pixel limit
(:func:`cycleisp_fast.data.limits.check_pixels`) before decoding, and ``read_image(..., max_size=...)`` crops the
decoded integer samples before they become float32, so that memory follows the crop.
"""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import png
import tifffile
import torch
from PIL import Image, JpegImagePlugin, PngImagePlugin

from cycleisp_fast.data.crops import centre_crop
from cycleisp_fast.data.files import DataFileError, atomic_path
from cycleisp_fast.data.limits import check_pixels

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SUFFIXES = (".jpg", ".jpeg")
_TIFF_SUFFIXES = (".tif", ".tiff")
# What the decoders raise on corrupt or truncated data (FileNotFoundError is ruled out before decoding).
_DECODE_ERRORS = (
    ValueError,
    OSError,
    IndexError,
    KeyError,
    SyntaxError,
    EOFError,
    zlib.error,
    struct.error,
    png.Error,
    tifffile.TiffFileError,
)
_PILLOW_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr")


def is_image_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` has one of :data:`IMAGE_SUFFIXES` (any case) and is not hidden (temporary files are)."""
    path = Path(path)
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"image file not found: {path}")
    if not path.is_file():
        raise DataFileError(f"{path} is not a file (expected an image file)")


def _png_header(path: Path) -> tuple[int, int, int]:
    """``(height, width, bit depth)`` from a PNG's IHDR chunk (the first 26 bytes of the file)."""
    with open(path, "rb") as handle:
        return png_header(handle.read(26), path)


def png_header(data: bytes, where: str | os.PathLike) -> tuple[int, int, int]:
    """``(height, width, bit depth)`` from the IHDR chunk of PNG ``data`` (its first 26 bytes suffice), checked
    against the pixel limit before anything is decoded; DataFileError naming ``where`` otherwise."""
    if len(data) < 26 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise DataFileError(f"{where} is not a valid PNG file (bad signature or header)")
    width, height = struct.unpack(">II", data[16:24])
    check_pixels(where, height, width)
    return height, width, data[24]


def _read_png16(path: Path) -> np.ndarray:
    """``(H, W, planes)`` uint16 samples of a 16-bit PNG, as stored (pypng; an sBIT chunk is ignored, since PNG
    samples always span the full range of their bit depth). The size was checked from the header."""
    width, height, rows, info = png.Reader(filename=str(path)).read()
    samples = np.empty((height, width * info["planes"]), dtype=np.uint16)
    for index, row in enumerate(rows):
        samples[index] = row
    return samples.reshape(height, width, info["planes"])


def _open_pillow(path: Path) -> Image.Image:
    """Opens ``path`` with Pillow, reading only its header. PNG and JPEG (known by their signatures) go straight to
    their format's reader, so that the pixel limit of this package, not Pillow's global one, decides what is
    decoded; any other content goes through ``Image.open``, whose own limit is then reported as such."""
    with open(path, "rb") as handle:
        signature = handle.read(8)
    if signature.startswith(_PNG_SIGNATURE):
        return PngImagePlugin.PngImageFile(path)
    if signature.startswith(b"\xff\xd8\xff"):
        return JpegImagePlugin.JpegImageFile(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(path)
    except Image.DecompressionBombError as error:
        raise DataFileError(f"{path}: {error} (Pillow's own limit, PIL.Image.MAX_IMAGE_PIXELS)") from error


def _read_pillow(path: Path) -> np.ndarray:
    """``(H, W, 3)`` uint8 samples through Pillow (alpha dropped, grayscale/palette expanded), the size checked
    against the pixel limit from the header before decoding."""
    with _open_pillow(path) as image:
        width, height = image.size
        check_pixels(path, height, width)
        image.load()
        if image.mode not in _PILLOW_MODES:
            raise DataFileError(
                f"{path}: unsupported image mode {image.mode!r} (expected 8-bit gray, RGB, "
                "palette or with alpha; 16-bit images must be PNG or TIFF)"
            )
        return np.asarray(image.convert("RGB"))


def _read_tiff(path: Path) -> np.ndarray:
    """``(H, W, C)`` samples of the first image of a TIFF; C is 1 to 4. Axes, sample type and size are checked
    from the header before decoding."""
    with tifffile.TiffFile(path) as tiff:
        if not tiff.series:
            raise DataFileError(f"{path} holds no image")
        series = tiff.series[0]
        axes, shape = series.axes, tuple(series.shape)
        if axes not in ("YX", "YXS", "SYX"):
            raise DataFileError(
                f"{path}: expected one 2-D image (axes YX, YXS or SYX), got axes {axes!r} with shape {shape}"
            )
        if np.dtype(series.dtype) not in (np.uint8, np.uint16):
            raise DataFileError(
                f"{path}: unsupported sample type {series.dtype} (expected 8- or 16-bit unsigned integers)"
            )
        sizes = dict(zip(axes, shape))
        if sizes.get("S", 1) > 4:
            raise DataFileError(f"{path}: expected 1 to 4 channels (gray, gray+alpha, RGB, RGBA), got {sizes['S']}")
        check_pixels(path, sizes["Y"], sizes["X"])
        samples = series.asarray()
    if axes == "YX":
        return samples[:, :, None]
    if axes == "SYX":
        return np.moveaxis(samples, 0, -1)
    return samples


def _to_rgb_tensor(samples: np.ndarray, path: Path, max_size: int | None) -> torch.Tensor:
    """``(H, W, C)`` unsigned samples -> ``(3, H, W)`` float32 in [0, 1]; C = 1 (gray), 2 (gray + alpha),
    3 (RGB) or 4 (RGBA). With ``max_size``, the centred crop with even sides (:func:`centre_crop`) is taken first."""
    if samples.dtype not in (np.uint8, np.uint16):
        raise DataFileError(
            f"{path}: unsupported sample type {samples.dtype} (expected 8- or 16-bit unsigned integers)"
        )
    channels = samples.shape[2]
    if channels not in (1, 2, 3, 4):
        raise DataFileError(f"{path}: expected 1 to 4 channels (gray, gray+alpha, RGB, RGBA), got {channels}")
    planes = samples.transpose(2, 0, 1)
    if max_size is not None:
        planes = centre_crop(planes, max_size, even_sides=True)
    planes = np.repeat(planes[:1], 3, axis=0) if channels in (1, 2) else planes[:3]
    max_value = float(np.iinfo(samples.dtype).max)
    return torch.from_numpy(np.ascontiguousarray(planes)).to(torch.float32).div_(max_value)


def read_image(path: str | os.PathLike, *, max_size: int | None = None) -> torch.Tensor:
    """Reads a PNG, JPEG or TIFF image.

    Args:
        path: the file.
        max_size: when given (an int >= 2), return only the centred crop with even sides, each at most
            ``max_size`` (:func:`cycleisp_fast.data.crops.centre_crop`), taken from the integer samples
            before they are converted, so that the float32 image is only as large as the crop.

    Returns:
        ``(3, H, W)`` float32 in [0, 1]: 8-bit samples / 255, 16-bit / 65535 (1/2/4-bit PNG / (2**bits - 1));
        grayscale replicated to three channels, alpha dropped.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DataFileError: an unknown suffix, a corrupt/truncated/non-image file, an unsupported sample type, or a
            header claiming more pixels than the pixel limit (:mod:`cycleisp_fast.data.limits`).

    Example: ``read_image("photo.png", max_size=512).shape`` -> ``(3, 512, 512)`` for a large photo.
    """
    if max_size is not None and (isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 2):
        raise ValueError(f"max_size must be an int >= 2 or None, got {max_size!r}")
    path = Path(path)
    _check_readable(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise DataFileError(f"{path}: unknown image suffix {path.suffix!r}, expected one of {IMAGE_SUFFIXES}")
    try:
        if suffix in _TIFF_SUFFIXES:
            samples = _read_tiff(path)
        elif suffix == ".png":
            _, _, bit_depth = _png_header(path)
            samples = _read_png16(path) if bit_depth == 16 else _read_pillow(path)
        else:
            samples = _read_pillow(path)
        return _to_rgb_tensor(samples, path, max_size)
    except DataFileError:
        raise
    except _DECODE_ERRORS as error:
        raise DataFileError(
            f"{path} is not a readable image (corrupt or truncated?): {type(error).__name__}: {error}"
        ) from error


def _default_bits(suffix: str) -> int:
    return 16 if suffix in _TIFF_SUFFIXES else 8


def _image_to_hwc(image) -> np.ndarray:
    """A ``(3, H, W)`` tensor or ``(H, W, 3)`` numpy array of floats -> ``(H, W, 3)`` float64, checked."""
    if isinstance(image, torch.Tensor):
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"image must be a (3, H, W) tensor, got shape {tuple(image.shape)}")
        if not image.is_floating_point():
            raise TypeError(f"image must be a floating tensor with values in [0, 1], got {image.dtype}")
        return image.detach().to("cpu", torch.float64).permute(1, 2, 0).numpy()
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be an (H, W, 3) numpy array, got shape {image.shape}")
        if not np.issubdtype(image.dtype, np.floating):
            raise TypeError(f"image must be a floating array with values in [0, 1], got {image.dtype}")
        return image.astype(np.float64)
    raise TypeError(f"image must be a (3, H, W) torch.Tensor or an (H, W, 3) numpy array, got {type(image).__name__}")


def quantize(image, bits: int) -> np.ndarray:
    """``(3, H, W)`` tensor / ``(H, W, 3)`` array of floats in [0, 1] -> ``(H, W, 3)`` uint8 (bits 8) or uint16
    (bits 16): clamped to [0, 1], scaled by 2**bits - 1 and rounded to the nearest level. NaN/inf raise."""
    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits!r}")
    hwc = _image_to_hwc(image)
    if not np.isfinite(hwc).all():
        raise ValueError("image holds NaN or infinite values; cannot write it")
    max_value = (1 << bits) - 1
    return np.rint(np.clip(hwc, 0.0, 1.0) * max_value).astype(np.uint8 if bits == 8 else np.uint16)


def write_image(path: str | os.PathLike, image, bits: int | None = None) -> Path:
    """Writes ``image`` to ``path`` (format from the suffix), atomically.

    Args:
        path: ``.png``, ``.jpg``/``.jpeg`` (quality 95) or ``.tif``/``.tiff`` (uncompressed), any case.
        image: ``(3, H, W)`` torch tensor or ``(H, W, 3)`` numpy array, floats in [0, 1] (clamped).
        bits: 8 or 16 bits per sample; None means 8 for PNG/JPEG, 16 for TIFF. JPEG is 8-bit only.

    Returns:
        ``path`` as a Path.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ValueError(f"path {path} must end with one of {IMAGE_SUFFIXES}")
    bits = _default_bits(suffix) if bits is None else bits
    if suffix in _JPEG_SUFFIXES and bits != 8:
        raise ValueError(f"JPEG stores 8 bits per sample only; got bits={bits} for {path}")
    samples = quantize(image, bits)
    height, width = samples.shape[:2]
    with atomic_path(path) as temporary:
        if suffix in _TIFF_SUFFIXES:
            tifffile.imwrite(temporary, samples, photometric="rgb")
        elif bits == 16:
            with open(temporary, "wb") as handle:
                png.Writer(width, height, greyscale=False, bitdepth=16).write(handle, samples.reshape(height, -1))
        elif suffix == ".png":
            Image.fromarray(samples).save(temporary, format="PNG")
        else:
            Image.fromarray(samples).save(temporary, format="JPEG", quality=95)
    return path


def list_images(folder: str | os.PathLike) -> list[Path]:
    """The image files (suffix in :data:`IMAGE_SUFFIXES`, any case; hidden files skipped) directly in
    ``folder``, sorted by name.

    Raises:
        FileNotFoundError: the folder is missing or holds no image files.
        NotADirectoryError: ``folder`` is not a folder.
    """
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"image folder not found: {folder}")
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder (expected a folder of images)")
    images = sorted(
        (path for path in folder.iterdir() if path.is_file() and is_image_file(path)), key=lambda path: path.name
    )
    if not images:
        raise FileNotFoundError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in folder {folder}")
    return images
