"""Camera RAW files (anything LibRaw reads, via rawpy) -> canonical packed RGGB planes, with the metadata a
denoising pipeline needs.

:func:`read_raw` decodes the visible sensor area (``raw_image_visible``, in sensor orientation: the EXIF/DNG
orientation is not applied, so the colour filter array stays intact), unifies its Bayer pattern to RGGB by
cropping (:func:`unify_to_rggb`, Liu et al.'s "crop" unification), and packs it into planes (R, Gr, Gb, B), the
channel order of CycleISP, normalised to ``(value - black) / (white - black)`` with each plane's own black level.

Values are NOT clipped by default: below the black level the noise of a dark pixel is still there, and a
denoiser (or a noise estimate) wants it unbiased; clipping at 0 would lift the mean of every dark region.
``clip=True`` clamps to [0, 1], as CycleISP's own scripts do for their network inputs.

Only 2x2 Bayer sensors (one R, two G, one B) are supported; X-Trans, other colour filter layouts, linear
(demosaiced) DNGs and files LibRaw cannot decode raise :class:`~cycleisp_fast.data.files.DataFileError`
naming the file. :func:`read_sensor` returns the unpacked unified mosaic in raw units with the same metadata and,
on request, rawpy's sRGB rendering of the file from the same decoding (what ``cycleisp-fast prepare`` stores).
:func:`restore_geometry` puts a (denoised) packed result back into the file's own layout.
Benchmark crops are unified by flips instead (:func:`rggb_flip_axes`, as DND's official RAW script does), which
keep every pixel of the crop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Optional, Union

import numpy as np
import rawpy
import torch

from cycleisp_fast.checks import check_choice, check_tensor
from cycleisp_fast.color import normalised_rgb_to_camera
from cycleisp_fast.data.dng import read_dng_tags, usable_matrix
from cycleisp_fast.data.files import DataFileError
from cycleisp_fast.data.limits import check_pixels
from cycleisp_fast.ops import bayer_pack, bayer_unpack
from cycleisp_fast.ops.bayer import PATTERNS

Mosaic = Union[torch.Tensor, np.ndarray]

WHITE_BALANCE_SOURCES = ("as_shot", "daylight", "none")
CAM_TO_SRGB_SOURCES = ("rgb_xyz_matrix", "dng_color_matrix")

RAW_SUFFIXES = (
    ".dng",
    ".nef",
    ".nrw",
    ".cr2",
    ".cr3",
    ".crw",
    ".arw",
    ".srf",
    ".sr2",
    ".orf",
    ".rw2",
    ".raf",
    ".pef",
    ".srw",
    ".raw",
    ".rwl",
    ".3fr",
    ".iiq",
    ".erf",
    ".kdc",
    ".mef",
    ".mos",
    ".x3f",
)
"""Suffixes (any case) of camera RAW files; whether LibRaw decodes a given file is found out when it is read."""


def is_raw_file(path: Union[str, os.PathLike]) -> bool:
    """Whether ``path`` has a camera RAW suffix (:data:`RAW_SUFFIXES`)."""
    return Path(path).suffix.lower() in RAW_SUFFIXES


@dataclass(frozen=True, eq=False)
class RawMetadata:
    """What a RAW file says about its sensor data (shared by :class:`RawImage` and :class:`RawSensor`).

    Attributes:
        path: the file read.
        pattern: the file's own colour filter pattern, top-left 2x2 block row by row, e.g. ``"GRBG"``.
        crop: ``(top, left)`` rows/columns dropped at the top/left to bring the pattern to RGGB (each 0 or 1).
        shape: ``(H, W)`` of the file's visible mosaic (the packed planes cover ``2h x 2w`` of it).
        white_level: the saturation level, raw units.
        white_balance: ``(3,)`` float32 gains (R, G, B) with G = 1, to multiply the camera channels by.
        white_balance_source: ``"as_shot"`` (the camera's, LibRaw ``camera_whitebalance``), ``"daylight"``
            (LibRaw's daylight multipliers, derived from the colour matrix) or ``"none"`` (neither known: ones).
        cam_to_srgb: ``(3, 3)`` float32 camera RGB -> linear sRGB matrix (each row sums to 1, so white-balanced
            grey stays grey), or None when the file gives no colour matrix.
        cam_to_srgb_source: ``"rgb_xyz_matrix"`` (LibRaw's XYZ -> camera matrix), ``"dng_color_matrix"`` (the
            DNG ColorMatrix tags) or None.
        noise_profile: ``(shot, read)`` from the DNG NoiseProfile tag, in normalised units: the noise variance of
            a pixel of normalised signal ``x`` is ``shot * x + read``; None when the file has no such tag.
    """

    path: Path
    pattern: str
    crop: tuple[int, int]
    shape: tuple[int, int]
    white_level: float
    white_balance: torch.Tensor
    white_balance_source: str
    cam_to_srgb: Optional[torch.Tensor]
    cam_to_srgb_source: Optional[str]
    noise_profile: Optional[tuple[float, float]]


@dataclass(frozen=True, eq=False)
class RawImage(RawMetadata):
    """One RAW file, packed and normalised (:func:`read_raw`); its :class:`RawMetadata` and these.

    Attributes:
        packed: ``(4, h, w)`` float32 planes (R, Gr, Gb, B) of the RGGB-unified mosaic,
            ``(value - black) / (white - black)``: about [0, 1], below 0 in the noise of the darkest pixels unless
            read with ``clip=True`` (then clamped to [0, 1]).
        black_level: ``(4,)`` float32 black level of each packed plane (R, Gr, Gb, B), in raw units.
        clipped: whether ``packed`` was clamped to [0, 1].
    """

    packed: torch.Tensor
    black_level: torch.Tensor
    clipped: bool


def unify_to_rggb(mosaic: Mosaic, pattern: str) -> tuple[Mosaic, tuple[int, int]]:
    """Liu et al.'s "crop" Bayer unification: drops the first row and/or column so that the top-left 2x2 block
    becomes RGGB, and the last row and/or column where needed so that height and width stay even.

    Args:
        mosaic: ``(..., H, W)`` CFA mosaic, a torch.Tensor or a numpy array of any dtype.
        pattern: colours of its top-left 2x2 block: ``"RGGB" | "BGGR" | "GRBG" | "GBRG"``.

    Returns:
        ``(mosaic[..., top:top + H', left:left + W'], (top, left))``: a view (no copy) in RGGB, with
        ``H' = (H - top) // 2 * 2`` and ``W' = (W - left) // 2 * 2``; top and left are 0 or 1.
    """
    check_choice(pattern, "pattern", PATTERNS)
    if not isinstance(mosaic, (torch.Tensor, np.ndarray)):
        raise TypeError(
            f"mosaic must be a torch.Tensor or numpy array of shape (..., H, W), got {type(mosaic).__name__}"
        )
    if mosaic.ndim < 2:
        raise ValueError(f"mosaic must have shape (..., H, W), got {tuple(mosaic.shape)}")
    top, left = divmod(pattern.index("R"), 2)
    height = (mosaic.shape[-2] - top) // 2 * 2
    width = (mosaic.shape[-1] - left) // 2 * 2
    if height < 2 or width < 2:
        raise ValueError(
            f"mosaic of {mosaic.shape[-2]}x{mosaic.shape[-1]} pixels with pattern {pattern} holds no "
            f"whole RGGB block once {top} row(s) and {left} column(s) are cropped"
        )
    return mosaic[..., top : top + height, left : left + width], (top, left)


def pack_rggb(mosaic: torch.Tensor, pattern: str) -> torch.Tensor:
    """``(N, H, W)`` Bayer mosaics in ``pattern`` -> ``(N, 4, h, w)`` planes (R, Gr, Gb, B) of the
    RGGB-unified mosaics (:func:`unify_to_rggb`: cropped, so ``h = (H - top) // 2``)."""
    unified, _ = unify_to_rggb(mosaic, pattern)
    return bayer_pack(unified[:, None].contiguous(), "RGGB")


def rggb_flip_axes(pattern: str) -> tuple[int, ...]:
    """The axes to flip (``-2`` rows, ``-1`` columns) that turn a ``pattern`` mosaic of even height and width into
    an RGGB one: the unification of DND's official RAW script (``fliplr`` for GRBG, ``flipud`` for GBRG), which
    keeps every pixel; BGGR takes both flips. Flipping the same axes again restores the original.

    Example: ``torch.flip(mosaic, rggb_flip_axes("GRBG"))`` -> RGGB (``(-1,)``: a horizontal flip)."""
    check_choice(pattern, "pattern", PATTERNS)
    top, left = divmod(pattern.index("R"), 2)
    return tuple(axis for axis, flipped in ((-2, top), (-1, left)) if flipped)


OFFICIAL_RENDERING = {
    "use_camera_wb": True,
    "half_size": False,
    "user_flip": 0,
    "no_auto_bright": True,
    "output_bps": 8,
}
"""The ``rawpy`` ``postprocess`` arguments of CycleISP's ``datasets/convert_fivek_raw2rgb.py``: the sRGB rendering
its ISP networks are trained to reproduce (camera white balance, full size, sensor orientation, no auto-brightening,
8 bits)."""


@dataclass(frozen=True, eq=False)
class RawSensor(RawMetadata):
    """The sensor data of one RAW file as :func:`read_sensor` decodes it, before packing; its :class:`RawMetadata`
    and these.

    Attributes:
        mosaic: ``(H', W')`` uint16 (the file's sample type) copy of the visible mosaic unified to RGGB by cropping
            (:func:`unify_to_rggb`), raw sensor units: ``H' = (H - top) // 2 * 2``.
        black_level: ``(4,)`` float64 black level of each packed plane (R, Gr, Gb, B), raw units.
        rendering: ``(H, W, 3)`` uint8 sRGB rendering of the whole visible area by ``rawpy``'s ``postprocess``
            with the arguments given to :func:`read_sensor` (None when none were), not cropped.
    """

    mosaic: np.ndarray
    black_level: np.ndarray
    rendering: Optional[np.ndarray] = None


class RenderingSizeError(DataFileError):
    """LibRaw's rendering of a RAW file does not have the size of its visible mosaic (a pixel aspect ratio other
    than 1, Fuji's rotated sensors): its pixels do not line up with the mosaic's."""


def read_sensor(path: Union[str, os.PathLike], *, rendering: Optional[dict] = None) -> RawSensor:
    """Decodes a Bayer RAW file's visible mosaic and metadata (what :func:`read_raw` packs), and optionally its sRGB
    rendering by ``rawpy``, from one decoding of the file.

    Args:
        path: the file.
        rendering: ``rawpy.RawPy.postprocess`` arguments (e.g. :data:`OFFICIAL_RENDERING`); None: no rendering.

    Raises:
        FileNotFoundError: no such file.
        DataFileError: as :func:`read_raw`.
        RenderingSizeError: the rendering would not have, or does not have, the mosaic's size (checked before
            rendering where LibRaw's sizes tell: a pixel aspect ratio other than 1).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"RAW file {path} does not exist" if not path.exists() else f"RAW file {path} is not a file"
        )
    rendered = None
    try:
        with rawpy.imread(str(path)) as raw:  # reads the metadata only; the samples are decoded on first use
            check_pixels(path, raw.sizes.raw_height, raw.sizes.raw_width)
            mosaic, plane_colours, pattern = _bayer_mosaic(raw, path)
            black_by_colour = np.asarray(raw.black_level_per_channel, dtype=np.float64)
            white_level = float(raw.white_level)
            white_balance, white_balance_source = _white_balance(raw)
            xyz_to_camera = usable_matrix(np.asarray(raw.rgb_xyz_matrix, dtype=np.float64)[:3])
            if rendering is not None:
                if raw.sizes.pixel_aspect != 1:
                    raise RenderingSizeError(
                        f"RAW file {path} has a pixel aspect ratio of {raw.sizes.pixel_aspect:g}: its rendering "
                        f"would be stretched and would not match its {mosaic.shape[0]}x{mosaic.shape[1]} mosaic"
                    )
                rendered = raw.postprocess(**rendering)
    except rawpy.LibRawError as error:
        message = error.args[0].decode(errors="replace") if error.args and isinstance(error.args[0], bytes) else error
        raise DataFileError(
            f"cannot decode the RAW file {path} (corrupt, truncated, or not a RAW format LibRaw supports): {message}"
        ) from error
    if rendered is not None and rendered.shape[:2] != mosaic.shape:
        raise RenderingSizeError(
            f"RAW file {path}: its rendering is {rendered.shape[0]}x{rendered.shape[1]} pixels, its visible mosaic "
            f"{mosaic.shape[0]}x{mosaic.shape[1]}: the two do not line up"
        )

    try:
        unified, crop = unify_to_rggb(mosaic, pattern)
    except ValueError as error:
        raise DataFileError(f"RAW file {path}: {error}") from error
    top, left = crop
    black_level = black_by_colour[plane_colours[top : top + 2, left : left + 2].ravel()]
    if not np.all(np.isfinite(black_level)) or not white_level > black_level.max():
        raise DataFileError(
            f"RAW file {path} has a white level {white_level} that does not exceed its black levels "
            f"{black_level.tolist()} (R, Gr, Gb, B)"
        )
    dng_xyz_to_camera, noise_profile = read_dng_tags(path)
    cam_to_srgb, cam_to_srgb_source = _first_camera_to_srgb(xyz_to_camera, dng_xyz_to_camera)
    return RawSensor(
        path=path,
        mosaic=np.ascontiguousarray(unified),
        pattern=pattern,
        crop=crop,
        shape=tuple(mosaic.shape),
        black_level=black_level,
        white_level=white_level,
        white_balance=white_balance,
        white_balance_source=white_balance_source,
        cam_to_srgb=cam_to_srgb,
        cam_to_srgb_source=cam_to_srgb_source,
        noise_profile=noise_profile,
        rendering=rendered,
    )


def read_raw(path: Union[str, os.PathLike], *, clip: bool = False) -> RawImage:
    """Reads a Bayer RAW file (DNG, CR2, NEF, ARW, ... anything LibRaw decodes) into a :class:`RawImage`.

    Args:
        path: the file.
        clip: clamp the normalised planes to [0, 1] (default False: keep the noise below the black level).

    Raises:
        FileNotFoundError: no such file.
        DataFileError: LibRaw cannot decode it (corrupt, truncated, not a RAW file), it is not a 2x2 Bayer
            mosaic with one R, two G and one B (X-Trans, linear DNG, other layouts), its levels or DNG colour
            tags are malformed, or its sensor has more pixels than the pixel limit (:mod:`cycleisp_fast.data.limits`,
            checked before decoding).
    """
    if not isinstance(clip, bool):
        raise TypeError(f"clip must be a bool, got {type(clip).__name__}")
    sensor = read_sensor(path)
    cfa = torch.from_numpy(sensor.mosaic)[None, None]
    packed = bayer_pack(cfa, "RGGB", sensor.black_level.tolist(), sensor.white_level)[0]
    if clip:
        packed = packed.clamp(0.0, 1.0)
    metadata = {field.name: getattr(sensor, field.name) for field in fields(RawMetadata)}
    black_level = torch.tensor(sensor.black_level, dtype=torch.float32)
    return RawImage(**metadata, packed=packed, black_level=black_level, clipped=clip)


def restore_geometry(packed_rggb: torch.Tensor, raw: RawImage, *, raw_units: bool = False) -> torch.Tensor:
    """Puts packed RGGB planes (e.g. a denoised ``raw.packed``) back into the file's own mosaic layout.

    Args:
        packed_rggb: ``(4, h, w)`` floating planes (R, Gr, Gb, B), the shape of ``raw.packed``.
        raw: the :class:`RawImage` they came from (its pattern, crop and shape).
        raw_units: return raw sensor units, ``value * (white - black) + black`` with each plane's black level
            (float, unrounded, unclipped), instead of the normalised values.

    Returns:
        ``(H, W)`` mosaic in the file's pattern and size, packed_rggb's dtype and device. The rows and columns that
        the RGGB unification cropped (at most one on each side) are copies of the nearest row/column of the same
        colours, two pixels inwards: the packed planes hold no values for them.
    """
    if not isinstance(raw, RawImage):
        raise TypeError(f"raw must be a RawImage (see read_raw), got {type(raw).__name__}")
    if not isinstance(raw_units, bool):
        raise TypeError(f"raw_units must be a bool, got {type(raw_units).__name__}")
    if not isinstance(packed_rggb, torch.Tensor) or packed_rggb.shape != raw.packed.shape:
        got = tuple(packed_rggb.shape) if isinstance(packed_rggb, torch.Tensor) else type(packed_rggb).__name__
        raise ValueError(
            f"packed_rggb must be a torch.Tensor of shape {tuple(raw.packed.shape)} (4, h, w) like "
            f"raw.packed, got {got}"
        )
    check_tensor(packed_rggb[None], "packed_rggb", shape_doc="(4, h, w)", channels=4)
    if raw_units:
        black = raw.black_level.to(packed_rggb.device, packed_rggb.dtype)[:, None, None]
        packed_rggb = packed_rggb * (raw.white_level - black) + black
    inner = bayer_unpack(packed_rggb[None], "RGGB")[0, 0]
    (height, width), (top, left) = raw.shape, raw.crop
    inner_height, inner_width = inner.shape
    mosaic = inner.new_empty((height, width))
    mosaic[top : top + inner_height, left : left + inner_width] = inner
    for row in [*range(top), *range(top + inner_height, height)]:
        source = row + 2 if row < top else row - 2
        mosaic[row, left : left + inner_width] = mosaic[source, left : left + inner_width]
    for column in [*range(left), *range(left + inner_width, width)]:
        source = column + 2 if column < left else column - 2
        mosaic[:, column] = mosaic[:, source]
    return mosaic


def _bayer_mosaic(raw: rawpy.RawPy, path: Path) -> tuple[np.ndarray, np.ndarray, str]:
    """``(mosaic (H, W) copy of raw_image_visible, LibRaw colour indices of its top-left 4x4 pixels, pattern)``."""
    if raw.raw_type != rawpy.RawType.Flat or raw.raw_pattern is None:
        raise DataFileError(
            f"RAW file {path} holds no colour filter array mosaic (LibRaw raw_type "
            f"{raw.raw_type.name}, e.g. a linear or already demosaiced DNG); only 2x2 Bayer sensors "
            "are supported"
        )
    if raw.raw_pattern.shape != (2, 2):
        raise DataFileError(
            f"RAW file {path} has a {raw.raw_pattern.shape[0]}x{raw.raw_pattern.shape[1]} colour "
            "filter pattern (e.g. X-Trans); only 2x2 Bayer sensors are supported"
        )
    colours = np.array(raw.raw_colors_visible[:4, :4])  # the colour index of the top-left pixels
    description = raw.color_desc.decode("ascii", errors="replace")
    pattern = "".join(description[index] for index in colours[:2, :2].ravel())
    if sorted(pattern) != sorted("RGGB"):
        raise DataFileError(
            f"RAW file {path} has the colour filter pattern {pattern} (LibRaw colours "
            f"{description!r}); only Bayer patterns with one R, two G and one B are supported"
        )
    return np.array(raw.raw_image_visible), colours, pattern


def _white_balance(raw: rawpy.RawPy) -> tuple[torch.Tensor, str]:
    """As-shot gains, else daylight, else ones; (R, G, B) normalised to G = 1. LibRaw reports daylight gains of
    exactly 1 when the file has no colour data, so those count as unknown."""
    description = raw.color_desc.decode("ascii", errors="replace")
    rgb_indices = [description.index(colour) for colour in "RGB"]
    for source, gains in zip(WHITE_BALANCE_SOURCES, (raw.camera_whitebalance, raw.daylight_whitebalance)):
        rgb = np.asarray(gains, dtype=np.float64)[rgb_indices]
        if np.all(np.isfinite(rgb)) and np.all(rgb > 0):
            rgb = rgb / rgb[1]
            if source == "as_shot" or not np.all(rgb == 1.0):
                return torch.tensor(rgb, dtype=torch.float32), source
    return torch.ones(3), WHITE_BALANCE_SOURCES[-1]


def _first_camera_to_srgb(*xyz_to_camera_candidates) -> tuple[Optional[torch.Tensor], Optional[str]]:
    """``(cam_to_srgb, its source)`` from the first usable XYZ -> camera matrix, in the order of
    :data:`CAM_TO_SRGB_SOURCES`; (None, None) when none is."""
    for source, xyz_to_camera in zip(CAM_TO_SRGB_SOURCES, xyz_to_camera_candidates):
        cam_to_srgb = None if xyz_to_camera is None else _camera_to_srgb(xyz_to_camera)
        if cam_to_srgb is not None:
            return cam_to_srgb, source
    return None, None


def _camera_to_srgb(xyz_to_camera: np.ndarray) -> Optional[torch.Tensor]:
    """Brooks et al.'s convention: ``rgb2cam = xyz2cam @ srgb2xyz`` with rows normalised to sum to 1, and
    ``cam2rgb = inverse(rgb2cam)`` (its rows then sum to 1 too). None when rgb2cam is singular."""
    rgb_to_camera = normalised_rgb_to_camera(torch.from_numpy(xyz_to_camera))
    camera_to_srgb, info = torch.linalg.inv_ex(rgb_to_camera)
    if info.item() != 0 or not torch.isfinite(camera_to_srgb).all():
        return None
    return camera_to_srgb.float()
