"""The CMake build of the ops (CMakeLists.txt) registers the same operators as the Python package's _C.

Runs when CYCLEISP_FAST_CMAKE_LIBRARY names the built library (scripts/test.sh sets it). The library is
loaded in a fresh interpreter, without the package (both register cycleisp_fast::*), and checked against
plain slicing; its compile commands must carry every host-compiler flag of csrc/build_flags.txt, the file
setup.py reads too.
"""

import json
import os
import shlex
from pathlib import Path

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


@pytest.mark.skipif(not LIBRARY, reason="CYCLEISP_FAST_CMAKE_LIBRARY not set (scripts/test.sh builds and sets it)")
def test_cmake_build_uses_the_shared_compiler_flags():
    flags_file = Path(__file__).resolve().parents[1] / "csrc" / "build_flags.txt"
    lines = [line.split(None, 1) for line in flags_file.read_text().splitlines() if line and line[0] != "#"]
    cxx_flags = [flag.strip() for tool, flag in lines if tool == "cxx"]
    assert "-ffp-contract=off" in cxx_flags
    commands = json.loads((Path(LIBRARY).parent / "compile_commands.json").read_text())
    ops_sources = [entry for entry in commands if "/csrc/ops/" in entry["file"] and entry["file"].endswith(".cpp")]
    assert ops_sources, "no csrc/ops/*.cpp in compile_commands.json"
    for entry in ops_sources:
        arguments = shlex.split(entry["command"]) if "command" in entry else entry["arguments"]
        missing = [flag for flag in cxx_flags if flag not in arguments]
        assert not missing, f"{entry['file']} compiled without {missing}"
