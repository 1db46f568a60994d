"""Argument checks shared by every op: each error names the argument and says what was expected."""

from __future__ import annotations

import torch

from cycleisp_fast.backend import BACKENDS


def check_tensor(value, name: str, *, shape_doc: str, channels: int | None = None, even: bool = False,
                 integer_ok: bool = False) -> torch.Tensor:
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
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, one of {choices}; got {type(value).__name__}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_backend_argument(backend) -> str | None:
    """A module's ``backend=`` argument: None (follow the backend in force) or one of the backend names."""
    return None if backend is None else check_choice(backend, "backend", BACKENDS)
