"""Atomic output files, the check of an output path before work starts, and the error raised for bad input files.

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


def describe_read_error(error: BaseException) -> str:
    """``"EOFError: the file is empty or truncated"``, ``"RuntimeError: <first line>"``: a reader's exception in one
    line, for messages that name the file."""
    lines = str(error).strip().splitlines()
    detail = lines[0] if lines else "the file is empty or truncated"
    return f"{type(error).__name__}: {detail}"


NAME_MAX = 255
"""The longest file name (bytes) of the file systems the package writes to (ext4, XFS, APFS, NTFS)."""


def _temporary_sibling(path: Path) -> Path:
    """A hidden, unique name next to ``path`` that keeps its suffix: ``dir/.name.<pid>.<random>.tmp<suffix>``, with
    ``name`` shortened (bytes) so that the whole fits :data:`NAME_MAX` whatever the length of ``path``'s name."""
    tail = f".{os.getpid()}.{secrets.token_hex(4)}.tmp{path.suffix}"
    room = NAME_MAX - 1 - len(os.fsencode(tail))  # the leading dot takes one byte
    name = os.fsencode(path.name)[:room].decode("utf-8", errors="ignore")  # a cut character is dropped
    return path.with_name(f".{name}{tail}")


def _naming(error: OSError, temporary: Path, target: Path) -> OSError:
    """``error`` with the user's ``target`` in place of the internal ``temporary`` it names (same type)."""
    if error.filename is None or os.fspath(error.filename) != os.fspath(temporary):
        return error
    return type(error)(error.errno, error.strerror, os.fspath(target))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path in ``path``'s folder; the caller writes the whole file there.

    When the block exits normally the temporary file replaces ``path`` (``os.replace``); when it raises (any
    exception, KeyboardInterrupt included) the temporary file is deleted and ``path`` is left as it was.
    Parent folders are created. The temporary name is hidden (leading dot), unique per process and call, fits
    :data:`NAME_MAX`, and ends with ``path``'s suffix, so libraries that pick a format from the suffix see the
    right one. An OSError about the temporary file (a read-only or full disk) is raised naming ``path``, and
    the cleanup never raises an error of its own.
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
    except BaseException as error:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        if isinstance(error, OSError):
            renamed = _naming(error, temporary, target)
            if renamed is not error:
                raise renamed from None
        raise


def output_problem(path: str | os.PathLike, *, folder: bool) -> str | None:
    """What stops the package from writing the output ``path`` (a folder to create or fill when ``folder``, else a
    file), as the end of a sentence that starts with the option's name, or None when nothing does. Checked before
    a command starts its work, so that a bad output path fails at once.

    Example: ``output_problem("photo.png", folder=True)`` -> ``"photo.png is an existing file, not a folder"``.
    """
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        return f"{path} is an existing file, not a folder"
    if not folder and path.is_dir():
        return f"{path} is an existing folder, not a file"
    ancestor = path if folder and path.is_dir() else path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{path} cannot be created: {ancestor} is a file, not a folder"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"{path} cannot be written: {ancestor} is not writable (read-only, or no permission)"
    return None


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
    as_numpy = {
        name: value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        for name, value in arrays.items()
    }
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            np.savez(handle, **as_numpy)
    return Path(path)
