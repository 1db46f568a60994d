"""Triton kernels of adaptive instance normalization (see csrc/ops/ain_math.h for the math).

``out = act((x - mean) * rstd * (1 + gamma) + beta)``, mean and the biased var per (n, c) plane over H x W,
``rstd = 1 / sqrt(var + eps)``, act a LeakyReLU or the identity. Like the C++ kernels, every plane is cut
into chunks of at most CHUNK elements and each direction runs two kernels of one program per (plane, chunk):

- forward: ``_ain_stats_kernel`` reduces its chunk to (count, mean, M2) by a corrected two-pass sweep;
  ``_ain_modulate_kernel`` merges its plane's partials (Chan et al.) and writes its chunk of ``out``.
- backward (triton_kernels/ain_backward.py): ``_ain_grad_sums_kernel`` writes its chunk of grad_gamma and
  grad_beta and the partial sums of grad_xhat and grad_xhat * xhat; ``_ain_input_grad_kernel`` adds its
  plane's partials and writes grad_x.

Statistics and arithmetic are in the dtype of the mean/rstd tensors (float32, float64 for float64 input);
loads and stores in the tensors' dtypes. Offsets are int64. eps and the LeakyReLU slope are float64 kernel
arguments (annotated, so a compiled kernel gets them unrounded; the interpreter passes the Python float),
rounded once to the statistics dtype with ``tl.full``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from cycleisp_fast._dtypes import accumulation_dtype
from cycleisp_fast.triton_kernels.rounding import divide

CHUNK = 16384  # elements of a plane per program; mirrors kChunk in csrc/ops/ain_math.h
BLOCK = 1024  # elements a program handles per loop step
PARTIAL_BLOCK = 64  # partials a program merges per loop step


def chunks_per_plane(plane_size: int) -> int:
    """Chunks of at most CHUNK elements that cover a plane (one for an empty plane)."""
    return max(1, triton.cdiv(plane_size, CHUNK))


@triton.jit
def _inverse_std(m2, count, eps):
    """1 / sqrt(m2 / count + eps), with variance 0 for an empty plane (count 0)."""
    variance = divide(m2, tl.maximum(count, 1.0))
    if variance.dtype == tl.float64:
        root = tl.sqrt(variance + eps)
    else:
        root = tl.sqrt_rn(variance + eps)
    return divide(tl.full([], 1.0, variance.dtype), root)


@triton.jit
def _chunk(plane_size, chunks, CHUNK: tl.constexpr):
    """The (plane, chunk) of this program: its plane, its chunk index, the int64 offset of the chunk's first
    element, and the chunk's element count."""
    task = tl.program_id(0).to(tl.int64)
    plane = task // chunks
    chunk = task % chunks
    begin = chunk * CHUNK
    return plane, chunk, plane * plane_size + begin, tl.minimum(plane_size - begin, CHUNK)


@triton.jit
def _leaky(value, z, slope, LEAKY: tl.constexpr):
    """Value where z > 0 (or without activation), else value * slope: with value = z the LeakyReLU of z, with
    value = d loss / d out its backward."""
    if LEAKY:
        value = tl.where(z > 0, value, value * slope)
    return value


@triton.jit
def _ain_stats_kernel(x_ptr, partial_ptr, plane_size, chunks, CHUNK: tl.constexpr, BLOCK: tl.constexpr):
    """Reduces one chunk of x ``(N*C, H*W)`` to partial_ptr ``(N*C*chunks, 3)``: (count, mean, M2).

    Two passes over the chunk: the first takes a shift (the rough mean), the second sums the deviations d
    from it; then mean = shift + sum(d) / count and M2 = sum(d^2) - sum(d)^2 / count (corrected two-pass),
    stable when |mean| >> std.
    """
    acc_dtype: tl.constexpr = partial_ptr.dtype.element_ty
    _, _, base, count = _chunk(plane_size, chunks, CHUNK)
    total = tl.zeros([BLOCK], dtype=acc_dtype)
    for start in range(0, count, BLOCK):
        index = start + tl.arange(0, BLOCK)
        total += tl.load(x_ptr + base + index, mask=index < count, other=0).to(acc_dtype)
    size = tl.maximum(count, 1).to(acc_dtype)
    shift = divide(tl.sum(total, axis=0), size)
    deviation = tl.zeros([BLOCK], dtype=acc_dtype)
    square = tl.zeros([BLOCK], dtype=acc_dtype)
    for start in range(0, count, BLOCK):
        index = start + tl.arange(0, BLOCK)
        mask = index < count
        d = tl.where(mask, tl.load(x_ptr + base + index, mask=mask, other=0).to(acc_dtype) - shift, 0)
        deviation += d
        square += d * d
    sum_d = tl.sum(deviation, axis=0)
    out = partial_ptr + tl.program_id(0).to(tl.int64) * 3
    tl.store(out, count.to(acc_dtype))
    tl.store(out + 1, shift + divide(sum_d, size))
    tl.store(
        out + 2, tl.maximum(tl.sum(square, axis=0) - divide(sum_d * sum_d, size), 0, propagate_nan=tl.PropagateNan.ALL)
    )  # a NaN variance stays NaN


