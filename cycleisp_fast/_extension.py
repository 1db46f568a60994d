"""Loads the compiled extension cycleisp_fast._C, once, and says what it provides.

Importing _C runs the C++ TORCH_LIBRARY registrations (CPU and, when built with CUDA, CUDA kernels of
every op). If it is missing or fails to load, the package still works through Triton (GPU) or the
reference (CPU), and one warning says why.
"""

from __future__ import annotations

import warnings

import torch

try:
    from cycleisp_fast import _C  # noqa: F401
except (ImportError, OSError) as error:  # not built, or built against another torch
    LOAD_ERROR: str | None = f"{type(error).__name__}: {error}"
    warnings.warn(
        "cycleisp_fast: the compiled extension cycleisp_fast._C is not available "
        f"({LOAD_ERROR}); the 'native' backend is off and 'auto' uses Triton on GPU and the plain-PyTorch "
        "reference on CPU. Rebuild with `pip install --no-build-isolation .` against the installed torch.",
        RuntimeWarning,
        stacklevel=2,
    )
else:
    LOAD_ERROR = None

LOADED = LOAD_ERROR is None


@torch.compiler.assume_constant_result
def has_native_kernel(op_name: str, device_type: str) -> bool:
    """Whether the extension registered a kernel of ``cycleisp_fast::<op_name>`` for ``device_type``."""
    if not LOADED:
        return False
    key = {"cpu": "CPU", "cuda": "CUDA"}.get(device_type)
    return key is not None and torch._C._dispatch_has_kernel_for_dispatch_key(f"cycleisp_fast::{op_name}", key)


_DEVICE_KERNELS: dict[str, bool] = {}


@torch.compiler.assume_constant_result
def has_native_kernels(device_type: str) -> bool:
    """Whether the extension registered a ``device_type`` kernel of every one of its operators (a build has
    kernels of all ops for a device or of none; ``tests/test_backend.py`` checks the CPU's)."""
    if device_type not in _DEVICE_KERNELS:
        names = [
            name.split("::")[1]
            for name in torch._C._dispatch_get_all_op_names()
            if name.startswith("cycleisp_fast::") and not name.endswith("_triton")
        ]
        _DEVICE_KERNELS[device_type] = bool(names) and all(has_native_kernel(name, device_type) for name in names)
    return _DEVICE_KERNELS[device_type]
