"""The Smartphone Image Denoising Dataset (SIDD-Medium / SIDD-Small layout): sRGB pairs (:class:`SIDDSrgb`,
layout ``"sidd-srgb"``) and RAW pairs with each phone's Bayer pattern read from its metadata (:class:`SIDDRaw`,
:func:`read_sidd_pattern`, layout ``"sidd-raw"``). SIDD's validation blocks are :mod:`cycleisp_fast.data.sidd_blocks`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
import torch
from torch.utils.data import Dataset

from cycleisp_fast.checks import check_choice
from cycleisp_fast.data.datasets._common import (
    DatasetLayoutError,
    _check_root,
    _check_same_size,
    _few,
    _pattern_from_codes,
    load_pair,
)
from cycleisp_fast.data.files import DataFileError
from cycleisp_fast.data.matlab import read_mat_array
from cycleisp_fast.ops.bayer import PATTERNS

_DNG_CFA_PATTERN_TAG = 33422  # TIFF/EP CFAPattern: colours of the CFA repeat block, 0 = R, 1 = G, 2 = B

# A SIDD ground-truth file name, upper-cased: [NNNN_]GT_SRGB_010.PNG or [NNNN_]GT_RAW_010.MAT.
_SIDD_GROUND_TRUTH = re.compile(r"(?P<prefix>\d+_)?GT_(?P<domain>SRGB|RAW)_(?P<index>\d+)\.(?P<extension>PNG|MAT)")


@dataclass(frozen=True)
class _SiddScene:
    name: str
    clean: Path
    noisy: Path
    metadata: Path | None


def _sidd_scenes(root, domain: str) -> list[_SiddScene]:
    """Pairs ``root/Data/<scene>/[NNNN_]GT_<domain>_<index>.<ext>`` with ``NOISY_<domain>_<index>`` (any case)."""
    root = _check_root(root)
    extension = "PNG" if domain == "SRGB" else "MAT"
    expected = f"{root}/Data/<scene>/[<NNNN>_]GT_{domain}_010.{extension} + NOISY_{domain}_010.{extension} (and _011)"
    data = root / "Data"
    if not data.is_dir():
        raise DatasetLayoutError(f"not a SIDD folder: {data} is missing; expected {expected}")
    scenes, unpaired = [], []
    for scene in sorted(path for path in data.iterdir() if path.is_dir()):
        files = {path.name.upper(): path for path in scene.iterdir() if path.is_file()}
        for upper_name in sorted(files):
            match = _SIDD_GROUND_TRUTH.fullmatch(upper_name)
            if match is None or match["domain"] != domain or match["extension"] != extension:
                continue
            prefix, index = match["prefix"] or "", match["index"]
            noisy = files.get(f"{prefix}NOISY_{domain}_{index}.{extension}")
            if noisy is None:
                unpaired.append(str(files[upper_name].relative_to(data)))
                continue
            metadata = files.get(f"{prefix}METADATA_RAW_{index}.MAT")
            scenes.append(_SiddScene(f"{scene.name}_{index}", files[upper_name], noisy, metadata))
    if unpaired:
        raise DatasetLayoutError(
            f"{len(unpaired)} SIDD ground truth file(s) without their NOISY_{domain} "
            f"partner in {data}: {_few(unpaired)}; expected {expected}"
        )
    if not scenes:
        raise DatasetLayoutError(f"no SIDD {domain} pairs under {data}; expected {expected}")
    return scenes


class SIDDSrgb(Dataset):
    """SIDD sRGB pairs (SIDD-Medium / SIDD-Small layout): ``root/Data/<scene>/[NNNN_]GT_SRGB_010.PNG`` with
    ``NOISY_SRGB_010.PNG`` (and ``_011``). SIDD-Medium prefixes the file names with the scene number
    (``0001_GT_SRGB_010.PNG``), SIDD-Small does not; both are accepted, in any letter case.

    Items: ``dict(name="<scene>_<index>", clean=(3, H, W), noisy=(3, H, W))`` float32 in [0, 1].
    """

    def __init__(self, root):
        self.scenes = _sidd_scenes(root, "SRGB")

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, index: int) -> dict:
        scene = self.scenes[index]
        return load_pair(scene.name, scene.clean, scene.noisy)


def _find_cfa_pattern(node) -> np.ndarray | None:
    """Searches a ``scipy.io.loadmat`` struct tree (structured and object arrays) for TIFF tag 33422
    (CFAPattern), which MATLAB's ``imfinfo`` of a DNG keeps as ``UnknownTags(k).ID/.Value``, at the top
    level or inside ``SubIFDs``; returns its Value, or None."""
    if not isinstance(node, np.ndarray):
        return None
    names = node.dtype.names
    if names:
        for record in node.ravel():
            if "ID" in names and "Value" in names:
                tag = np.asarray(record["ID"]).ravel()
                if tag.size == 1 and tag[0] == _DNG_CFA_PATTERN_TAG:
                    return np.asarray(record["Value"])
            for name in names:
                found = _find_cfa_pattern(record[name])
                if found is not None:
                    return found
    elif node.dtype == object:
        for item in node.ravel():
            found = _find_cfa_pattern(item)
            if found is not None:
                return found
    return None


def read_sidd_pattern(metadata_path: Path) -> str:
    """The Bayer pattern stored in a SIDD ``METADATA_RAW_*.MAT`` file (a MATLAB v5 file holding ``metadata``,
    the ``imfinfo`` struct of the phone's DNG): the DNG CFAPattern tag 33422, codes 0 = R, 1 = G, 2 = B."""
    if not metadata_path.is_file():
        raise FileNotFoundError(f"SIDD metadata file not found: {metadata_path}")
    try:
        contents = scipy.io.loadmat(metadata_path)
    except (NotImplementedError, ValueError, OSError, TypeError) as error:
        raise DataFileError(
            f"cannot read the SIDD metadata {metadata_path} (expected a MATLAB v5 .mat file): "
            f"{error}; pass pattern=... to SIDDRaw instead"
        ) from error
    codes = _find_cfa_pattern(contents.get("metadata"))
    if codes is None:
        raise DataFileError(
            f"no CFAPattern (DNG tag {_DNG_CFA_PATTERN_TAG}) found in the 'metadata' struct of "
            f"{metadata_path}; pass pattern=... to SIDDRaw instead"
        )
    return _pattern_from_codes(codes, metadata_path)


class SIDDRaw(Dataset):
    """SIDD RAW pairs (SIDD-Medium RAW layout): ``root/Data/<scene>/[NNNN_]GT_RAW_010.MAT`` with
    ``NOISY_RAW_010.MAT`` (and ``_011``), MATLAB v7.3 files whose array ``x`` is the Bayer mosaic, already
    normalised to [0, 1].

    Args:
        root: the folder holding ``Data``.
        pattern: the Bayer pattern of every image (``"RGGB" | "BGGR" | "GRBG" | "GBRG"``), or None (default) to
            read each image's pattern from its ``METADATA_RAW_<index>.MAT`` (DNG tag CFAPattern); an image
            whose metadata holds no readable pattern raises DataFileError asking for ``pattern=``. SIDD's phones
            do not all use the same pattern, so no fixed default is assumed (a wrong one would silently swap
            colours).

    Items: ``dict(name="<scene>_<index>", clean=(1, H, W), noisy=(1, H, W), pattern=str)``, float32 mosaics
    in MATLAB's row/column orientation (the orientation of the DNG, to which the pattern refers).
    """

    def __init__(self, root, pattern: str | None = None):
        if pattern is not None:
            check_choice(pattern, "pattern", PATTERNS)
        self.pattern = pattern
        self.scenes = _sidd_scenes(root, "RAW")
        if pattern is None:
            missing = [scene.name for scene in self.scenes if scene.metadata is None]
            if missing:
                raise DatasetLayoutError(
                    f"{len(missing)} SIDD RAW pair(s) without METADATA_RAW_<index>.MAT beside "
                    f"them (needed for the Bayer pattern): {_few(missing)}; add the files or "
                    "pass pattern=..."
                )

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, index: int) -> dict:
        scene = self.scenes[index]
        clean, noisy = (
            torch.from_numpy(np.ascontiguousarray(read_mat_array(path, "x"), dtype=np.float32))
            for path in (scene.clean, scene.noisy)
        )
        for path, mosaic in ((scene.clean, clean), (scene.noisy, noisy)):
            if mosaic.dim() != 2:
                raise DataFileError(f"{path}: 'x' must be a 2-D Bayer mosaic, got shape {tuple(mosaic.shape)}")
        _check_same_size(clean, noisy, scene.clean, scene.noisy)
        pattern = self.pattern if self.pattern is not None else read_sidd_pattern(scene.metadata)
        return {"name": scene.name, "clean": clean[None], "noisy": noisy[None], "pattern": pattern}


def _sidd_domains(root: Path) -> set[str]:
    """Which of ``"SRGB"``, ``"RAW"`` have ground-truth files in ``root/Data/<scene>/``."""
    found = set()
    for scene in (path for path in (root / "Data").iterdir() if path.is_dir()):
        for path in scene.iterdir():
            match = _SIDD_GROUND_TRUTH.fullmatch(path.name.upper())
            if match:
                found.add(match["domain"])
    return found
