"""Loads the compiled extension, once, and says what it provides.

``cycleisp_fast._C`` holds every op's schema and CPU kernels; ``cycleisp_fast._C_cuda`` (in builds with CUDA) the
CUDA kernels. Importing them runs their C++ STABLE_TORCH_LIBRARY registrations. ``_C_cuda`` links libtorch_cuda
and the CUDA runtime, so it is imported only beside a CUDA build of torch: the one wheel also loads in a CPU-only
torch, with its CPU kernels. If ``_C`` is missing or fails to load, the package still works through Triton (GPU) or
the reference (CPU), and one warning says why; if only ``_C_cuda`` fails, the warning says so and the CPU kernels
stay.
"""

from __future__ import annotations

import importlib
import importlib.util
import warnings

import torch

REBUILD = "Rebuild with `pip install --no-build-isolation .` (torch >= 2.10)."

try:
    from cycleisp_fast import _C  # noqa: F401
except (ImportError, OSError) as error:  # not built, or built for another platform
    LOAD_ERROR: str | None = f"{type(error).__name__}: {error}"
    warnings.warn(
        "cycleisp_fast: the compiled extension cycleisp_fast._C is not available "
        f"({LOAD_ERROR}); the 'native' backend is off and 'auto' uses Triton on GPU and the plain-PyTorch "
        f"reference on CPU. {REBUILD}",
        RuntimeWarning,
        stacklevel=2,
    )
else:
    LOAD_ERROR = None

CUDA_LOAD_ERROR: str | None = None
"""Why the CUDA kernels of a build with CUDA did not load (None when they did, or when there are none)."""
if LOAD_ERROR is None and torch.version.cuda is not None and importlib.util.find_spec("cycleisp_fast._C_cuda"):
    try:  # a build without CUDA has no _C_cuda: nothing to load, nothing to say
        importlib.import_module("cycleisp_fast._C_cuda")
    except (ImportError, OSError) as error:  # e.g. torch's CUDA is another major version than the build's
        CUDA_LOAD_ERROR = f"{type(error).__name__}: {error}"
    if CUDA_LOAD_ERROR is not None:
        warnings.warn(
            f"cycleisp_fast: the CUDA kernels (cycleisp_fast._C_cuda) did not load ({CUDA_LOAD_ERROR}); the CPU "
            f"kernels work, and CUDA tensors use Triton or the reference. {REBUILD}",
            RuntimeWarning,
            stacklevel=2,
        )

LOADED = LOAD_ERROR is None


@torch.compiler.assume_constant_result
def has_native_kernel(op_name: str, device_type: str) -> bool:
    """Whether the extension registered a kernel of ``cycleisp_fast::<op_name>`` for ``device_type``."""
    if not LOADED:
        return False
    key = {"cpu": "CPU", "cuda": "CUDA"}.get(device_type)
    return key is not None and torch._C._dispatch_has_kernel_for_dispatch_key(f"cycleisp_fast::{op_name}", key)


_DEVICE_KERNELS: dict[str, bool] = {}

CPU_ONLY_OPS = frozenset({"winograd_conv3x3", "winograd_conv3x3_weight_grad", "winograd_transform_weight"})
"""Operators with a CPU kernel only, by design (the Winograd convolution: on a GPU, cuDNN has its own), left out
when :func:`has_native_kernels` asks about another device."""


@torch.compiler.assume_constant_result
def has_native_kernels(device_type: str) -> bool:
    """Whether the extension registered a ``device_type`` kernel of every one of its operators but the
    :data:`CPU_ONLY_OPS` on other devices (a build has kernels of all ops for a device or of none;
    ``tests/test_backend.py`` checks the CPU's)."""
    if device_type not in _DEVICE_KERNELS:
        names = [
            name.split("::")[1]
            for name in torch._C._dispatch_get_all_op_names()
            if name.startswith("cycleisp_fast::") and not name.endswith("_triton")
        ]
        if device_type != "cpu":
            names = [name for name in names if name not in CPU_ONLY_OPS]
        _DEVICE_KERNELS[device_type] = bool(names) and all(has_native_kernel(name, device_type) for name in names)
    return _DEVICE_KERNELS[device_type]