@triton.jit
def _plane_moments(partial_ptr, plane, chunks, PARTIAL_BLOCK: tl.constexpr):
    """(count, mean, M2) of a plane from its ``chunks`` partials (count, mean, M2) at partial_ptr.

    Chan et al.: count = sum n_i, mean = sum n_i mean_i / count, M2 = sum M2_i + sum n_i (mean_i - mean)^2;
    the mean is summed as deviations from the first chunk's mean, so it keeps its digits when |mean| >> std.
    """
    acc_dtype: tl.constexpr = partial_ptr.dtype.element_ty
    first = partial_ptr + plane * chunks * 3
    shift = tl.load(first + 1)
    count = tl.zeros([PARTIAL_BLOCK], dtype=acc_dtype)
    weighted = tl.zeros([PARTIAL_BLOCK], dtype=acc_dtype)
    for start in range(0, chunks, PARTIAL_BLOCK):
        index = start + tl.arange(0, PARTIAL_BLOCK)
        mask = index < chunks
        n_i = tl.load(first + index * 3, mask=mask, other=0)
        count += n_i
        weighted += n_i * (tl.load(first + index * 3 + 1, mask=mask, other=0) - shift)
    total = tl.sum(count, axis=0)
    mean = shift + divide(tl.sum(weighted, axis=0), tl.maximum(total, 1.0))
    m2 = tl.zeros([PARTIAL_BLOCK], dtype=acc_dtype)
    for start in range(0, chunks, PARTIAL_BLOCK):
        index = start + tl.arange(0, PARTIAL_BLOCK)
        mask = index < chunks
        n_i = tl.load(first + index * 3, mask=mask, other=0)
        delta = tl.load(first + index * 3 + 1, mask=mask, other=0) - mean
        m2 += tl.load(first + index * 3 + 2, mask=mask, other=0) + n_i * delta * delta
    return total, mean, tl.sum(m2, axis=0)


@triton.jit
def _ain_modulate_kernel(
    x_ptr,
    gamma_ptr,
    beta_ptr,
    out_ptr,
    partial_ptr,
    mean_ptr,
    rstd_ptr,
    plane_size,
    chunks,
    eps: tl.float64,
    slope: tl.float64,
    LEAKY: tl.constexpr,
    CHUNK: tl.constexpr,
    BLOCK: tl.constexpr,
    PARTIAL_BLOCK: tl.constexpr,
):
    """Writes one chunk of out ``(N*C, H*W)``; the plane's chunk 0 also writes mean and rstd ``(N*C,)``."""
    acc_dtype: tl.constexpr = mean_ptr.dtype.element_ty
    plane, chunk, base, count = _chunk(plane_size, chunks, CHUNK)
    total, mean, m2 = _plane_moments(partial_ptr, plane, chunks, PARTIAL_BLOCK)
    rstd = _inverse_std(m2, total, tl.full([], eps, acc_dtype))
    if chunk == 0:
        tl.store(mean_ptr + plane, mean)
        tl.store(rstd_ptr + plane, rstd)
    slope = tl.full([], slope, acc_dtype)
    for start in range(0, count, BLOCK):
        index = start + tl.arange(0, BLOCK)
        mask = index < count
        offsets = base + index
        x = tl.load(x_ptr + offsets, mask=mask).to(acc_dtype)
        gamma = tl.load(gamma_ptr + offsets, mask=mask).to(acc_dtype)
        beta = tl.load(beta_ptr + offsets, mask=mask).to(acc_dtype)
        z = (x - mean) * rstd * (1 + gamma) + beta
        tl.store(out_ptr + offsets, _leaky(z, z, slope, LEAKY).to(out_ptr.dtype.element_ty), mask=mask)


def _slope(negative_slope: float | None) -> float:
    """The slope argument of the kernels (unused without activation)."""
    return 0.0 if negative_slope is None else float(negative_slope)


def ain_forward(
    x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float, negative_slope: float | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Contiguous ``(N, C, H, W)`` x, gamma, beta of one floating dtype -> (out ``(N, C, H, W)`` like x,
    mean ``(N, C)``, rstd ``(N, C)``), the statistics in float32 (float64 for float64 input).

    An empty plane (H * W = 0) gives mean 0 and rstd 1 / sqrt(eps).
    """
    planes, plane_size = x.shape[0] * x.shape[1], x.shape[2] * x.shape[3]
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    acc_dtype = accumulation_dtype(x.dtype)
    mean = torch.empty(x.shape[:2], dtype=acc_dtype, device=x.device)
    rstd = torch.empty_like(mean)
    if planes == 0:
        return out, mean, rstd
    chunks = chunks_per_plane(plane_size)
    partial = torch.empty((planes * chunks, 3), dtype=acc_dtype, device=x.device)  # (count, mean, M2)
    grid = (planes * chunks,)
    _ain_stats_kernel[grid](x, partial, plane_size, chunks, CHUNK=CHUNK, BLOCK=BLOCK)
    _ain_modulate_kernel[grid](
        x,
        gamma,
        beta,
        out,
        partial,
        mean,
        rstd,
        plane_size,
        chunks,
        float(eps),
        _slope(negative_slope),
        LEAKY=negative_slope is not None,
        CHUNK=CHUNK,
        BLOCK=BLOCK,
        PARTIAL_BLOCK=PARTIAL_BLOCK,
    )
    return out, mean, rstd
