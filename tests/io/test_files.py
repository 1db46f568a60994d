"""Atomic writes (atomic_path, save_torch, save_numpy) and DataFileError."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch

from cycleisp_fast.data.files import DataFileError, atomic_path, save_numpy, save_torch


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
    with pytest.raises(Exception):
        save_torch(lambda: None, path)  # a lambda cannot be pickled
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
