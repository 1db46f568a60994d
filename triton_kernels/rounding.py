"""Correctly rounded float32 helpers shared by the Triton kernels (Triton's float32 ``/`` and ``sqrt`` may be
approximate on the GPU; the C++ kernels and the references round to nearest)."""

import triton
import triton.language as tl


@triton.jit
def divide(numerator, denominator):
    """Numerator / denominator rounded to nearest."""
    if numerator.dtype == tl.float64:
        quotient = numerator / denominator
    else:
        quotient = tl.math.div_rn(numerator, denominator)
    return quotient


@triton.jit
def sqrt(value):
    """The square root rounded to nearest."""
    if value.dtype == tl.float64:
        root = tl.sqrt(value)
    else:
        root = tl.sqrt_rn(value)
    return root


@triton.jit
def to_bfloat16(value):
    """A float32 value rounded to the nearest bfloat16 (ties to even), NaN kept. Written out in integer
    arithmetic because Triton's interpreter truncates in ``.to(tl.bfloat16)`` whatever the rounding mode."""
    bits = value.to(tl.uint32, bitcast=True)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return tl.where(value != value, value.to(tl.bfloat16), rounded.to(tl.uint16).to(tl.bfloat16, bitcast=True))
