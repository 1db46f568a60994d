"""The compiled modules are built against the LibTorch stable ABI and Python's limited API, so one build serves
every torch >= 2.10 and CPython >= 3.10: they must import no libtorch C++ symbol (only the stable C shim's
``aoti_torch_*`` / ``torch_*`` functions) and be ``abi3`` modules; the CUDA kernels live in a module of their own,
imported beside a CUDA build of torch only. ``scripts/test_torch_range.sh`` runs the op tests with the same wheel
in a second torch release."""

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from cycleisp_fast import _extension

pytestmark = pytest.mark.skipif(not _extension.LOADED, reason="compiled extension not built")


def _package() -> Path:
    from cycleisp_fast import _C

    return Path(_C.__file__).parent


def _modules() -> list[Path]:
    return sorted(_package().glob("_C*.so"))


def test_modules_are_abi3():
    names = [path.name for path in _modules()]
    assert "_C.abi3.so" in names
    assert set(names) <= {"_C.abi3.so", "_C_cuda.abi3.so"}, f"a version-bound module shadows the abi3 one: {names}"


@pytest.mark.skipif(shutil.which("nm") is None, reason="needs nm (binutils)")
@pytest.mark.parametrize("name", ["_C.abi3.so", "_C_cuda.abi3.so"])
def test_module_imports_no_libtorch_cpp_symbol(name):
    path = _package() / name
    if not path.exists():
        pytest.skip(f"{name} not built (a build without CUDA)")
    undefined = subprocess.run(
        ["nm", "-D", "--undefined-only", "--demangle", str(path)], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    names = [line.split(None, 1)[1] for line in undefined if line.strip()]
    torch_cpp = [name for name in names if name.startswith(("at::", "c10::", "torch::", "caffe2::"))]
    assert not torch_cpp, f"symbols of libtorch's C++ ABI: {torch_cpp[:10]}"
    assert any(name.startswith(("aoti_torch_", "torch_")) for name in names), "expected the stable C shim's functions"


def test_the_cpu_module_needs_no_cuda():
    needed = subprocess.run(["ldd", str(_package() / "_C.abi3.so")], capture_output=True, text=True).stdout
    assert "cuda" not in needed.lower(), needed


@pytest.mark.skipif(torch.version.cuda is None, reason="CPU-only torch: the CUDA module is not imported")
def test_the_cuda_module_loads_beside_a_cuda_torch():
    if not (_package() / "_C_cuda.abi3.so").exists():
        pytest.skip("a build without CUDA")
    assert _extension.CUDA_LOAD_ERROR is None
    assert _extension.has_native_kernels("cuda") and _extension.has_native_kernels("cpu")


def test_a_build_without_cuda_says_nothing_of_cuda_kernels():
    if (_package() / "_C_cuda.abi3.so").exists():
        pytest.skip("a build with CUDA")
    assert _extension.CUDA_LOAD_ERROR is None
