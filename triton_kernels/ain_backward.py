"""Triton kernels of the AIN backward (see csrc/ops/ain_math.h for the math; the forward and the shared
device functions are triton_kernels/ain.py).

``_ain_grad_sums_kernel`` writes its chunk of grad_gamma and grad_beta and the partial sums of grad_xhat and
grad_xhat * xhat; ``_ain_input_grad_kernel`` adds its plane's partials and writes grad_x. One program per
(plane, chunk), statistics in the dtype of mean/rstd, offsets int64.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from cycleisp_fast.triton_kernels.ain import BLOCK, CHUNK, PARTIAL_BLOCK, _chunk, _leaky, _slope, chunks_per_plane
from cycleisp_fast.triton_kernels.rounding import divide


@triton.jit
def _element_grad(
    grad_ptr,
    x_ptr,
    gamma_ptr,
    gate_ptr,
    offsets,
    mask,
    mean,
    rstd,
    slope,
    LEAKY: tl.constexpr,
    FROM_OUTPUT: tl.constexpr,
):
    """(grad_z, grad_xhat, xhat) of the elements at ``offsets``; 0, 0 and -mean * rstd where masked. ``gate`` is
    beta, or with FROM_OUTPUT the forward's output (whose sign is z's for a slope >= 0)."""
    acc_dtype: tl.constexpr = mean.dtype
    grad_out = tl.load(grad_ptr + offsets, mask=mask, other=0).to(acc_dtype)
    x = tl.load(x_ptr + offsets, mask=mask, other=0).to(acc_dtype)
    scale = 1 + tl.load(gamma_ptr + offsets, mask=mask, other=0).to(acc_dtype)
    gate = tl.load(gate_ptr + offsets, mask=mask, other=0).to(acc_dtype)
    xhat = (x - mean) * rstd
    if FROM_OUTPUT:
        z = gate
    else:
        z = xhat * scale + gate
    grad_z = _leaky(grad_out, z, slope, LEAKY)
    return grad_z, grad_z * scale, xhat


@triton.jit
def _ain_grad_sums_kernel(
    grad_ptr,
    x_ptr,
    gamma_ptr,
    gate_ptr,
    mean_ptr,
    rstd_ptr,
    grad_gamma_ptr,
    grad_beta_ptr,
    partial_ptr,
    plane_size,
    chunks,
    slope: tl.float64,
    LEAKY: tl.constexpr,
    FROM_OUTPUT: tl.constexpr,
    CHUNK: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Writes one chunk of grad_gamma and grad_beta ``(N*C, H*W)``, and to partial_ptr ``(N*C*chunks, 2)``
    the chunk's sums of grad_xhat and grad_xhat * xhat."""
    acc_dtype: tl.constexpr = mean_ptr.dtype.element_ty
    plane, _, base, count = _chunk(plane_size, chunks, CHUNK)
    mean = tl.load(mean_ptr + plane)
    rstd = tl.load(rstd_ptr + plane)
    slope = tl.full([], slope, acc_dtype)
    sum_grad = tl.zeros([BLOCK], dtype=acc_dtype)
    sum_grad_xhat = tl.zeros([BLOCK], dtype=acc_dtype)
    for start in range(0, count, BLOCK):
        index = start + tl.arange(0, BLOCK)
        mask = index < count
        offsets = base + index
        grad_z, grad_xhat, xhat = _element_grad(
            grad_ptr, x_ptr, gamma_ptr, gate_ptr, offsets, mask, mean, rstd, slope, LEAKY, FROM_OUTPUT
        )
        tl.store(grad_gamma_ptr + offsets, (grad_z * xhat).to(grad_gamma_ptr.dtype.element_ty), mask=mask)
        tl.store(grad_beta_ptr + offsets, grad_z.to(grad_beta_ptr.dtype.element_ty), mask=mask)
        sum_grad += grad_xhat
        sum_grad_xhat += grad_xhat * xhat
    out = partial_ptr + tl.program_id(0).to(tl.int64) * 2
    tl.store(out, tl.sum(sum_grad, axis=0))
    tl.store(out + 1, tl.sum(sum_grad_xhat, axis=0))


