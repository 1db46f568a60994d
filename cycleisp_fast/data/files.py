"""Atomic output files, and the error raised for bad input files.

Every output of the package is written through :func:`atomic_path`: the data goes to a hidden temporary
file in the destination folder, which is renamed onto the destination (``os.replace``, atomic on POSIX and
Windows) only once it is complete. An interrupted run leaves either the old file or the new one, never a
half-written one.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Iterator

import numpy as np
import torch


class DataFileError(ValueError):
    """An input file that cannot be used: corrupt, truncated, of the wrong kind or holding the wrong data.
    The message names the file and the problem."""


def _temporary_sibling(path: Path) -> Path:
    """A hidden, unique name next to ``path`` that keeps its suffix: ``dir/.name.<pid>.<random>.tmp<suffix>``."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path in ``path``'s folder; the caller writes the whole file there.

    When the block exits normally the temporary file replaces ``path`` (``os.replace``); when it raises (any
    exception, KeyboardInterrupt included) the temporary file is deleted and ``path`` is left as it was.
    Parent folders are created. The temporary name is hidden (leading dot), unique per process and call,
    and ends with ``path``'s suffix, so libraries that pick a format from the suffix see the right one.
    """
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(f"cannot write the file {target}: it is an existing folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_sibling(target)
    try:
        yield temporary
        if not temporary.exists():
            raise FileNotFoundError(f"nothing was written for {target}: the block left no file at {temporary}")
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def save_torch(obj, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path``, atomically. Returns ``path`` as a Path."""
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            torch.save(obj, handle)
    return Path(path)


def save_numpy(path: str | os.PathLike, **arrays) -> Path:
    """Writes ``arrays`` (name -> array-like; tensors are moved to the CPU) to an uncompressed ``.npz`` at
    ``path``, atomically. Returns ``path`` as a Path; the file name is used as given (no ``.npz`` appended)."""
    if not arrays:
        raise ValueError(f"save_numpy needs at least one named array to write to {path}")
    as_numpy = {name: value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
                for name, value in arrays.items()}
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            np.savez(handle, **as_numpy)
    return Path(path)
