"""Backend choice for every fused op: ``"auto" | "reference" | "native" | "triton"``.

- ``reference``: plain PyTorch, written to mirror the papers' code (the truth the others are tested against);
- ``native``: the compiled C++ (CPU) and CUDA kernels of ``cycleisp_fast._C``;
- ``triton``: the Triton kernels (GPU tensors; CPU tensors only under ``TRITON_INTERPRET=1``);
- ``auto`` (default): native if it has a kernel for the tensor's device, else Triton on a GPU, else reference.

Precedence: a ``backend=`` argument (op or module) over ``use_backend`` over ``set_backend`` over the
environment variable ``CYCLEISP_FAST_BACKEND``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from typing import Iterator

from cycleisp_fast import _extension

BACKENDS = ("auto", "reference", "native", "triton")
ENV_VAR = "CYCLEISP_FAST_BACKEND"


def _check_name(name: str, arg: str = "backend") -> str:
    if name not in BACKENDS:
        raise ValueError(f"{arg} must be one of {BACKENDS}, got {name!r}")
    return name


_TRITON_IMPORTABLE = importlib.util.find_spec("triton") is not None


def triton_importable() -> bool:
    """Whether the ``triton`` package can be imported (it need not have a GPU)."""
    return _TRITON_IMPORTABLE


def triton_interpreted() -> bool:
    """Whether Triton kernels run in the CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def available_backends() -> tuple[str, ...]:
    """The backends that can serve at least one device on this machine."""
    names = ["auto", "reference"]
    if _extension.LOADED:
        names.append("native")
    if triton_importable():
        names.append("triton")
    return tuple(names)


def _check_available(name: str) -> str:
    if name == "native" and not _extension.LOADED:
        raise RuntimeError(
            "backend 'native' is not available: the compiled extension did not load "
            f"({_extension.LOAD_ERROR}). Available: {available_backends()}"
        )
    if name == "triton" and not triton_importable():
        raise RuntimeError(
            f"backend 'triton' is not available: triton is not installed. Available: {available_backends()}"
        )
    return name


_default = _check_name(os.environ.get(ENV_VAR, "auto"), ENV_VAR)
_stack: list[str] = []


def set_backend(name: str) -> None:
    """Sets the process-wide default backend. Raises if ``name`` is unknown or not available at all."""
    global _default
    _default = _check_available(_check_name(name))


def get_backend() -> str:
    """The backend in force: the innermost ``use_backend``, else the ``set_backend``/environment default."""
    return _stack[-1] if _stack else _default


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Context manager: ops inside use ``name`` unless given ``backend=``. Raises at once if unavailable."""
    _stack.append(_check_available(_check_name(name)))
    try:
        yield
    finally:
        _stack.pop()


def resolve(op_name: str, device_type: str, backend: str | None = None) -> str:
    """The concrete backend (``reference``, ``native`` or ``triton``) that runs ``op_name`` on ``device_type``.

    ``backend`` (an op or module argument) overrides the backend in force. An explicit backend that cannot
    serve the device raises a ``RuntimeError`` naming what can.
    """
    name = _check_available(_check_name(backend)) if backend is not None else get_backend()
    native_ok = _extension.has_native_kernel(op_name, device_type)
    triton_ok = triton_importable() and (device_type == "cuda" or triton_interpreted())
    if name == "auto":
        if native_ok:
            return "native"
        return "triton" if triton_ok and device_type == "cuda" else "reference"
    if name == "native" and not native_ok or name == "triton" and not triton_ok:
        can = ["reference"] + (["native"] if native_ok else []) + (["triton"] if triton_ok else [])
        why = backend_unavailable(name, device_type) or "the extension was built without kernels for it"
        raise RuntimeError(
            f"backend {name!r} cannot run {op_name} on {device_type} tensors ({why}); available there: {can}"
        )
    return name


def backend_unavailable(name: str, device_type: str) -> str | None:
    """Why the fused backend ``name`` (``native`` or ``triton``) runs no op at all on ``device_type`` tensors here,
    or None when it may run some (:func:`resolve` says which). For messages that cover every op at once.

    Example:
        >>> backend_unavailable("native", "tpu")
        'the extension has no tpu kernels'
    """
    if name == "triton":
        if not triton_importable():
            return "triton is not installed"
        if device_type != "cuda" and not triton_interpreted():
            return "Triton runs CPU tensors only under TRITON_INTERPRET=1"
    elif name == "native" and not _extension.has_native_kernels(device_type):
        if not _extension.LOADED:
            return f"the compiled extension did not load ({_extension.LOAD_ERROR})"
        return f"the extension has no {device_type} kernels"
    return None


def is_reference(device_type: str, backend: str | None = None) -> bool:
    """Whether the fused ops run their plain-PyTorch reference on ``device_type`` tensors: the backend in force
    (``backend`` overriding it) is ``"reference"``, or ``"auto"`` finds neither native kernels for the device nor
    Triton on a GPU. Models ask it to choose between the official computation and their faster rewrites."""
    name = _check_available(_check_name(backend)) if backend is not None else get_backend()
    if name != "auto":
        return name == "reference"
    return not (_extension.has_native_kernels(device_type) or triton_importable() and device_type == "cuda")
