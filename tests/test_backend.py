"""Backend choice: precedence, availability errors, the environment variable, and the package working
(with one warning) when the compiled extension is missing."""

import importlib
import os

import pytest
import torch
from conftest import run_python

import cycleisp_fast
from cycleisp_fast import _extension, backend, ops
from cycleisp_fast.nn import BayerPack


def test_default_is_auto_and_auto_prefers_native_on_cpu():
    assert cycleisp_fast.get_backend() == os.environ.get("CYCLEISP_FAST_BACKEND", "auto")
    expected = "native" if _extension.LOADED else "reference"
    assert backend.resolve("bayer_remap", "cpu", "auto") == expected


def test_precedence_argument_over_context_over_global():
    cycleisp_fast.set_backend("reference")
    try:
        assert backend.resolve("bayer_remap", "cpu") == "reference"
        with cycleisp_fast.use_backend("triton"):
            assert cycleisp_fast.get_backend() == "triton"
            assert backend.resolve("bayer_remap", "cpu") == "triton"  # tests run with TRITON_INTERPRET=1
            assert backend.resolve("bayer_remap", "cpu", "reference") == "reference"
        assert cycleisp_fast.get_backend() == "reference"
    finally:
        cycleisp_fast.set_backend("auto")


def test_module_backend_argument_is_used(monkeypatch):
    calls = []
    real = backend.resolve
    monkeypatch.setattr(backend, "resolve", lambda op, device, name=None: calls.append(name) or real(op, device, name))
    BayerPack("RGGB", backend="reference")(torch.rand(1, 1, 2, 2))
    assert calls == ["reference"]


def test_unknown_backend_names_are_rejected():
    with pytest.raises(ValueError, match="backend must be one of"):
        cycleisp_fast.set_backend("cuda")
    with pytest.raises(ValueError, match="backend must be one of"):
        with cycleisp_fast.use_backend("fast"):
            pass
    with pytest.raises(ValueError, match="backend must be one of"):
        BayerPack(backend="fast")


def test_unavailable_backends_raise_at_once(monkeypatch):
    monkeypatch.setattr(_extension, "LOADED", False)
    monkeypatch.setattr(_extension, "LOAD_ERROR", "ImportError: simulated")
    with pytest.raises(RuntimeError, match="backend 'native' is not available.*simulated"):
        with cycleisp_fast.use_backend("native"):
            pass
    monkeypatch.setattr(backend, "_TRITON_IMPORTABLE", False)
    with pytest.raises(RuntimeError, match="triton is not installed"):
        cycleisp_fast.set_backend("triton")


def test_backend_that_cannot_serve_the_device_says_what_can(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match=r"cannot run bayer_remap on cpu tensors.*TRITON_INTERPRET.*available there"):
        ops.bayer_pack(torch.rand(1, 1, 2, 2), backend="triton")
    if _extension.LOADED and not _extension.has_native_kernel("bayer_remap", "cuda"):
        with pytest.raises(RuntimeError, match="cannot run bayer_remap on cuda"):
            backend.resolve("bayer_remap", "cuda", "native")


def _run_python(code, **env):
    return run_python(code, env={**os.environ, **env})


def test_environment_variable_sets_the_default():
    result = _run_python("import cycleisp_fast; print(cycleisp_fast.get_backend())", CYCLEISP_FAST_BACKEND="reference")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "reference"
    bad = _run_python("import cycleisp_fast", CYCLEISP_FAST_BACKEND="gpu")
    assert bad.returncode != 0 and "CYCLEISP_FAST_BACKEND must be one of" in bad.stderr


def test_package_works_with_one_warning_when_the_extension_is_missing():
    code = (
        "import sys, warnings\n"
        "sys.modules['cycleisp_fast._C'] = None  # makes `from cycleisp_fast import _C` fail\n"
        "warnings.simplefilter('always')\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    import torch, cycleisp_fast\n"
        "    out = cycleisp_fast.ops.bayer_pack(torch.arange(16.).view(1, 1, 4, 4))\n"
        "ours = [w for w in caught if 'cycleisp_fast' in str(w.message)]\n"
        "print(len(ours), cycleisp_fast.available_backends(), out[0, :, 0, 0].tolist())\n"
    )
    result = _run_python(code)
    assert result.returncode == 0, result.stderr
    count, rest = result.stdout.strip().split(" ", 1)
    assert count == "1"
    assert "'native'" not in rest
    assert rest.endswith("[0.0, 1.0, 4.0, 5.0]")


def test_the_extension_is_built_with_a_cpu_kernel_of_every_op():
    """The test job builds the extension (scripts/test.sh): a failed or partial build fails here, rather than
    only as native tests that compare nothing."""
    modules = {
        name: importlib.import_module(f"cycleisp_fast.ops.{name}")
        for name in ("ain", "bayer", "camera", "dual_attention", "noise", "winograd")
    }
    assert _extension.LOADED, f"the C++ extension cycleisp_fast._C did not load: {_extension.LOAD_ERROR}"
    names = [modules[name].OP_NAME for name in ("ain", "bayer", "dual_attention", "noise", "winograd")] + list(
        modules["camera"].OP_NAMES
    )
    assert [name for name in names if not _extension.has_native_kernel(name, "cpu")] == []
