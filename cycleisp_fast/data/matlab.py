"""Reading MATLAB ``.mat`` files: v5/v7 through ``scipy.io``, v7.3 (HDF5) through h5py.

HDF5 stores MATLAB's column-major arrays with their axes reversed: a MATLAB ``H x W x 3`` image reads as
``(3, W, H)``. Every array returned here is put back in MATLAB's axis order (``.T``), so that ``array[i, j]`` is
MATLAB's ``A(i + 1, j + 1)`` whatever the file's version.

Example::

    name, blocks = read_mat_variable(Path("BenchmarkNoisyBlocksSrgb.mat"), ("BenchmarkNoisyBlocksSrgb",))
    blocks.shape  # (40, 32, 256, 256, 3), uint8
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np
import scipy.io

from cycleisp_fast.data.files import DataFileError
from cycleisp_fast.data.limits import check_array_bytes

_MATLAB_ITEMSIZES = {
    "logical": 1,
    "int8": 1,
    "uint8": 1,
    "int16": 2,
    "uint16": 2,
    "char": 2,
    "int32": 4,
    "uint32": 4,
    "single": 4,
}
"""Bytes per element of MATLAB's classes (as ``scipy.io.whosmat`` names them); any other class counts 8."""


@contextlib.contextmanager
def open_mat(path: Path) -> Iterator[h5py.File]:
    """Opens a MATLAB v7.3 (HDF5) ``.mat`` file for reading; a missing file raises FileNotFoundError, any
    other file DataFileError."""
    if not path.is_file():
        raise FileNotFoundError(f"MATLAB file not found: {path}")
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise DataFileError(f"{path} is not a MATLAB v7.3 (HDF5) .mat file, or is corrupt: {error}") from error
    with handle:
        yield handle


def mat_dataset(handle: h5py.File, key: str, path: Path) -> h5py.Dataset:
    """The HDF5 dataset ``key`` of an open v7.3 file (HDF5 axis order); DataFileError naming what it holds."""
    if key not in handle or not isinstance(handle[key], h5py.Dataset):
        raise DataFileError(f"{path} has no array {key!r}; it holds {sorted(handle.keys())}")
    return handle[key]


def read_mat_array(path: Path, key: str) -> np.ndarray:
    """The array ``key`` of a MATLAB v7.3 file, in MATLAB's axis order (HDF5's reversed axes undone)."""
    with open_mat(path) as handle:
        array = mat_dataset(handle, key, path)
        check_array_bytes(path, key, array.shape, array.dtype.itemsize)
        try:
            return np.asarray(array[()]).T
        except (OSError, ValueError) as error:  # truncated or corrupt chunks
            raise DataFileError(f"cannot read {key!r} from {path}: {error}") from error


def read_mat_variable(path: Path, names: tuple[str, ...]) -> tuple[str, np.ndarray]:
    """The first of ``names`` that the MATLAB file ``path`` holds, and its numeric array in MATLAB's axis order.

    Any version: v7.3 files (HDF5) are read with h5py, older ones with ``scipy.io.loadmat``.

    Raises:
        FileNotFoundError: no such file.
        DataFileError: not a MATLAB file, corrupt, holding none of ``names`` (the message lists what it holds), or
            the array is larger than the pixel limit allows (:func:`cycleisp_fast.data.limits.check_array_bytes`).
    """
    if not path.is_file():
        raise FileNotFoundError(f"MATLAB file not found: {path}")
    if h5py.is_hdf5(path):
        with open_mat(path) as handle:
            held = sorted(key for key in handle.keys() if not key.startswith("#"))
        name = _first_held(names, held, path)
        return name, read_mat_array(path, name)
    try:
        contents = {variable: (shape, matlab_class) for variable, shape, matlab_class in scipy.io.whosmat(path)}
        name = _first_held(names, list(contents), path)
        shape, matlab_class = contents[name]
        check_array_bytes(path, name, shape, _MATLAB_ITEMSIZES.get(matlab_class, 8))
        array = scipy.io.loadmat(path, variable_names=[name])[name]
    except DataFileError:
        raise
    except Exception as error:  # scipy raises many kinds (ValueError, OSError, IndexError, ...) for a bad file
        raise DataFileError(
            f"{path} is not a MATLAB .mat file, or is corrupt: {type(error).__name__}: {error}"
        ) from error
    if array.dtype == object or array.dtype.names:
        raise DataFileError(f"{path}: {name!r} must be a numeric array, got a MATLAB cell or struct")
    return name, array


def _first_held(names: tuple[str, ...], held: list[str], path: Path) -> str:
    for name in names:
        if name in held:
            return name
    expected = " or ".join(repr(name) for name in names)
    raise DataFileError(f"{path} holds no array {expected}; it holds {held}")
