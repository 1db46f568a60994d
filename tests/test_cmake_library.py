"""The CMake build of the ops (CMakeLists.txt) registers the same operators as the Python package's _C.

Runs when CYCLEISP_FAST_CMAKE_LIBRARY names the built library (scripts/test.sh sets it). The library is
loaded in a fresh interpreter, without the package (both register cycleisp_fast::*), and checked against
plain slicing.
"""

import os

import pytest

from conftest import run_python

LIBRARY = os.environ.get("CYCLEISP_FAST_CMAKE_LIBRARY")

CHECK = """
import sys, torch
torch.ops.load_library(sys.argv[1])
cfa = torch.randn(2, 1, 6, 8)
packed = torch.ops.cycleisp_fast.bayer_remap(cfa, "cfa", "packed", "BGGR")
expected = torch.stack([cfa[:, 0, 1::2, 1::2], cfa[:, 0, 1::2, 0::2], cfa[:, 0, 0::2, 1::2], cfa[:, 0, 0::2, 0::2]], 1)
assert torch.equal(packed, expected), "packed planes differ from slicing"
back = torch.ops.cycleisp_fast.bayer_remap(packed, "packed", "cfa", "BGGR")
assert torch.equal(back, cfa), "unpack does not invert pack"
print("ok")
"""


@pytest.mark.skipif(not LIBRARY, reason="CYCLEISP_FAST_CMAKE_LIBRARY not set (scripts/test.sh builds and sets it)")
def test_cmake_built_library_runs_the_ops():
    result = run_python(CHECK, LIBRARY)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
