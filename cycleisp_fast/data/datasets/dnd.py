"""The Darmstadt Noise Dataset benchmark (:class:`DND`, layouts ``"dnd-srgb"`` / ``"dnd-raw"``): ``root/info.mat``
(bounding boxes, RAW noise levels and Bayer patterns) + ``root/images_srgb/0001.mat`` or ``root/images_raw/0001.mat``,
noisy only (its ground truth is private), one item per (image, box).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from cycleisp_fast.checks import check_choice
from cycleisp_fast.data.datasets._common import (
    DatasetLayoutError,
    _check_root,
    _few,
    _pattern_from_codes,
    shift_pattern,
)
from cycleisp_fast.data.files import DataFileError
from cycleisp_fast.data.matlab import mat_dataset, open_mat

DND_KINDS = ("srgb", "raw")


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
            patterns = [
                _pattern_from_codes(_member(camera, "pattern", "camera", path).T - 1, path)
                for camera in _dereference(handle, info, "camera", path)
            ]
    for boxes in all_boxes:
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise DataFileError(f"{path}: bounding boxes must be an N x 4 matrix, got shape {boxes.shape}")
    images = [
        _DndImage(
            folder / f"{number + 1:04d}.mat",
            all_boxes[number].astype(np.int64),
            shots[number],
            reads[number],
            patterns[number],
        )
        for number in range(count)
    ]
    missing = [image.path.name for image in images if not image.path.is_file()]
    if missing:
        raise DatasetLayoutError(
            f"{len(missing)} of the {count} DND images listed in {path} are missing from "
            f"{folder}: {_few(missing)}; expected {folder}/0001.mat ..."
        )
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
            raise DatasetLayoutError(
                f"not a DND folder: {self.root / 'info.mat'} is missing; expected "
                f"{self.root}/info.mat and {self.root}/images_{kind}/0001.mat ..."
            )
        self.kind, self.margin = kind, margin
        self.key = "InoisySRGB" if kind == "srgb" else "Inoisy"
        self.images = _read_dnd_info(self.root, kind)
        self.items = [
            (image_number, box_number)
            for image_number, image in enumerate(self.images)
            for box_number in range(len(image.boxes))
        ]

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
                raise DataFileError(
                    f"{self.root / 'info.mat'}: box {box_number + 1} of image {image_number + 1} "
                    f"[{first_row}, {first_col}, {last_row}, {last_col}] lies outside the "
                    f"{height}x{width} image {image.path}"
                )
            top, left = max(first_row - 1 - self.margin, 0), max(first_col - 1 - self.margin, 0)
            bottom, right = min(last_row + self.margin, height), min(last_col + self.margin, width)
            try:
                crop = np.asarray(array[..., left:right, top:bottom]).T  # back to MATLAB order: (h, w[, 3])
            except (OSError, ValueError) as error:
                raise DataFileError(f"cannot read {self.key!r} from {image.path}: {error}") from error
        noisy = torch.from_numpy(np.ascontiguousarray(crop, dtype=np.float32))
        noisy = noisy.permute(2, 0, 1) if self.kind == "srgb" else noisy[None]
        item = {
            "name": self.item_name(index),
            "noisy": noisy,
            "box": torch.tensor(
                [first_row - 1 - top, first_col - 1 - left, last_row - first_row + 1, last_col - first_col + 1]
            ),
        }
        if self.kind == "raw":
            item.update(shot=image.shot, read=image.read, pattern=shift_pattern(image.pattern, top, left))
        return item