@triton.jit
def _plane_grad_sums(partial_ptr, plane, chunks, PARTIAL_BLOCK: tl.constexpr):
    """sum(grad_xhat) and sum(grad_xhat * xhat) of a plane from its ``chunks`` partials at partial_ptr."""
    acc_dtype: tl.constexpr = partial_ptr.dtype.element_ty
    first = partial_ptr + plane * chunks * 2
    sum_grad = tl.zeros([PARTIAL_BLOCK], dtype=acc_dtype)
    sum_grad_xhat = tl.zeros([PARTIAL_BLOCK], dtype=acc_dtype)
    for start in range(0, chunks, PARTIAL_BLOCK):
        index = start + tl.arange(0, PARTIAL_BLOCK)
        mask = index < chunks
        sum_grad += tl.load(first + index * 2, mask=mask, other=0)
        sum_grad_xhat += tl.load(first + index * 2 + 1, mask=mask, other=0)
    return tl.sum(sum_grad, axis=0), tl.sum(sum_grad_xhat, axis=0)


@triton.jit
def _ain_input_grad_kernel(
    grad_ptr,
    x_ptr,
    gamma_ptr,
    gate_ptr,
    mean_ptr,
    rstd_ptr,
    partial_ptr,
    grad_x_ptr,
    plane_size,
    chunks,
    slope: tl.float64,
    LEAKY: tl.constexpr,
    FROM_OUTPUT: tl.constexpr,
    CHUNK: tl.constexpr,
    BLOCK: tl.constexpr,
    PARTIAL_BLOCK: tl.constexpr,
):
    """Writes one chunk of grad_x ``(N*C, H*W)``:
    rstd * (grad_xhat - mean(grad_xhat) - xhat * mean(grad_xhat * xhat)), means over the plane."""
    acc_dtype: tl.constexpr = mean_ptr.dtype.element_ty
    plane, _, base, count = _chunk(plane_size, chunks, CHUNK)
    mean = tl.load(mean_ptr + plane)
    rstd = tl.load(rstd_ptr + plane)
    slope = tl.full([], slope, acc_dtype)
    sum_grad, sum_grad_xhat = _plane_grad_sums(partial_ptr, plane, chunks, PARTIAL_BLOCK)
    size = tl.full([], plane_size, acc_dtype)
    mean_grad = divide(sum_grad, size)
    mean_grad_xhat = divide(sum_grad_xhat, size)
    for start in range(0, count, BLOCK):
        index = start + tl.arange(0, BLOCK)
        mask = index < count
        offsets = base + index
        _grad_z, grad_xhat, xhat = _element_grad(
            grad_ptr, x_ptr, gamma_ptr, gate_ptr, offsets, mask, mean, rstd, slope, LEAKY, FROM_OUTPUT
        )
        grad_x = rstd * (grad_xhat - mean_grad - xhat * mean_grad_xhat)
        tl.store(grad_x_ptr + offsets, grad_x.to(grad_x_ptr.dtype.element_ty), mask=mask)


def ain_backward(
    grad_out: torch.Tensor,
    x: torch.Tensor,
    gamma: torch.Tensor,
    gate: torch.Tensor,
    mean: torch.Tensor,
    rstd: torch.Tensor,
    negative_slope: float | None,
    gate_is_output: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Contiguous ``(N, C, H, W)`` grad_out, x, gamma, gate (beta, or with ``gate_is_output`` the forward's output:
    the slope, if any, must then be >= 0) and the forward's ``(N, C)`` mean, rstd -> (grad_x, grad_gamma,
    grad_beta), each ``(N, C, H, W)`` like x."""
    planes, plane_size = x.shape[0] * x.shape[1], x.shape[2] * x.shape[3]
    grad_x, grad_gamma, grad_beta = (torch.empty_like(x, memory_format=torch.contiguous_format) for _ in range(3))
    if planes * plane_size == 0:
        return grad_x, grad_gamma, grad_beta
    chunks = chunks_per_plane(plane_size)
    partial = torch.empty((planes * chunks, 2), dtype=mean.dtype, device=x.device)  # grad_xhat sums
    grid = (planes * chunks,)
    leaky, slope = negative_slope is not None, _slope(negative_slope)
    _ain_grad_sums_kernel[grid](
        grad_out,
        x,
        gamma,
        gate,
        mean,
        rstd,
        grad_gamma,
        grad_beta,
        partial,
        plane_size,
        chunks,
        slope,
        LEAKY=leaky,
        FROM_OUTPUT=gate_is_output,
        CHUNK=CHUNK,
        BLOCK=BLOCK,
    )
    _ain_input_grad_kernel[grid](
        grad_out,
        x,
        gamma,
        gate,
        mean,
        rstd,
        partial,
        grad_x,
        plane_size,
        chunks,
        slope,
        LEAKY=leaky,
        FROM_OUTPUT=gate_is_output,
        CHUNK=CHUNK,
        BLOCK=BLOCK,
        PARTIAL_BLOCK=PARTIAL_BLOCK,
    )
    return grad_x, grad_gamma, grad_beta
