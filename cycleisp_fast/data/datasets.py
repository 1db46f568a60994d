"""Datasets of real noisy images (torch ``Dataset``s) for evaluation and transfer training.

Layouts (``open_pairs`` detects them):

- ``"folder"``: ``root/clean/x.png`` + ``root/noisy/x.png`` (same stem, any image suffix);
- ``"sidd-srgb"`` / ``"sidd-raw"``: SIDD-Medium/-Small, ``root/Data/<scene>/[NNNN_]GT_SRGB_010.PNG`` +
  ``NOISY_SRGB_010.PNG`` (and ``_011``), or ``GT_RAW_010.MAT`` + ``NOISY_RAW_010.MAT`` + ``METADATA_RAW_010.MAT``;
- ``"dnd-srgb"`` / ``"dnd-raw"``: the Darmstadt Noise Dataset benchmark, ``root/info.mat`` +
  ``root/images_srgb/0001.mat`` or ``root/images_raw/0001.mat`` (noisy only; its ground truth is private);
- ``"sidd-val-srgb"`` / ``"sidd-val-raw"``: SIDD's validation blocks, ``root/ValidationNoisyBlocksSrgb.mat`` +
  ``root/ValidationGtBlocksSrgb.mat`` (or ``...Raw.mat``), one item per 256x256 block
  (:mod:`cycleisp_fast.data.sidd_blocks`).

Items are dicts: ``name`` (str) plus ``clean``/``noisy`` ``(3, H, W)`` float32 in [0, 1] for sRGB, or
``(1, H, W)`` Bayer mosaics in [0, 1] with their ``pattern`` (colours of the top-left 2x2 block, row by
row: ``"RGGB" | "BGGR" | "GRBG" | "GBRG"``) for RAW.

MATLAB v7.3 ``.mat`` files are HDF5 files (read with h5py, :mod:`cycleisp_fast.data.matlab`), and HDF5 stores
MATLAB's column-major arrays with their axes reversed: a MATLAB ``H x W x 3`` image reads as ``(3, W, H)``. Every
array read here is put back in MATLAB's axis order (``.T``), and boxes and Bayer patterns are read in that same order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import scipy.io
import torch
from torch.utils.data import Dataset

from cycleisp_fast.data.files import DataFileError
from cycleisp_fast.data.images import is_image_file, read_image
from cycleisp_fast.data.matlab import mat_dataset, open_mat, read_mat_array
from cycleisp_fast.data.sidd_blocks import SIDD_VALIDATION_FILES, sidd_validation_blocks
from cycleisp_fast.checks import check_choice
from cycleisp_fast.ops.bayer import PATTERNS

LAYOUTS = ("folder", "sidd-srgb", "sidd-raw", "dnd-srgb", "dnd-raw", "sidd-val-srgb", "sidd-val-raw")
DND_KINDS = ("srgb", "raw")
_SHOWN = 5  # how many offending names an error message lists
_DNG_CFA_PATTERN_TAG = 33422  # TIFF/EP CFAPattern: colours of the CFA repeat block, 0 = R, 1 = G, 2 = B


class DatasetLayoutError(FileNotFoundError):
    """A dataset folder does not have the expected layout; the message shows the expected path pattern."""


def _few(names) -> str:
    names = sorted(names)
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


def _check_root(root) -> Path:
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder (expected a dataset folder)")
    return root


def load_pair(name: str, clean_path: Path, noisy_path: Path) -> dict:
    """``dict(name, clean, noisy)`` from two image files of the same size, each ``(3, H, W)`` float32 in [0, 1]."""
    clean, noisy = read_image(clean_path), read_image(noisy_path)
    _check_same_size(clean, noisy, clean_path, noisy_path)
    return {"name": name, "clean": clean, "noisy": noisy}


def _check_same_size(clean: torch.Tensor, noisy: torch.Tensor, clean_path: Path, noisy_path: Path) -> None:
    if clean.shape != noisy.shape:
        raise DataFileError(f"image sizes differ within a pair: clean {clean_path} is {_size(clean)}, "
                            f"noisy {noisy_path} is {_size(noisy)}")


def _size(image: torch.Tensor) -> str:
    return f"{image.shape[-2]}x{image.shape[-1]} (HxW)"


# ----------------------------------------------------------------------------------------- folders of pairs

def _images_by_stem(folder: Path) -> dict[str, Path]:
    images: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and is_image_file(path):
            if path.stem in images:
                raise DatasetLayoutError(f"two images with the stem {path.stem!r} in {folder}: "
                                         f"{images[path.stem].name} and {path.name}; keep one")
            images[path.stem] = path
    if not images:
        raise DatasetLayoutError(f"no image files in {folder}")
    return images


class PairedImageFolder(Dataset):
    """Pairs ``root/<clean>/x.png`` with ``root/<noisy>/x.png``: same stem, the suffixes may differ.

    Items: ``dict(name=stem, clean=(3, H, W), noisy=(3, H, W))`` float32 in [0, 1], sorted by name.
    """

    def __init__(self, root, clean: str = "clean", noisy: str = "noisy"):
        root = _check_root(root)
        folders = {"clean": root / clean, "noisy": root / noisy}
        for role, folder in folders.items():
            if not folder.is_dir():
                raise DatasetLayoutError(f"missing the {role} folder {folder}; expected {root}/{clean}/<name>.png "
                                         f"paired with {root}/{noisy}/<name>.png")
        clean_images, noisy_images = (_images_by_stem(folder) for folder in folders.values())
        only_clean, only_noisy = clean_images.keys() - noisy_images.keys(), noisy_images.keys() - clean_images.keys()
        if only_clean or only_noisy:
            problems = [f"{len(names)} only in {folder}: {_few(names)}"
                        for names, folder in ((only_clean, folders["clean"]), (only_noisy, folders["noisy"])) if names]
            raise DatasetLayoutError("clean and noisy images must pair up by file stem; " + "; ".join(problems))
        self.root = root
        self.names = sorted(clean_images)
        self.pairs = [(clean_images[name], noisy_images[name]) for name in self.names]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        return load_pair(self.names[index], *self.pairs[index])


# ---------------------------------------------------------------------------------------- Bayer patterns

def shift_pattern(pattern: str, top: int, left: int) -> str:
    """The Bayer pattern of a crop starting at row ``top``, column ``left`` of a ``pattern`` mosaic."""
    grid = (pattern[:2], pattern[2:])
    return "".join(grid[(row + top) % 2][(col + left) % 2] for row in range(2) for col in range(2))


def _pattern_from_codes(codes, path: Path) -> str:
    """A 2x2 CFA block of colour codes (row-major; 0 = R, 1 = G, 2 = B) -> its name, e.g. ``"RGGB"``."""
    values = np.asarray(codes).ravel()
    if values.size == 4 and np.all((values >= 0) & (values <= 2) & (values == np.round(values))):
        pattern = "".join("RGB"[int(value)] for value in values)
        if pattern in PATTERNS:
            return pattern
    raise DataFileError(f"{path}: unsupported Bayer pattern codes {values.tolist()} (expected a 2x2 block of "
                        f"one of {PATTERNS})")


# -------------------------------------------------------------------------------------------------- SIDD

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
        raise DatasetLayoutError(f"{len(unpaired)} SIDD ground truth file(s) without their NOISY_{domain} "
                                 f"partner in {data}: {_few(unpaired)}; expected {expected}")
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
        raise DataFileError(f"cannot read the SIDD metadata {metadata_path} (expected a MATLAB v5 .mat file): "
                            f"{error}; pass pattern=... to SIDDRaw instead") from error
    codes = _find_cfa_pattern(contents.get("metadata"))
    if codes is None:
        raise DataFileError(f"no CFAPattern (DNG tag {_DNG_CFA_PATTERN_TAG}) found in the 'metadata' struct of "
                            f"{metadata_path}; pass pattern=... to SIDDRaw instead")
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
                raise DatasetLayoutError(f"{len(missing)} SIDD RAW pair(s) without METADATA_RAW_<index>.MAT beside "
                                         f"them (needed for the Bayer pattern): {_few(missing)}; add the files or "
                                         "pass pattern=...")

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, index: int) -> dict:
        scene = self.scenes[index]
        clean, noisy = (torch.from_numpy(np.ascontiguousarray(read_mat_array(path, "x"), dtype=np.float32))
                        for path in (scene.clean, scene.noisy))
        for path, mosaic in ((scene.clean, clean), (scene.noisy, noisy)):
            if mosaic.dim() != 2:
                raise DataFileError(f"{path}: 'x' must be a 2-D Bayer mosaic, got shape {tuple(mosaic.shape)}")
        _check_same_size(clean, noisy, scene.clean, scene.noisy)
        pattern = self.pattern if self.pattern is not None else read_sidd_pattern(scene.metadata)
        return {"name": scene.name, "clean": clean[None], "noisy": noisy[None], "pattern": pattern}


# --------------------------------------------------------------------------------------------------- DND

@dataclass(frozen=True)
class _DndImage:
    path: Path
    boxes: np.ndarray  # (N, 4) int64 (N = 20 in DND): [first row, first col, last row, last col], 1-based
    shot: float | None
    read: float | None
    pattern: str | None


def _dereference(handle: h5py.File, info: h5py.Group, field: str, path: Path) -> list:
    """The objects that the struct-array field ``info.<field>`` refers to, one per image."""
    if field not in info:
        raise DataFileError(f"{path}: the 'info' struct has no field {field!r}; it holds {sorted(info.keys())}")
    if not isinstance(info[field], h5py.Dataset) or h5py.check_dtype(ref=info[field].dtype) is None:
        raise DataFileError(f"{path}: info.{field} is not a MATLAB struct-array field (HDF5 object references)")
    return [handle[reference] for reference in np.asarray(info[field]).ravel()]


def _member(group, key: str, field: str, path: Path) -> np.ndarray:
    """The array ``key`` of the struct ``info(i).<field>`` (HDF5 axis order)."""
    if not isinstance(group, h5py.Group) or key not in group:
        raise DataFileError(f"{path}: info.{field} entries must be structs with a field {key!r}")
    return np.asarray(group[key])


def _read_dnd_info(root: Path, kind: str) -> list[_DndImage]:
    path = root / "info.mat"
    folder = root / f"images_{kind}"
    with open_mat(path) as handle:
        if "info" not in handle:
            raise DataFileError(f"{path} has no 'info' struct; it holds {sorted(handle.keys())}")
        info = handle["info"]
        all_boxes = [np.asarray(boxes).T for boxes in _dereference(handle, info, "boundingboxes", path)]
        count = len(all_boxes)
        shots, reads, patterns = [None] * count, [None] * count, [None] * count
        if kind == "raw":
            nlfs = _dereference(handle, info, "nlf", path)
            shots = [float(_member(nlf, "a", "nlf", path).ravel()[0]) for nlf in nlfs]
            reads = [float(_member(nlf, "b", "nlf", path).ravel()[0]) for nlf in nlfs]
            # info(i).camera.pattern: MATLAB 2x2, 1 = R, 2 = G, 3 = B; .T puts it in MATLAB's row order.
            patterns = [_pattern_from_codes(_member(camera, "pattern", "camera", path).T - 1, path)
                        for camera in _dereference(handle, info, "camera", path)]
    for boxes in all_boxes:
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise DataFileError(f"{path}: bounding boxes must be an N x 4 matrix, got shape {boxes.shape}")
    images = [_DndImage(folder / f"{number + 1:04d}.mat", all_boxes[number].astype(np.int64), shots[number],
                        reads[number], patterns[number]) for number in range(count)]
    missing = [image.path.name for image in images if not image.path.is_file()]
    if missing:
        raise DatasetLayoutError(f"{len(missing)} of the {count} DND images listed in {path} are missing from "
                                 f"{folder}: {_few(missing)}; expected {folder}/0001.mat ...")
    return images


class DND(Dataset):
    """The Darmstadt Noise Dataset benchmark: one item per (image, bounding box), noisy only.

    Layout: ``root/info.mat`` and ``root/images_srgb/0001.mat`` (array ``InoisySRGB``, ``H x W x 3``) or
    ``root/images_raw/0001.mat`` (array ``Inoisy``, ``H x W`` Bayer mosaic), all MATLAB v7.3, in [0, 1].

    Box convention (that of the DND devkit, ``Inoisy(bb(1):bb(3), bb(2):bb(4), :)``): each row of
    ``info(i).boundingboxes`` is ``[first row, first column, last row, last column]``, 1-based and inclusive,
    i.e. ``[y1, x1, y2, x2]``; the crop is ``rows y1-1 : y2``, ``columns x1-1 : x2`` in 0-based numpy terms.
    The RAW Bayer pattern is ``info(i).camera.pattern`` (2x2, 1 = R, 2 = G, 3 = B, in MATLAB's row order);
    ``nlf.a`` / ``nlf.b`` are the shot / read noise parameters (variance = a * x + b).

    Args:
        root: the folder holding ``info.mat``.
        kind: ``"srgb"`` or ``"raw"``.
        margin: pixels of context kept around each box (clipped at the image border), e.g. 80 for AINDNet's
            protocol; ``box`` tells where the benchmark box lies in the returned crop.

    Items: ``name`` (``"0001_01"``: image and box, 1-based), ``noisy`` ``(3, h, w)`` (srgb) or ``(1, h, w)``
    (raw) float32, ``box`` int64 ``[top, left, height, width]`` of the box inside ``noisy``; for raw also
    ``shot`` and ``read`` (floats) and ``pattern`` (str, the Bayer pattern of the returned crop).
    """

    def __init__(self, root, kind: str = "srgb", *, margin: int = 0):
        check_choice(kind, "kind", DND_KINDS)
        if isinstance(margin, bool) or not isinstance(margin, int) or margin < 0:
            raise ValueError(f"margin must be an int >= 0, got {margin!r}")
        self.root = _check_root(root)
        if not (self.root / "info.mat").is_file():
            raise DatasetLayoutError(f"not a DND folder: {self.root / 'info.mat'} is missing; expected "
                                     f"{self.root}/info.mat and {self.root}/images_{kind}/0001.mat ...")
        self.kind, self.margin = kind, margin
        self.key = "InoisySRGB" if kind == "srgb" else "Inoisy"
        self.images = _read_dnd_info(self.root, kind)
        self.items = [(image_number, box_number) for image_number, image in enumerate(self.images)
                      for box_number in range(len(image.boxes))]

    def __len__(self) -> int:
        return len(self.items)

    def item_name(self, index: int) -> str:
        """Item ``index``'s name, ``"<image>_<box>"`` 1-based (``"0001_01"``), without reading the image."""
        image_number, box_number = self.items[index]
        return f"{image_number + 1:04d}_{box_number + 1:02d}"

    def box_shape(self, index: int) -> tuple[int, int]:
        """``(height, width)`` of item ``index``'s benchmark box, from ``info.mat`` (the image is not read)."""
        image_number, box_number = self.items[index]
        first_row, first_col, last_row, last_col = (int(v) for v in self.images[image_number].boxes[box_number])
        return last_row - first_row + 1, last_col - first_col + 1

    def __getitem__(self, index: int) -> dict:
        image_number, box_number = self.items[index]
        image = self.images[image_number]
        first_row, first_col, last_row, last_col = (int(value) for value in image.boxes[box_number])
        with open_mat(image.path) as handle:
            array = mat_dataset(handle, self.key, image.path)
            height, width = array.shape[-1], array.shape[-2]  # HDF5 holds MATLAB's H x W [x 3] as ([3,] W, H)
            if not (1 <= first_row <= last_row <= height and 1 <= first_col <= last_col <= width):
                raise DataFileError(f"{self.root / 'info.mat'}: box {box_number + 1} of image {image_number + 1} "
                                    f"[{first_row}, {first_col}, {last_row}, {last_col}] lies outside the "
                                    f"{height}x{width} image {image.path}")
            top, left = max(first_row - 1 - self.margin, 0), max(first_col - 1 - self.margin, 0)
            bottom, right = min(last_row + self.margin, height), min(last_col + self.margin, width)
            try:
                crop = np.asarray(array[..., left:right, top:bottom]).T  # back to MATLAB order: (h, w[, 3])
            except (OSError, ValueError) as error:
                raise DataFileError(f"cannot read {self.key!r} from {image.path}: {error}") from error
        noisy = torch.from_numpy(np.ascontiguousarray(crop, dtype=np.float32))
        noisy = noisy.permute(2, 0, 1) if self.kind == "srgb" else noisy[None]
        item = {"name": self.item_name(index), "noisy": noisy,
                "box": torch.tensor([first_row - 1 - top, first_col - 1 - left, last_row - first_row + 1,
                                     last_col - first_col + 1])}
        if self.kind == "raw":
            item.update(shot=image.shot, read=image.read, pattern=shift_pattern(image.pattern, top, left))
        return item

# ---------------------------------------------------------------------------------------------- detection

def _sidd_domains(root: Path) -> set[str]:
    """Which of ``"SRGB"``, ``"RAW"`` have ground-truth files in ``root/Data/<scene>/``."""
    found = set()
    for scene in (path for path in (root / "Data").iterdir() if path.is_dir()):
        for path in scene.iterdir():
            match = _SIDD_GROUND_TRUTH.fullmatch(path.name.upper())
            if match:
                found.add(match["domain"])
    return found


def matching_layouts(root) -> list[str]:
    """Every layout of :data:`LAYOUTS` whose files the folder ``root`` holds (a DND download holds two)."""
    root = _check_root(root)
    found = []
    if (root / "clean").is_dir() and (root / "noisy").is_dir():
        found.append("folder")
    if (root / "Data").is_dir():
        found += [f"sidd-{domain.lower()}" for domain in sorted(_sidd_domains(root), reverse=True)]
    if (root / "info.mat").is_file():
        found += [f"dnd-{kind}" for kind in DND_KINDS if (root / f"images_{kind}").is_dir()]
    found += [f"sidd-val-{kind}" for kind, names in SIDD_VALIDATION_FILES.items()
              if any((root / name).is_file() for name in names)]
    return found


def detect_layout(root) -> str:
    """The layout (one of :data:`LAYOUTS`) of the dataset folder ``root``, from its structure."""
    found = matching_layouts(root)
    if not found:
        raise DatasetLayoutError(
            f"cannot tell the dataset layout of {root}; looked for: clean/ + noisy/ (folder), "
            "Data/<scene>/[NNNN_]GT_SRGB_010.PNG (sidd-srgb), Data/<scene>/[NNNN_]GT_RAW_010.MAT (sidd-raw), "
            "info.mat + images_srgb/ (dnd-srgb), info.mat + images_raw/ (dnd-raw), "
            "ValidationNoisyBlocksSrgb.mat + ValidationGtBlocksSrgb.mat (sidd-val-srgb), "
            "ValidationNoisyBlocksRaw.mat + ValidationGtBlocksRaw.mat (sidd-val-raw)")
    if len(found) > 1:
        raise ValueError(f"{root} fits several dataset layouts {found}; pass layout= one of them")
    return found[0]


def open_pairs(root, layout: str = "auto", **options) -> Dataset:
    """Opens the dataset at ``root``.

    Args:
        root: the dataset folder.
        layout: one of :data:`LAYOUTS`, or ``"auto"`` to detect it (:func:`detect_layout`).
        options: passed on to the dataset class: ``clean=``/``noisy=`` (folder), ``pattern=`` (sidd-raw,
            sidd-val-raw), ``noise=`` (sidd-val-raw), ``margin=`` (dnd-*).

    Returns:
        :class:`PairedImageFolder`, :class:`SIDDSrgb`, :class:`SIDDRaw`, :class:`DND` or
        :class:`~cycleisp_fast.data.sidd_blocks.SIDDBlocks`.
    """
    check_choice(layout, "layout", ("auto",) + LAYOUTS)
    if layout == "auto":
        layout = detect_layout(root)
    if layout == "folder":
        return PairedImageFolder(root, **options)
    if layout == "sidd-srgb":
        return SIDDSrgb(root, **options)
    if layout == "sidd-raw":
        return SIDDRaw(root, **options)
    if layout.startswith("sidd-val-"):
        return sidd_validation_blocks(root, layout.removeprefix("sidd-val-"), **options)
    return DND(root, kind=layout.removeprefix("dnd-"), **options)
