"""Atomic writes (atomic_path, save_torch, save_numpy) and DataFileError."""

from __future__ import annotations

import errno
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from cycleisp_fast.data.files import NAME_MAX, DataFileError, atomic_path, output_problem, save_numpy, save_torch


def _names(folder) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def test_atomic_path_replaces_the_file_only_when_the_block_ends(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with atomic_path(target) as temporary:
        assert temporary.parent == tmp_path
        assert temporary.name.startswith(".") and temporary.suffix == ".bin" and temporary != target
        temporary.write_bytes(b"new")
        assert target.read_bytes() == b"old"  # nothing visible until the block ends
    assert target.read_bytes() == b"new"
    assert _names(tmp_path) == ["out.bin"]


def test_atomic_path_creates_parent_folders(tmp_path):
    target = tmp_path / "a" / "b" / "out.txt"
    with atomic_path(target) as temporary:
        temporary.write_text("hello")
    assert target.read_text() == "hello"


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_atomic_path_keeps_the_old_file_and_leaves_no_temporary_when_the_block_raises(tmp_path, error):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(type(error)):
        with atomic_path(target) as temporary:
            temporary.write_bytes(b"half-writ")
            raise error
    assert target.read_bytes() == b"old"
    assert _names(tmp_path) == ["out.bin"]


def test_atomic_path_without_a_written_file_raises_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(FileNotFoundError, match="nothing was written for .*out.bin"):
        with atomic_path(target):
            pass
    assert target.read_bytes() == b"old"
    assert _names(tmp_path) == ["out.bin"]


def test_atomic_path_temporary_names_are_unique(tmp_path):
    with atomic_path(tmp_path / "x.txt") as first, atomic_path(tmp_path / "x.txt") as second:
        assert first != second
        first.write_text("1")
        second.write_text("2")
    assert (tmp_path / "x.txt").read_text() == "1"  # the outer block ends last
    assert _names(tmp_path) == ["x.txt"]


@pytest.mark.parametrize("name", ["n" * 251 + ".png", "é" * 125 + ".tif", "x" * 255])
def test_atomic_path_temporary_name_fits_the_name_limit(tmp_path, name):
    """A legal name of up to 255 bytes (multi-byte characters included) gets a temporary sibling that fits too."""
    target = tmp_path / name
    with atomic_path(target) as temporary:
        assert len(os.fsencode(temporary.name)) <= NAME_MAX and temporary.name.startswith(".")
        assert temporary.name.endswith(f".tmp{target.suffix}") and temporary.parent == target.parent
        temporary.write_bytes(b"data")
    assert target.read_bytes() == b"data"
    assert _names(tmp_path) == [name]


def test_atomic_path_errors_name_the_users_path_not_the_temporary(tmp_path):
    """A read-only or full disk fails while the temporary is written: the error names the destination."""
    target = tmp_path / "out.png"
    with pytest.raises(PermissionError) as caught:
        with atomic_path(target) as temporary:
            raise PermissionError(errno.EROFS, "Read-only file system", str(temporary))
    assert caught.value.filename == str(target) and caught.value.errno == errno.EROFS
    assert str(target) in str(caught.value) and ".tmp" not in str(caught.value)


def test_atomic_path_cleanup_never_raises_a_second_error(tmp_path, monkeypatch):
    def unlink(self, missing_ok=False):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "unlink", unlink)
    with pytest.raises(RuntimeError, match="the write failed"):  # not the cleanup's OSError
        with atomic_path(tmp_path / "out.bin"):
            raise RuntimeError("the write failed")


def test_output_problem_names_what_stops_a_write(tmp_path):
    (tmp_path / "file").write_text("")
    assert output_problem(tmp_path / "new" / "deeper", folder=True) is None
    assert output_problem(tmp_path / "new.csv", folder=False) is None
    assert output_problem(tmp_path, folder=True) is None
    assert output_problem(tmp_path / "file", folder=True) == f"{tmp_path / 'file'} is an existing file, not a folder"
    assert output_problem(tmp_path, folder=False) == f"{tmp_path} is an existing folder, not a file"
    assert output_problem(tmp_path / "file" / "x" / "y.csv", folder=False) == (
        f"{tmp_path / 'file' / 'x' / 'y.csv'} cannot be created: {tmp_path / 'file'} is a file, not a folder"
    )


def test_atomic_path_refuses_a_folder(tmp_path):
    with pytest.raises(IsADirectoryError, match=str(tmp_path)):
        with atomic_path(tmp_path):
            pass


def test_save_torch_round_trip(tmp_path):
    state = {"weight": torch.randn(3, 4), "step": 7}
    path = save_torch(state, tmp_path / "model.pt")
    loaded = torch.load(path)
    assert loaded["step"] == 7 and torch.equal(loaded["weight"], state["weight"])
    assert _names(tmp_path) == ["model.pt"]


def test_save_torch_failure_keeps_the_old_file(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"old checkpoint")
    with pytest.raises((AttributeError, pickle.PicklingError)):  # a lambda cannot be pickled
        save_torch(lambda: None, path)
    assert path.read_bytes() == b"old checkpoint"
    assert _names(tmp_path) == ["model.pt"]


def test_save_numpy_writes_an_uncompressed_npz_under_the_given_name(tmp_path):
    clean = np.arange(12, dtype=np.float32).reshape(3, 4)
    noisy = torch.arange(6, dtype=torch.int16).reshape(2, 3)
    path = save_numpy(tmp_path / "pairs.npz", clean=clean, noisy=noisy)
    with np.load(path) as loaded:
        assert sorted(loaded.files) == ["clean", "noisy"]
        np.testing.assert_array_equal(loaded["clean"], clean)
        np.testing.assert_array_equal(loaded["noisy"], noisy.numpy())
        assert loaded["noisy"].dtype == np.int16
    with zipfile.ZipFile(path) as archive:
        assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())
    assert _names(tmp_path) == ["pairs.npz"]


def test_save_numpy_keeps_a_name_without_npz_suffix(tmp_path):
    path = save_numpy(tmp_path / "levels.data", shot=np.array([0.01]))
    assert _names(tmp_path) == ["levels.data"]
    with np.load(path) as loaded:
        np.testing.assert_array_equal(loaded["shot"], [0.01])


def test_save_numpy_needs_an_array(tmp_path):
    with pytest.raises(ValueError, match="at least one named array"):
        save_numpy(tmp_path / "empty.npz")


def test_data_file_error_is_a_value_error():
    assert issubclass(DataFileError, ValueError)
