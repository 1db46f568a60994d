"""Real RAW/sRGB pairs, what CycleISP trains its ISP networks on (the paper: MIT-Adobe FiveK): the prepared folder
that ``cycleisp-fast prepare fivek`` writes (:func:`prepare_raw_file`, one RAW file at a time), the dataset that reads
it back (:class:`RawRgbPairs`) and the training patches cut from it (:class:`RawRgbPatches`).

A prepared folder ``OUT``, one entry ``NAME`` (the RAW file's stem) per usable RAW file::

    OUT/raw/NAME.npy     uint16 (H, W): the visible sensor mosaic in sensor orientation, brought to RGGB by
                         cropping (at most one row/column at each side, :func:`~cycleisp_fast.data.raw.unify_to_rggb`),
                         raw sensor units (black level not subtracted)
    OUT/srgb/NAME.npy    uint8 (3, H, W): rawpy's rendering with the official arguments
                         (:data:`~cycleisp_fast.data.raw.OFFICIAL_RENDERING`), cropped exactly as the mosaic
    OUT/meta/NAME.json   the file's metadata: source, pattern, crop, sizes, black levels (R, Gr, Gb, B), white level,
                         the official scale 2**ceil(log2(max)), white balance, camera -> sRGB matrix, noise profile
    OUT/skipped/NAME.json   instead of the three above: why the file could not be used (e.g. its rendering does not
                         have its mosaic's size, an X-Trans sensor, a corrupt file)

Uncompressed ``.npy`` files, so that a training patch reads only its own rows (memory-mapped): the official
preparation stores float16 ``.npy`` files for the same reason (and a JPEG of the rendering; ours is lossless). The
JSON file is written last: an entry is complete once it exists, which is what resuming looks at.

Example:
    >>> from cycleisp_fast.data.raw_rgb_pairs import RawRgbPairs, RawRgbPatches
    >>> pairs = RawRgbPairs("fivek_prepared")  # doctest: +SKIP
    >>> patch = RawRgbPatches(pairs, 128, length=1000, seed=0)[0]  # doctest: +SKIP
    >>> patch["srgb"].shape, patch["raw"].shape  # doctest: +SKIP
    (torch.Size([3, 128, 128]), torch.Size([4, 64, 64]))
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from cycleisp_fast.data.crops import centre_crop, random_crop
from cycleisp_fast.data.files import DataFileError, atomic_path
from cycleisp_fast.data.raw import OFFICIAL_RENDERING, RenderingSizeError, read_sensor, unify_to_rggb
from cycleisp_fast.ops import bayer_pack
from cycleisp_fast.seeds import Stream, keyed_generator

RAW_SCALES = ("levels", "official")
"""How RAW values become training targets: ``levels``, ``(value - black) / (white - black)`` with each plane's
black level, clipped to [0, 1] (ours); ``official``, ``value / 2**ceil(log2(max))`` with the image's maximum and no
black level, as CycleISP's ``datasets/image2npy.py``."""

FORMAT_VERSION = 1
META_KEYS = (
    "format",
    "name",
    "source",
    "pattern",
    "crop",
    "sensor_size",
    "size",
    "black_level",
    "white_level",
    "official_scale",
    "white_balance",
    "white_balance_source",
    "cam_to_srgb",
    "cam_to_srgb_source",
    "noise_profile",
    "rendering",
)
"""The keys of a ``meta/NAME.json`` file."""

BAYER_AUGMENTATIONS = ("identity", "vertical_flip", "horizontal_flip", "transpose")
"""The official Bayer augmentations (``Augment_Bayer``), drawn uniformly; the flipped mosaic is brought back to RGGB
by cropping (Liu et al.)."""


def entry_paths(root: str | os.PathLike, name: str) -> dict[str, Path]:
    """The files of entry ``name`` in the prepared folder ``root``: ``raw``, ``srgb``, ``meta`` and ``skipped``."""
    root = Path(root)
    return {
        "raw": root / "raw" / f"{name}.npy",
        "srgb": root / "srgb" / f"{name}.npy",
        "meta": root / "meta" / f"{name}.json",
        "skipped": root / "skipped" / f"{name}.json",
    }


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            np.save(handle, array, allow_pickle=False)


def _save_json(path: Path, value: Any) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(value, indent=1) + "\n", encoding="utf-8")


