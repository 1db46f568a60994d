"""One process at a time per run folder: an OS-level lock (``fcntl.flock``) on a lock file inside the folder.

``synth`` and ``train`` take the lock of their output folder before they look at what is in it and hold it to
the end, so two runs started together into one folder cannot interleave their files: the second fails at once
with :class:`FolderInUseError`, writing nothing. The operating system drops the lock when the holder exits, is
killed (SIGKILL included) or its machine's NFS client goes away, so a crashed run never leaves a stale lock; the
lock file itself stays (it holds the last holder's pid, for the message) and is harmless.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

LOCK_NAME = ".cycleisp-fast.lock"


class FolderInUseError(OSError):
    """Another process holds the lock of a run folder; the message names the folder and that process."""


@contextlib.contextmanager
def run_folder_lock(folder: str | os.PathLike, command: str, *, name: str = LOCK_NAME) -> Iterator[Path]:
    """Holds ``folder``'s lock (creating the folder) for the ``with`` block; yields the folder. ``name``: the lock
    file's name (processes that share a folder by design, e.g. the ranks of one ``synth`` run, take one each).

    Raises:
        FolderInUseError: another process holds it.

    Example:
        >>> import tempfile
        >>> with run_folder_lock(tempfile.mkdtemp(), "synth") as folder:
        ...     pass  # write the run's files
    """
    import fcntl  # POSIX only, like the rest of the package's process handling

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 64, 0).decode(errors="replace").strip() or "unknown"
            raise FolderInUseError(
                f"{folder} is in use by another run (pid {holder}); a folder takes one {command} "
                "run at a time: wait for that one to end, or choose another output folder"
            ) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        yield folder
    finally:
        os.close(descriptor)  # releases the lock
