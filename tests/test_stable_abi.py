"""The compiled extension is built against the LibTorch stable ABI and Python's limited API, so one build serves
every torch >= 2.10 and CPython >= 3.10: it must import no libtorch C++ symbol (only the stable C shim's
``aoti_torch_*`` / ``torch_*`` functions) and be an ``abi3`` module. ``scripts/test_torch_range.sh`` runs the op
tests with the same wheel in a second torch release."""

import shutil
import subprocess
from pathlib import Path

import pytest

from cycleisp_fast import _extension

pytestmark = pytest.mark.skipif(not _extension.LOADED, reason="compiled extension not built")


def _extension_file() -> Path:
    from cycleisp_fast import _C

    return Path(_C.__file__)


def test_extension_is_an_abi3_module():
    assert _extension_file().name == "_C.abi3.so"
    assert not list(_extension_file().parent.glob("_C.cpython-*.so")), "a version-bound _C shadows the abi3 one"


@pytest.mark.skipif(shutil.which("nm") is None, reason="needs nm (binutils)")
def test_extension_imports_no_libtorch_cpp_symbol():
    undefined = subprocess.run(
        ["nm", "-D", "--undefined-only", "--demangle", str(_extension_file())],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    names = [line.split(None, 1)[1] for line in undefined if line.strip()]
    torch_cpp = [name for name in names if name.startswith(("at::", "c10::", "torch::", "caffe2::"))]
    assert not torch_cpp, f"symbols of libtorch's C++ ABI: {torch_cpp[:10]}"
    shims = [name for name in names if name.startswith(("aoti_torch_", "torch_"))]
    assert shims, "expected the stable C shim's functions (aoti_torch_*, torch_*)"