def official_scale(mosaic: np.ndarray) -> float:
    """``2**ceil(log2(max))`` of a mosaic (at least 1): the official preparation's divisor of the RAW values."""
    peak = float(mosaic.max()) if mosaic.size else 0.0
    return float(2.0 ** math.ceil(math.log2(peak))) if peak > 1 else 1.0


def write_entry(root: str | os.PathLike, name: str, mosaic: np.ndarray, srgb: np.ndarray, meta: dict) -> None:
    """Writes entry ``name`` of a prepared folder: the RGGB ``mosaic`` ``(H, W)`` uint16, its aligned ``srgb``
    ``(3, H, W)`` uint8 and ``meta`` (:data:`META_KEYS`, ``size`` and ``name`` filled in here); the JSON file last,
    each file atomically. Any stale ``skipped`` record of the name is removed."""
    if mosaic.dtype != np.uint16 or mosaic.ndim != 2 or mosaic.shape[0] % 2 or mosaic.shape[1] % 2:
        raise ValueError(f"mosaic must be a uint16 (H, W) array with even sides, got {mosaic.dtype} {mosaic.shape}")
    if srgb.dtype != np.uint8 or srgb.shape != (3, *mosaic.shape):
        raise ValueError(f"srgb must be a uint8 (3, H, W) array, H, W = {mosaic.shape}, got {srgb.dtype} {srgb.shape}")
    paths = entry_paths(root, name)
    meta = {**meta, "format": FORMAT_VERSION, "name": name, "size": list(mosaic.shape)}
    missing = [key for key in META_KEYS if key not in meta]
    if missing:
        raise ValueError(f"meta of {name!r} lacks {', '.join(missing)}")
    _save_npy(paths["raw"], mosaic)
    _save_npy(paths["srgb"], srgb)
    _save_json(paths["meta"], {key: meta[key] for key in META_KEYS})
    paths["skipped"].unlink(missing_ok=True)


def prepare_raw_file(source: str | os.PathLike, root: str | os.PathLike, name: str) -> dict[str, Any]:
    """Prepares one RAW file into the folder ``root`` as entry ``name``, or records why it cannot be used.

    The sRGB rendering is rawpy's ``postprocess`` with :data:`~cycleisp_fast.data.raw.OFFICIAL_RENDERING`; a file
    whose rendering does not have its visible mosaic's size is skipped, as the official script does. Both are cropped
    identically to bring the mosaic to RGGB.

    Returns:
        ``{"name", "source", "status": "prepared"}``, or ``"status": "skipped"`` with the ``"reason"`` (also written
        to ``skipped/NAME.json``): a file LibRaw cannot decode or that is no 2x2 Bayer mosaic, or a size mismatch.
        Errors writing the outputs (a full disk) are raised.
    """
    source = Path(source)
    try:
        sensor = read_sensor(source, rendering=OFFICIAL_RENDERING)
    except (DataFileError, FileNotFoundError) as error:
        kind = "size mismatch" if isinstance(error, RenderingSizeError) else "unusable"
        outcome = {"name": name, "source": os.fspath(source), "status": "skipped", "reason": f"{kind}: {error}"}
        _save_json(entry_paths(root, name)["skipped"], outcome)
        return outcome
    (top, left), (height, width) = sensor.crop, sensor.mosaic.shape
    srgb = np.ascontiguousarray(sensor.rendering[top : top + height, left : left + width].transpose(2, 0, 1))
    meta = {
        "source": os.fspath(source),
        "pattern": sensor.pattern,
        "crop": list(sensor.crop),
        "sensor_size": list(sensor.shape),
        "black_level": sensor.black_level.tolist(),
        "white_level": sensor.white_level,
        "official_scale": official_scale(sensor.mosaic),
        "white_balance": sensor.white_balance.tolist(),
        "white_balance_source": sensor.white_balance_source,
        "cam_to_srgb": None if sensor.cam_to_srgb is None else sensor.cam_to_srgb.tolist(),
        "cam_to_srgb_source": sensor.cam_to_srgb_source,
        "noise_profile": None if sensor.noise_profile is None else list(sensor.noise_profile),
        "rendering": dict(OFFICIAL_RENDERING),
    }
    write_entry(root, name, sensor.mosaic.astype(np.uint16, copy=False), srgb, meta)
    return {"name": name, "source": os.fspath(source), "status": "prepared"}


