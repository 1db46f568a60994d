"""MATLAB files for the tests, written the way MATLAB writes them.

MATLAB v7.3 files are HDF5 with a 512-byte MATLAB header, every array stored with its axes reversed (a MATLAB
H x W x 3 image is an HDF5 (3, W, H) dataset), struct arrays as datasets of object references into ``#refs#``;
older ones (v5) are what ``scipy.io.savemat`` writes. Shared by tests/data and tests/commands.
"""

from __future__ import annotations

import struct

import h5py
import numpy as np
import scipy.io

RNG = np.random.default_rng(0)


def mat73_file(path) -> h5py.File:
    """A new HDF5 file with MATLAB's v7.3 header in its 512-byte user block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = h5py.File(path, "w", userblock_size=512)
    handle.close()
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    with open(path, "r+b") as raw:  # 116 bytes of text, 8 of subsystem offset, version 0x0200, endian "IM"
        raw.write(text.ljust(116) + bytes(8) + struct.pack("<H", 0x0200) + b"IM")
    return h5py.File(path, "a")


def write_mat73(path, **arrays) -> None:
    """Saves MATLAB-order arrays as MATLAB v7.3 does: axes reversed."""
    with mat73_file(path) as handle:
        for key, array in arrays.items():
            handle.create_dataset(key, data=np.asarray(array).T)


# --------------------------------------------------------------------------------------------------- DND

# MATLAB's info(i).camera.pattern codes (1 = R, 2 = G, 3 = B), row by row.
DND_CODES = {"RGGB": [[1, 2], [2, 3]], "GRBG": [[2, 1], [3, 2]], "GBRG": [[2, 3], [1, 2]], "BGGR": [[3, 2], [2, 1]]}
DND_HEIGHT, DND_WIDTH = 40, 56
# [first row, first column, last row, last column], 1-based inclusive (the DND devkit's convention).
DND_BOXES = [
    np.array([[1, 1, 8, 8], [10, 21, 17, 28], [33, 49, 40, 56]]),
    np.array([[2, 3, 9, 10], [5, 40, 12, 47], [31, 2, 38, 9]]),
]
DND_PATTERNS = ["RGGB", "GRBG"]
DND_NLF = [(1.5e-3, 2.0e-6), (4.0e-3, 7.5e-6)]


def _reference_struct_field(handle, field: str, objects: list) -> None:
    """info.<field> of a 1 x N struct array: an HDF5 (N, 1) dataset of references into #refs#."""
    references = []
    for number, write in enumerate(objects):
        references.append(write(handle, f"#refs#/{field}_{number}").ref)
    handle["info"].create_dataset(field, data=np.array(references, dtype=h5py.ref_dtype).reshape(-1, 1))


def _struct(**arrays):
    def write(handle, name):
        group = handle.create_group(name)
        for key, value in arrays.items():
            group.create_dataset(key, data=np.asarray(value, dtype=np.float64).T)
        return group

    return write


def _matrix(value):
    return lambda handle, name: handle.create_dataset(name, data=np.asarray(value, dtype=np.float64).T)


def write_dnd(root, kinds=("srgb", "raw"), fields=("boundingboxes", "nlf", "camera")):
    """Two DND images per kind (MATLAB order arrays returned) and info.mat."""
    with mat73_file(root / "info.mat") as handle:
        handle.create_group("info")
        objects = {
            "boundingboxes": [_matrix(boxes) for boxes in DND_BOXES],
            "nlf": [_struct(a=[[a]], b=[[b]]) for a, b in DND_NLF],
            "camera": [_struct(pattern=DND_CODES[pattern]) for pattern in DND_PATTERNS],
        }
        for field in fields:
            _reference_struct_field(handle, field, objects[field])
    images = {}
    for kind in kinds:
        for number in range(len(DND_BOXES)):
            shape = (DND_HEIGHT, DND_WIDTH, 3) if kind == "srgb" else (DND_HEIGHT, DND_WIDTH)
            image = RNG.random(shape).astype(np.float32)
            write_mat73(
                root / f"images_{kind}" / f"{number + 1:04d}.mat",
                **{"InoisySRGB" if kind == "srgb" else "Inoisy": image},
            )
            images[kind, number] = image
    return images


def write_sidd_blocks(path, key: str, blocks: np.ndarray, *, v73: bool = False) -> None:
    """A SIDD blocks file holding ``blocks`` (MATLAB order) as ``key``: MATLAB v5 (scipy) or v7.3 (HDF5)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if v73:
        write_mat73(path, **{key: blocks})
    else:
        scipy.io.savemat(path, {key: blocks})
