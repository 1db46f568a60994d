"""Triton kernels of the backward of CycleISP's fused dual-attention tail; the forward, the notation and the
shared tile helpers are in :mod:`cycleisp_fast.triton_kernels.dual_attention`.

g = dL/dout: ``_grad_sums_kernel`` (per image, chunk of GRAD_CHUNK pixels and block of ROWS rows i, so that its
two (ROWS x CP) accumulators fit in registers) writes its rows' share of s dL/ds = sum_i g_i (W_a s res)_i and
its chunk's sums (s g) res^T, g res^T and g of those rows; ``_logit_grad_kernel`` (per pixel block) adds the
shares up to dL/dlogit and the SA weight's gradient; ``_channel_attention_grad_kernel`` (per image) turns the
image's g res^T into dL/dc and dL/dW_b and runs the CA MLP's backward -> dL/dm; ``_input_grad_kernel`` (per
pixel block) writes dL/dres. Partials are reduced in a fixed order (deterministic results).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from cycleisp_fast._dtypes import accumulation_dtype
from cycleisp_fast.triton_kernels.dual_attention import (
    BLOCK_P,
    GRAD_BLOCK_P,
    GRAD_CHUNK,
    KC,
    OPTIONS,
    PARTIAL_BLOCK,
    PROJECTION_BLOCK_P,
    PROJECTION_ROWS,
    TAPS,
    _accumulation_weights,
    _channel_mlp,
    _dot,
    _matrix,
    _pixel_block,
    _project_rows,
    _spatial_scale,
    _tap_weights,
    _taps,
    _tile,
    grad_rows,
    padded_channels,
)
from cycleisp_fast.triton_kernels.rounding import divide


@triton.jit
def _grad_sums_kernel(
    grad_ptr,
    res_ptr,
    pool_ptr,
    sa_ptr,
    proj_ptr,
    grad_s_ptr,
    outer_ptr,
    grad_bias_ptr,
    C,
    H,
    W,
    chunks,
    row_blocks,
    CHUNK: tl.constexpr,
    CP: tl.constexpr,
    ROWS: tl.constexpr,
    BLOCK_P: tl.constexpr,
    KC: tl.constexpr,
    TAPS: tl.constexpr,
):
    """Rows i in [ROWS r, ROWS (r + 1)) of one chunk of CHUNK pixels of g = dL/dout (N, C, H*W), program
    (image, chunk, r): writes the rows' share of s dL/ds = sum_i g_i (W_a s res)_i to grad_s_ptr
    (N, row_blocks, H*W), and the rows of the chunk's sums (s g) res^T, g res^T to outer_ptr
    (N * chunks, 2, C, C) and of g to grad_bias_ptr (N * chunks, C)."""
    acc_dtype: tl.constexpr = pool_ptr.dtype.element_ty
    io_dtype: tl.constexpr = res_ptr.dtype.element_ty
    task = tl.program_id(0).to(tl.int64)
    row_block = task % row_blocks
    part = task // row_blocks  # image * chunks + chunk
    image = part // chunks
    begin = (part % chunks) * CHUNK
    plane_size = H * W
    rows = row_block * ROWS + tl.arange(0, ROWS)
    channels = tl.arange(0, CP)
    scaled_outer = tl.zeros([ROWS, CP], dtype=acc_dtype)
    outer = tl.zeros([ROWS, CP], dtype=acc_dtype)
    grad_bias = tl.zeros([ROWS], dtype=acc_dtype)
    for start in range(begin, tl.minimum(begin + CHUNK, plane_size), BLOCK_P):
        pixels = start + tl.arange(0, BLOCK_P)
        mask = pixels < plane_size
        s, _ = _spatial_scale(pool_ptr, sa_ptr, image, pixels, mask, H, W, TAPS)
        offsets, inside = _tile(image, rows, pixels, C, plane_size)
        grad = tl.load(grad_ptr + offsets, mask=inside, other=0).to(acc_dtype)
        projected = _project_rows(res_ptr, proj_ptr, None, image, rows, pixels, s, C, plane_size, False, False, KC)
        tl.store(
            grad_s_ptr + (image * row_blocks + row_block) * plane_size + pixels,
            tl.sum(grad * projected, axis=0),
            mask=mask,
        )
        res_offsets, res_inside = _tile(image, channels, pixels, C, plane_size)
        res_t = tl.trans(tl.load(res_ptr + res_offsets, mask=res_inside, other=0).to(acc_dtype))
        scaled_outer = _dot(grad * s[None, :], res_t, scaled_outer, io_dtype)
        outer = _dot(grad, res_t, outer, io_dtype)
        grad_bias += tl.sum(grad, axis=1)
    inside = (rows[:, None] < C) & (channels[None, :] < C)
    matrix = outer_ptr + part * 2 * C * C + rows[:, None] * C + channels[None, :]
    tl.store(matrix, scaled_outer, mask=inside)
    tl.store(matrix + C * C, outer, mask=inside)
    tl.store(grad_bias_ptr + part * C + rows, grad_bias, mask=rows < C)


@triton.jit
def _logit_grad_kernel(
    grad_s_ptr,
    pool_ptr,
    sa_ptr,
    grad_logit_ptr,
    grad_sa_ptr,
    H,
    W,
    blocks,
    row_blocks,
    BLOCK_P: tl.constexpr,
    TAPS: tl.constexpr,
):
    """One pixel block: dL/dlogit = (s dL/ds) (1 - s) (N, H*W), s dL/ds the sum of the row_blocks shares at
    grad_s_ptr (N, row_blocks, H*W), and the block's share of the SA weight's gradient, sum_p dL/dlogit(p)
    times the pool taps of p, to grad_sa_ptr (N * blocks, 18)."""
    acc_dtype: tl.constexpr = pool_ptr.dtype.element_ty
    plane_size = H * W
    image, pixels, mask = _pixel_block(plane_size, blocks, BLOCK_P)
    s, taps = _spatial_scale(pool_ptr, sa_ptr, image, pixels, mask, H, W, TAPS)
    total = tl.zeros([BLOCK_P], dtype=acc_dtype)
    for row_block in range(row_blocks):
        total += tl.load(grad_s_ptr + (image * row_blocks + row_block) * plane_size + pixels, mask=mask, other=0)
    grad_logit = total * (1 - s)
    tl.store(grad_logit_ptr + image * plane_size + pixels, grad_logit, mask=mask)
    t = tl.arange(0, TAPS)
    # a zero-padded tap adds dL/dlogit * 0 (NaN for a non-finite dL/dlogit, as the reference conv); lanes past the
    # image add nothing
    valid = (t < 18)[:, None] & mask[None, :]
    tl.store(
        grad_sa_ptr + tl.program_id(0).to(tl.int64) * 18 + t,
        tl.sum(tl.where(valid, taps * grad_logit[None, :], 0), axis=1),
        mask=t < 18,
    )


@triton.jit
def _channel_attention_grad_kernel(
    outer_ptr,
    mean_ptr,
    w1_ptr,
    b1_ptr,
    w2_ptr,
    b2_ptr,
    proj_ptr,
    scale_ptr,
    channel_grad_ptr,
    grad_wb_ptr,
    grad_w1_ptr,
    grad_b1_ptr,
    grad_w2_ptr,
    grad_b2_ptr,
    C,
    R,
    plane_size,
    chunks,
    CP: tl.constexpr,
    RP: tl.constexpr,
    ROWS: tl.constexpr,
):
    """One image n: its channel scale c (scale_ptr (N, C), recomputed from the channel means); G = sum over
    its chunks of g res^T (from outer_ptr (N * chunks, 2, C, C)) gives its share of dL/dW_b, G diag(c)
    (grad_wb_ptr (N, C, C)), and dL/dc_j = sum_i W_b[i][j] G[i][j]; the CA MLP's backward then writes its
    shares of the MLP's weight gradients (grad_w1_ptr (N, R, C), grad_b1_ptr (N, R), grad_w2_ptr (N, C, R),
    grad_b2_ptr (N, C)) and channel_grad_ptr (N, C) = dL/dm / (H W)."""
    acc_dtype: tl.constexpr = mean_ptr.dtype.element_ty
    image = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, CP)
    reduced = tl.arange(0, RP)
    mean = tl.load(mean_ptr + image * C + cols, mask=cols < C, other=0)
    hidden, scale = _channel_mlp(mean, w1_ptr, b1_ptr, w2_ptr, b2_ptr, C, R, CP, RP)
    tl.store(scale_ptr + image * C + cols, scale, mask=cols < C)
    grad_scale = tl.zeros([CP], dtype=acc_dtype)
    for first in range(0, C, ROWS):
        rows = first + tl.arange(0, ROWS)
        outer = tl.zeros([ROWS, CP], dtype=acc_dtype)
        for chunk in range(chunks):
            outer += _matrix(outer_ptr + ((image * chunks + chunk) * 2 + 1) * C * C, rows, cols, C, C, C, 1)
        grad_scale += tl.sum(_matrix(proj_ptr + C, rows, cols, C, C, 2 * C, 1) * outer, axis=0)
        tl.store(
            grad_wb_ptr + (image * C + rows[:, None]) * C + cols[None, :],
            outer * scale[None, :],
            mask=(rows[:, None] < C) & (cols[None, :] < C),
        )
    grad_z2 = grad_scale * scale * (1 - scale)
    grad_hidden = tl.sum(_matrix(w2_ptr, cols, reduced, C, R, R, 1) * grad_z2[:, None], axis=0)
    grad_z1 = tl.where(hidden <= 0, 0, grad_hidden)  # as torch: a NaN hidden passes its gradient
    grad_mean = tl.sum(_matrix(w1_ptr, reduced, cols, R, C, C, 1) * grad_z1[:, None], axis=0)
    mlp = (reduced[:, None] < R) & (cols[None, :] < C)  # (RP, CP)
    tl.store(
        grad_w1_ptr + (image * R + reduced[:, None]) * C + cols[None, :], grad_z1[:, None] * mean[None, :], mask=mlp
    )
    tl.store(grad_b1_ptr + image * R + reduced, grad_z1, mask=reduced < R)
    tl.store(
        grad_w2_ptr + (image * C + cols[:, None]) * R + reduced[None, :],
        grad_z2[:, None] * hidden[None, :],
        mask=tl.trans(mlp),
    )
    tl.store(grad_b2_ptr + image * C + cols, grad_z2, mask=cols < C)
    tl.store(
        channel_grad_ptr + image * C + cols, divide(grad_mean, tl.full([CP], plane_size, acc_dtype)), mask=cols < C
    )


@triton.jit
def _input_grad_kernel(
    grad_ptr,
    pool_ptr,
    argmax_ptr,
    grad_logit_ptr,
    scale_ptr,
    channel_grad_ptr,
    sa_ptr,
    proj_ptr,
    grad_res_ptr,
    C,
    H,
    W,
    blocks,
    ROWS: tl.constexpr,
    BLOCK_P: tl.constexpr,
    KC: tl.constexpr,
    TAPS: tl.constexpr,
):
    """One pixel block of dL/dres (N, C, H*W) = W_a^T (s g) + (W_b diag(c))^T g + the pool's and the channel
    means' terms: dL/dmean_c / C, dL/dmax_c at the argmax channel (both the SA conv's transpose of
    dL/dlogit (N, H*W)) and channel_grad (N, C)."""
    acc_dtype: tl.constexpr = pool_ptr.dtype.element_ty
    plane_size = H * W
    image, pixels, mask = _pixel_block(plane_size, blocks, BLOCK_P)
    s, _ = _spatial_scale(pool_ptr, sa_ptr, image, pixels, mask, H, W, TAPS)
    weighted = _tap_weights(sa_ptr, TAPS)[:, None] * _taps(
        grad_logit_ptr + image * plane_size, 0, pixels, mask, H, W, -1, TAPS
    )
    is_max = (tl.arange(0, TAPS) < 9)[:, None]
    grad_max = tl.sum(tl.where(is_max, weighted, 0), axis=0)
    grad_mean = divide(tl.sum(tl.where(is_max, 0, weighted), axis=0), tl.full([BLOCK_P], C, acc_dtype))
    argmax = tl.load(argmax_ptr + image * plane_size + pixels, mask=mask, other=-1)
    for first in range(0, C, ROWS):
        rows = first + tl.arange(0, ROWS)
        grad_res = _project_rows(
            grad_ptr, proj_ptr, scale_ptr + image * C, image, rows, pixels, s, C, plane_size, True, True, KC
        )
        grad_res += grad_mean[None, :] + tl.where(rows[:, None] == argmax[None, :], grad_max[None, :], 0)
        grad_res += tl.load(channel_grad_ptr + image * C + rows, mask=rows < C, other=0)[:, None]
        offsets, inside = _tile(image, rows, pixels, C, plane_size)
        tl.store(grad_res_ptr + offsets, grad_res.to(grad_res_ptr.dtype.element_ty), mask=inside)


def dual_attention_backward(
    grad_out: torch.Tensor,
    res: torch.Tensor,
    pool: torch.Tensor,
    argmax: torch.Tensor,
    channel_mean: torch.Tensor,
    sa_weight: torch.Tensor,
    ca_w1: torch.Tensor,
    ca_b1: torch.Tensor,
    ca_w2: torch.Tensor,
    ca_b2: torch.Tensor,
    proj_w: torch.Tensor,
) -> tuple[torch.Tensor, ...]:
    """dL/dout, res and the forward's pool, argmax, channel_mean -> (grad_res like res, grad_sa_weight,
    grad_ca_w1, grad_ca_b1, grad_ca_w2, grad_ca_b2, grad_proj_w, grad_proj_b), each weight gradient in its
    weight's dtype and shape, grad_proj_b ``(C,)`` of proj_w's dtype."""
    grad_out, res = grad_out.contiguous(), res.contiguous()
    pool, argmax, channel_mean = pool.contiguous(), argmax.contiguous(), channel_mean.contiguous()
    batch, channels, height, width = res.shape
    reduced, plane_size = ca_w1.shape[0], height * width
    acc_dtype = accumulation_dtype(res.dtype)
    weights = (sa_weight, ca_w1, ca_b1, ca_w2, ca_b2, proj_w)
    sa, w1, b1, w2, b2, proj = _accumulation_weights(acc_dtype, *weights)
    grad_res = torch.empty_like(res, memory_format=torch.contiguous_format)
    if res.numel() == 0:
        grads = [torch.zeros_like(w, memory_format=torch.contiguous_format) for w in weights]
        return grad_res.zero_(), *grads, proj_w.new_zeros(channels)
    padded = padded_channels(channels)
    rows = grad_rows(padded)
    row_blocks, chunks = triton.cdiv(channels, rows), triton.cdiv(plane_size, GRAD_CHUNK)
    grad_s = res.new_empty((batch, row_blocks, plane_size), dtype=acc_dtype)  # shares of s dL/ds
    outer = res.new_empty((batch * chunks, 2, channels, channels), dtype=acc_dtype)  # (s g) res^T, g res^T
    bias_partial = res.new_empty((batch * chunks, channels), dtype=acc_dtype)
    _grad_sums_kernel[(batch * chunks * row_blocks,)](
        grad_out,
        res,
        pool,
        sa,
        proj,
        grad_s,
        outer,
        bias_partial,
        channels,
        height,
        width,
        chunks,
        row_blocks,
        CHUNK=GRAD_CHUNK,
        CP=padded,
        ROWS=rows,
        BLOCK_P=GRAD_BLOCK_P,
        KC=KC,
        TAPS=TAPS,
        **OPTIONS,
    )
    blocks = triton.cdiv(plane_size, BLOCK_P)
    grad_logit = res.new_empty((batch, plane_size), dtype=acc_dtype)
    sa_partial = res.new_empty((batch * blocks, 18), dtype=acc_dtype)
    _logit_grad_kernel[(batch * blocks,)](
        grad_s,
        pool,
        sa,
        grad_logit,
        sa_partial,
        height,
        width,
        blocks,
        row_blocks,
        BLOCK_P=BLOCK_P,
        TAPS=TAPS,
        **OPTIONS,
    )
    scale = torch.empty_like(channel_mean)
    channel_grad = torch.empty_like(channel_mean)
    grad_wb = res.new_empty((batch, channels, channels), dtype=acc_dtype)
    mlp_grads = [res.new_empty((batch, *w.shape), dtype=acc_dtype) for w in (w1, b1, w2, b2)]
    _channel_attention_grad_kernel[(batch,)](
        outer,
        channel_mean,
        w1,
        b1,
        w2,
        b2,
        proj,
        scale,
        channel_grad,
        grad_wb,
        *mlp_grads,
        channels,
        reduced,
        plane_size,
        chunks,
        CP=padded,
        RP=triton.next_power_of_2(reduced),
        ROWS=PARTIAL_BLOCK,
        **OPTIONS,
    )
    blocks = triton.cdiv(plane_size, PROJECTION_BLOCK_P)
    _input_grad_kernel[(batch * blocks,)](
        grad_out,
        pool,
        argmax,
        grad_logit,
        scale,
        channel_grad,
        sa,
        proj,
        grad_res,
        channels,
        height,
        width,
        blocks,
        ROWS=min(padded, PROJECTION_ROWS),
        BLOCK_P=PROJECTION_BLOCK_P,
        KC=KC,
        TAPS=TAPS,
        **OPTIONS,
    )
    grad_proj = torch.cat((outer[:, 0].sum(0), grad_wb.sum(0)), dim=1)
    grads = (sa_partial.sum(0), *(g.sum(0) for g in mlp_grads), grad_proj)
    return (
        grad_res,
        *(g.reshape(w.shape).to(w.dtype) for g, w in zip(grads, weights)),
        bias_partial.sum(0).to(proj_w.dtype),
    )