class RawRgbPairs(torch.utils.data.Dataset):
    """The entries of a prepared folder (see the module), sorted by name; item ``i`` is a dict of ``name``, ``raw``
    (uint16 ``(H, W)`` RGGB mosaic, memory-mapped), ``srgb`` (uint8 ``(3, H, W)``, memory-mapped) and ``meta``.

    Args:
        root: the prepared folder.

    Raises:
        FileNotFoundError: no such folder, or it holds no ``meta/`` folder (not a prepared folder).
        DataFileError: an entry's files are missing, malformed or of mismatched sizes (named).
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"prepared pairs folder {self.root} does not exist")
        if not (self.root / "meta").is_dir():
            raise FileNotFoundError(
                f"{self.root} is not a prepared RAW/sRGB folder (no meta/ in it): make one with "
                f"cycleisp-fast prepare fivek RAW_DIR -o {self.root}"
            )
        self.names = sorted(path.stem for path in (self.root / "meta").glob("*.json"))
        self.metas = [self._read_meta(name) for name in self.names]

    def _read_meta(self, name: str) -> dict[str, Any]:
        path = entry_paths(self.root, name)["meta"]
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise DataFileError(f"prepared pair metadata {path} cannot be read: {error}") from error
        missing = [key for key in META_KEYS if not isinstance(meta, dict) or key not in meta]
        if missing:
            raise DataFileError(f"prepared pair metadata {path} lacks {', '.join(missing)}: prepare the pair again")
        if meta["format"] != FORMAT_VERSION:
            raise DataFileError(f"{path} is of format {meta['format']!r}, this version reads {FORMAT_VERSION}")
        size = meta["size"]
        if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
            raise DataFileError(f"prepared pair metadata {path} has a malformed size {size!r}: prepare the pair again")
        levels = [*meta["black_level"], meta["white_level"], meta["official_scale"]]
        if len(meta["black_level"]) != 4 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in levels):
            raise DataFileError(f"prepared pair metadata {path} has malformed levels")
        if not meta["white_level"] > max(meta["black_level"]) or not meta["official_scale"] > 0:
            raise DataFileError(f"prepared pair metadata {path}: the white level must exceed the black levels")
        return meta

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict[str, Any]:
        name, meta = self.names[index], self.metas[index]
        paths = entry_paths(self.root, name)
        arrays = {}
        for key, dtype, shape in (("raw", np.uint16, tuple(meta["size"])), ("srgb", np.uint8, (3, *meta["size"]))):
            try:
                array = np.load(paths[key], mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as error:
                raise DataFileError(f"prepared pair file {paths[key]} cannot be read: {error}") from error
            if array.dtype != dtype or array.shape != shape:
                raise DataFileError(
                    f"prepared pair file {paths[key]} holds {array.dtype} {array.shape}, its metadata says "
                    f"{np.dtype(dtype)} {shape}: prepare the pair again"
                )
            arrays[key] = array
        return {"name": name, "meta": meta, **arrays}


def normalised_mosaic(mosaic: np.ndarray, meta: dict[str, Any], raw_scale: str) -> Tensor:
    """An RGGB mosaic crop at even offsets ``(H, W)`` of a prepared entry -> float32 targets (see :data:`RAW_SCALES`).

    Example:
        >>> import numpy as np
        >>> meta = {"black_level": [64, 64, 64, 64], "white_level": 1024, "official_scale": 1024.0}
        >>> normalised_mosaic(np.full((2, 2), 544, np.uint16), meta, "levels")[0, 0].item()
        0.5
    """
    values = torch.from_numpy(np.asarray(mosaic, dtype=np.float32))
    if raw_scale == "official":
        return values / meta["official_scale"]
    height, width = values.shape
    black = torch.tensor(meta["black_level"], dtype=torch.float32).reshape(2, 2).repeat(height // 2, width // 2)
    return ((values - black) / (meta["white_level"] - black)).clamp(0, 1)


def _check_size(pair: dict[str, Any], side: int, what: str) -> None:
    height, width = pair["raw"].shape
    if min(height, width) < side:
        raise DataFileError(f"prepared pair {pair['name']!r} is {width}x{height}, smaller than {what} = {side}")


def _pack(mosaic: Tensor) -> Tensor:
    return bayer_pack(mosaic[None, None].contiguous(), "RGGB")[0]


class RawRgbPatches(torch.utils.data.Dataset):
    """Aligned random training patches of prepared RAW/sRGB pairs, as the official RGB2RAW data loader cuts them.

    Item ``i`` comes from a random pair: a crop at even offsets (so the Bayer phase stays RGGB), one of the four
    :data:`BAYER_AUGMENTATIONS` applied to both images, the flipped mosaic brought back to RGGB by cropping, then
    ``srgb`` ``(3, p, p)`` float32 in [0, 1] and ``raw`` ``(4, p/2, p/2)`` float32, the packed planes
    (R, Gr, Gb, B) of the same pixels, normalised as ``raw_scale`` says (:data:`RAW_SCALES`). Every draw comes from a
    generator keyed by ``(seed, i)``.

    Args:
        pairs: a :class:`RawRgbPairs`.
        patch_size: ``p``, even.
        length: the number of items.
        seed: the draws' seed.
        raw_scale: ``"levels"`` or ``"official"``.
        augment: apply the Bayer augmentations (False: the crop as it is).
    """

    def __init__(
        self,
        pairs: Sequence[dict[str, Any]],
        patch_size: int,
        *,
        length: int,
        seed: int,
        raw_scale: str = "levels",
        augment: bool = True,
    ):
        if len(pairs) == 0:
            raise ValueError("pairs must hold at least one prepared pair")
        if patch_size < 2 or patch_size % 2:
            raise ValueError(f"patch_size must be even and at least 2, got {patch_size}")
        if raw_scale not in RAW_SCALES:
            raise ValueError(f"raw_scale must be one of {RAW_SCALES}, got {raw_scale!r}")
        self.pairs, self.patch_size, self.length, self.seed = pairs, patch_size, length, seed
        self.raw_scale, self.augment = raw_scale, augment

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} patches")
        draws = torch.rand(4, generator=keyed_generator(self.seed, index, Stream.RAW_SRGB), dtype=torch.float64)
        draws = draws.tolist()
        pair = self.pairs[min(int(draws[0] * len(self.pairs)), len(self.pairs) - 1)]
        p = self.patch_size
        margin = 2 if self.augment else 0  # room to crop back to RGGB after a flip
        _check_size(pair, p + margin, "patch_size + 2" if margin else "patch_size")
        mosaic = normalised_mosaic(random_crop(pair["raw"], p + margin, draws[1:3]), pair["meta"], self.raw_scale)
        srgb = torch.from_numpy(np.array(random_crop(pair["srgb"], p + margin, draws[1:3]))).float() / 255
        if self.augment:
            augmentation = BAYER_AUGMENTATIONS[min(int(draws[3] * 4), 3)]
            mosaic, srgb, pattern = _bayer_augment(mosaic, srgb, augmentation)
            _, (top, left) = unify_to_rggb(mosaic, pattern)
            mosaic, srgb = mosaic[top : top + p, left : left + p], srgb[:, top : top + p, left : left + p]
        return {"srgb": srgb.contiguous(), "raw": _pack(mosaic)}


def _bayer_augment(mosaic: Tensor, srgb: Tensor, augmentation: str) -> tuple[Tensor, Tensor, str]:
    """An RGGB ``mosaic`` ``(H, W)`` of even sides and its ``srgb`` ``(3, H, W)`` flipped or transposed alike, with
    the mosaic's new pattern."""
    if augmentation == "vertical_flip":
        return mosaic.flip(-2), srgb.flip(-2), "GBRG"
    if augmentation == "horizontal_flip":
        return mosaic.flip(-1), srgb.flip(-1), "GRBG"
    if augmentation == "transpose":
        return mosaic.T, srgb.transpose(-2, -1), "RGGB"
    return mosaic, srgb, "RGGB"


def validation_crops(pairs: Sequence[dict[str, Any]], count: int, size: int, raw_scale: str) -> dict[str, Tensor]:
    """``srgb`` ``(n, 3, s, s)`` and ``raw`` ``(n, 4, s/2, s/2)``: the centre crops (even offsets) of the first
    ``n = min(count, len(pairs))`` pairs, ``s = size``; a pair smaller than ``size`` raises DataFileError naming it."""
    srgb, raw = [], []
    for index in range(min(count, len(pairs))):
        pair = pairs[index]
        _check_size(pair, size, "val.patch_size")
        mosaic = centre_crop(pair["raw"], size, even_offsets=True)
        raw.append(_pack(normalised_mosaic(mosaic, pair["meta"], raw_scale)))
        srgb.append(torch.from_numpy(np.array(centre_crop(pair["srgb"], size, even_offsets=True))).float() / 255)
    return {"srgb": torch.stack(srgb), "raw": torch.stack(raw)}
