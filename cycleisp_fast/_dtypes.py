"""The one rule for the precision that kernels compute in."""

from __future__ import annotations

import torch


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 for float64 data, else float32: what every backend computes and keeps statistics in
    (half and bfloat16 data are computed in float32, as ATen's opmath_type does)."""
    return torch.float64 if dtype == torch.float64 else torch.float32
