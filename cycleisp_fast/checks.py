"""Argument checks shared by the whole package (ops, modules, noise, data, pipelines): each error names the
argument and says what was expected.

Example::

    check_tensor(x, "x", shape_doc="(N, 4, H, W)", channels=4)  # TypeError / ValueError naming x, or x
    check_count(batch_size, "batch_size", "images per batch")   # a positive int
"""

from __future__ import annotations

import numbers
from typing import Optional

import torch

from cycleisp_fast.backend import BACKENDS


def check_tensor(
    value, name: str, *, shape_doc: str, channels: int | None = None, even: bool = False, integer_ok: bool = False
) -> torch.Tensor:
    """Checks a 4-D image tensor ``(N, C, H, W)``; returns it unchanged."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {shape_doc}, got {type(value).__name__}")
    if value.dim() != 4:
        raise ValueError(f"{name} must have shape {shape_doc}, got {tuple(value.shape)}")
    if channels is not None and value.shape[1] != channels:
        raise ValueError(f"{name} must have {channels} channel(s), shape {shape_doc}; got {tuple(value.shape)}")
    if even and (value.shape[2] % 2 or value.shape[3] % 2):
        raise ValueError(
            f"{name} height and width must be even (whole 2x2 CFA blocks), got {value.shape[2]}x{value.shape[3]}; "
            "crop one row/column first"
        )
    integer_types = (torch.uint8, torch.int16, torch.uint16, torch.int32)
    if not value.is_floating_point() and not (integer_ok and value.dtype in integer_types):
        allowed = "a floating dtype" + (" or uint8/int16/uint16/int32 RAW samples" if integer_ok else "")
        raise TypeError(f"{name} must have {allowed}, got {value.dtype}")
    return value


def check_choice(value, name: str, choices: tuple[str, ...]) -> str:
    """A str among ``choices``; returns it."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, one of {choices}; got {type(value).__name__}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_backend_argument(backend) -> str | None:
    """A module's ``backend=`` argument: None (follow the backend in force) or one of the backend names."""
    return None if backend is None else check_choice(backend, "backend", BACKENDS)


def check_int(value, name: str) -> int:
    """An int (not a bool); returns it as an int."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r} of type {type(value).__name__}")
    return int(value)


def check_count(value, name: str, what: str) -> int:
    """A positive int (``what`` says what it counts, for the message); returns it as an int."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive int ({what}), got {value!r} of type {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive int ({what}), got {int(value)}")
    return int(value)


def check_generator(generator) -> Optional[torch.Generator]:
    """None or a CPU ``torch.Generator``; returns it."""
    if generator is None:
        return None
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if generator.device.type != "cpu":
        raise ValueError(
            "generator must be a CPU torch.Generator (levels are drawn on the CPU so that they do not depend "
            f"on the device), got one on {generator.device}"
        )
    return generator


def check_dtype(dtype) -> torch.dtype:
    """A real floating ``torch.dtype``; returns it."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point or dtype.is_complex:
        raise TypeError(f"dtype must be a real floating torch.dtype, got {dtype!r}")
    return dtype
