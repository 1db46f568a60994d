"""Triton kernels of CycleISP's fused dual-attention tail (see csrc/ops/dual_attention_math.h for the math).

``out(p) = W_a (s(p) res(p)) + (W_b diag(c)) res(p) + b + x(p)``, s the spatial scale (the sigmoid of the
3x3 conv of the channel pool [max_c res, mean_c res]), c the channel scale (the CA MLP of the channel
means), W_a / W_b the SA / CA halves of the 1x1 projection. Neither attention branch nor their
concatenation is ever stored: the projection of a (C x BLOCK_P) tile is computed ROWS output channels at a
time, each as ``tl.dot`` products over KC input channels at a time (:func:`_project_rows`); channel counts
are padded with masks (zero padding), so any C >= 1 works.

- forward: ``_channel_pool_kernel`` (per pixel block) writes the pool and the first argmax of the channel
  max, and per-block channel sums; ``_channel_attention_kernel`` (per image) adds those up to the channel
  means and runs the CA MLP -> c; ``_projection_kernel`` (per pixel block) recomputes s from the pool and
  writes out.
- backward: :mod:`cycleisp_fast.triton_kernels.dual_attention_backward`.

Partials are reduced in a fixed order (in the kernels, or by ``torch.sum`` in the launchers), so results are
deterministic. Arithmetic is in the accumulation dtype (float32; float64 for float64 features). The dots of
float32 / float64 features are exact-product (IEEE) ones; those of float16 / bfloat16 features are TF32 dots
of float32 operands (the features are exact in TF32, the weights and the s-scaled operands round to its
10-bit mantissa; the interpreter has no bfloat16 dot). The dots contract KC = 8 at a time and every kernel
runs with OPTIONS (8 warps, one stage, at most 128 registers): ptxas keeps the whole contraction of a float32
FMA dot's operands in registers, so wider dots, or operands prefetched for later loop steps, spill, and
without a cap it may pick fewer registers and spill. Offsets are int64.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from cycleisp_fast._dtypes import accumulation_dtype
from cycleisp_fast.triton_kernels.rounding import divide

TAPS = 32  # the SA conv's 18 taps (sa_weight flattened [k][dy][dx]), padded to a power of two
BLOCK_P = 128  # pixels per program of the per-pixel kernels (pool, dL/dlogit)
POOL_BLOCK_C = 16  # channels the pool kernel reduces per loop step
PARTIAL_BLOCK = 16  # partial rows a per-image kernel adds per loop step
KC = 16  # input channels per tl.dot: the contraction width (Triton before 3.8 needs K >= 16)
PROJECTION_ROWS = 32  # output channels per step of the projection kernels (at most; fewer for C < 32)
PROJECTION_BLOCK_P = 64  # pixels per program of the projection kernels
GRAD_BLOCK_P = 16  # pixels per loop step of the sums kernel: the contraction of its (s g) res^T, g res^T
GRAD_CHUNK = 2048  # pixels per program of the sums kernel
OUTER_ELEMENTS = 2048  # the sums kernel's two (ROWS x CP) accumulators hold at most this many elements each
OPTIONS = dict(num_warps=8, num_stages=1, maxnreg=128)  # launch options of every kernel


def padded_channels(channels: int) -> int:
    """CP: C padded to a power of two, at least 16 (so small C still gives tl.dot tiles of 16 rows)."""
    return max(16, triton.next_power_of_2(channels))


def grad_rows(padded: int) -> int:
    """Rows i per program of the sums kernel: ROWS x CP <= OUTER_ELEMENTS, ROWS a power of two in [8, CP]."""
    return max(8, min(padded, OUTER_ELEMENTS // padded))


@triton.jit
def _sigmoid(z):
    """1 / (1 + exp(-z)), the division rounded to nearest."""
    return divide(tl.full(z.shape, 1.0, z.dtype), 1.0 + tl.exp(-z))


@triton.jit
def _pixel_block(plane_size, blocks, BLOCK_P: tl.constexpr):
    """The (image, pixel block) of this program: the int64 image, the block's pixel indices and their mask."""
    task = tl.program_id(0).to(tl.int64)
    pixels = (task % blocks) * BLOCK_P + tl.arange(0, BLOCK_P)
    return task // blocks, pixels, pixels < plane_size


@triton.jit
def _tile(image, channels, pixels, C, plane_size):
    """int64 offsets and mask of the (channels x pixels) tile of one image of an (N, C, H*W) tensor."""
    offsets = (image * C + channels[:, None]) * plane_size + pixels[None, :]
    return offsets, (channels[:, None] < C) & (pixels[None, :] < plane_size)


@triton.jit
def _tap_weights(sa_ptr, TAPS: tl.constexpr):
    """The SA conv's weights (TAPS,), tap t = 9 k + 3 dy + dx, zero for t >= 18."""
    taps = tl.arange(0, TAPS)
    return tl.load(sa_ptr + taps, mask=taps < 18, other=0)


@triton.jit
def _tap_sites(pixels, mask, H, W, SIGN: tl.constexpr, TAPS: tl.constexpr):
    """(TAPS, BLOCK_P) offsets within a plane pair and whether each lies inside the image: tap t = 9 k + 3 dy + dx
    of a pixel (h, w) is plane k at (h + SIGN (dy - 1), w + SIGN (dx - 1)); outside for masked pixels and t >= 18.
    SIGN 1 gives the conv's inputs, -1 its transpose's."""
    t = tl.arange(0, TAPS)[:, None]
    y = (pixels // W)[None, :] + SIGN * ((t % 9) // 3 - 1)
    x = (pixels % W)[None, :] + SIGN * (t % 3 - 1)
    inside = (t < 18) & mask[None, :] & (y >= 0) & (y < H) & (x >= 0) & (x < W)
    return t // 9, y * W + x, inside


@triton.jit
def _taps(plane_ptr, plane_stride, pixels, mask, H, W, SIGN: tl.constexpr, TAPS: tl.constexpr):
    """(TAPS, BLOCK_P) tile of the 3x3 neighbourhoods of the pixels (see :func:`_tap_sites`; plane k at plane_ptr +
    k plane_stride): 0 outside the image (zero padding), for masked pixels and for t >= 18."""
    plane, offset, inside = _tap_sites(pixels, mask, H, W, SIGN, TAPS)
    return tl.load(plane_ptr + plane * plane_stride + offset, mask=inside, other=0)


@triton.jit
def _spatial_scale(pool_ptr, sa_ptr, image, pixels, mask, H, W, TAPS: tl.constexpr):
    """S (BLOCK_P,) of the pixels of one image, and the pool taps (TAPS, BLOCK_P) its logit sums."""
    plane_size = H * W
    taps = _taps(pool_ptr + image * 2 * plane_size, plane_size, pixels, mask, H, W, 1, TAPS)
    return _sigmoid(tl.sum(_tap_weights(sa_ptr, TAPS)[:, None] * taps, axis=0)), taps


@triton.jit
def _matrix(ptr, rows, cols, n_rows, n_cols, row_stride, col_stride):
    """The (rows x cols) tile of an (n_rows, n_cols) matrix at ptr with the given strides, zero outside it."""
    inside = (rows[:, None] < n_rows) & (cols[None, :] < n_cols)
    return tl.load(ptr + rows[:, None] * row_stride + cols[None, :] * col_stride, mask=inside, other=0)


@triton.jit
def _dot(a, b, acc, io_dtype: tl.constexpr):
    """Acc + a @ b in acc's dtype: float32 / float64 operands multiply exactly (IEEE); with 16-bit features
    a TF32 dot of float32 operands."""
    if io_dtype.primitive_bitwidth == 16:
        acc = tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="tf32")
    elif io_dtype == tl.float64:
        acc = tl.dot(a, b, acc, input_precision="ieee", out_dtype=tl.float64)  # Triton < 3.8 needs out_dtype
    else:
        acc = tl.dot(a, b, acc, input_precision="ieee")
    return acc


@triton.jit
def _project_rows(
    src_ptr,
    proj_ptr,
    scale_ptr,
    image,
    rows,
    pixels,
    s,
    C,
    plane_size,
    TRANSPOSED: tl.constexpr,
    CA: tl.constexpr,
    KC: tl.constexpr,
):
    """Rows ``rows`` (ROWS,) of W_a (s X) + W_b diag(c) X, or with TRANSPOSED of W_a^T (s X) + diag(c) W_b^T X,
    a (ROWS, BLOCK_P) tile in the dtype of s: X the (C, BLOCK_P) tile of image at pixels of src (N, C, H*W),
    W_a / W_b the halves of proj (C, 2C), c at scale_ptr (C,) (the W_b term only with CA)."""
    acc_dtype: tl.constexpr = s.dtype
    io_dtype: tl.constexpr = src_ptr.dtype.element_ty
    acc = tl.zeros([rows.shape[0], s.shape[0]], dtype=acc_dtype)
    if TRANSPOSED:
        row_stride, col_stride = 1, 2 * C
    else:
        row_stride, col_stride = 2 * C, 1
    for first in range(0, C, KC):
        k = first + tl.arange(0, KC)
        offsets, inside = _tile(image, k, pixels, C, plane_size)
        src = tl.load(src_ptr + offsets, mask=inside, other=0).to(acc_dtype)
        w_a = _matrix(proj_ptr, rows, k, C, C, row_stride, col_stride)
        acc = _dot(w_a, src * s[None, :], acc, io_dtype)
        if CA:
            w_b = _matrix(proj_ptr + C, rows, k, C, C, row_stride, col_stride)
            if TRANSPOSED:
                w_b *= tl.load(scale_ptr + rows, mask=rows < C, other=0)[:, None]
            else:
                w_b *= tl.load(scale_ptr + k, mask=k < C, other=0)[None, :]
            acc = _dot(w_b, src, acc, io_dtype)
    return acc


@triton.jit
def _channel_mlp(mean, w1_ptr, b1_ptr, w2_ptr, b2_ptr, C, R, CP: tl.constexpr, RP: tl.constexpr):
    """The CA MLP of one image's channel means (CP,): hidden = relu(w1 mean + b1) (RP,) and
    scale = sigmoid(w2 hidden + b2) (CP,), w1 (R, C) and w2 (C, R) row-major."""
    j = tl.arange(0, CP)
    r = tl.arange(0, RP)
    z = tl.sum(_matrix(w1_ptr, r, j, R, C, C, 1) * mean[None, :], axis=1) + tl.load(b1_ptr + r, mask=r < R, other=0)
    # relu that keeps NaN, as torch.relu; the padding lanes r >= R (0 * an infinite mean = NaN) and j >= C are
    # zeroed so that they carry nothing non-finite into the real lanes
    hidden = tl.where((z < 0) | (r >= R), 0, z)
    z = tl.sum(_matrix(w2_ptr, j, r, C, R, R, 1) * hidden[None, :], axis=1) + tl.load(b2_ptr + j, mask=j < C, other=0)
    return hidden, tl.where(j < C, _sigmoid(z), 0)


@triton.jit
def _channel_pool_kernel(
    res_ptr, pool_ptr, argmax_ptr, partial_ptr, C, plane_size, blocks, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr
):
    """One pixel block of res (N, C, H*W): pool (N, 2, H*W) = (channel max, channel mean), argmax (N, H*W)
    the first channel holding the max, and the block's channel sums to partial_ptr (N * blocks, C)."""
    acc_dtype: tl.constexpr = pool_ptr.dtype.element_ty
    image, pixels, mask = _pixel_block(plane_size, blocks, BLOCK_P)
    best = tl.full([BLOCK_P], float("-inf"), acc_dtype)
    best_channel = tl.zeros([BLOCK_P], dtype=tl.int32)
    total = tl.zeros([BLOCK_P], dtype=acc_dtype)
    partial = partial_ptr + tl.program_id(0).to(tl.int64) * C
    for start in range(0, C, BLOCK_C):
        channels = start + tl.arange(0, BLOCK_C)
        offsets, inside = _tile(image, channels, pixels, C, plane_size)
        values = tl.load(res_ptr + offsets, mask=inside, other=float("-inf")).to(acc_dtype)
        is_nan = values != values  # torch.max propagates NaN, and its argmax is the first NaN channel
        first_nan = tl.min(tl.where(is_nan, channels[:, None], C), axis=0)
        block_max = tl.max(tl.where(is_nan, float("-inf"), values), axis=0)
        block_channel = tl.min(tl.where(values == block_max[None, :], channels[:, None], C), axis=0)
        block_channel = tl.where(first_nan < C, first_nan, block_channel)
        block_max = tl.where(first_nan < C, float("nan"), block_max)
        greater = (block_max > best) | ((first_nan < C) & (best == best))  # strict: an earlier block keeps a tie
        best_channel = tl.where(greater, block_channel, best_channel).to(tl.int32)
        best = tl.where(greater, block_max, best)
        values = tl.where(inside, values, 0)
        total += tl.sum(values, axis=0)
        tl.store(partial + channels, tl.sum(values, axis=1), mask=channels < C)
    pool = pool_ptr + image * 2 * plane_size + pixels
    tl.store(pool, best, mask=mask)
    tl.store(pool + plane_size, divide(total, tl.full([BLOCK_P], C, acc_dtype)), mask=mask)
    tl.store(argmax_ptr + image * plane_size + pixels, best_channel, mask=mask)


@triton.jit
def _channel_attention_kernel(
    partial_ptr,
    w1_ptr,
    b1_ptr,
    w2_ptr,
    b2_ptr,
    mean_ptr,
    scale_ptr,
    C,
    R,
    plane_size,
    blocks,
    CP: tl.constexpr,
    RP: tl.constexpr,
    PARTIAL_BLOCK: tl.constexpr,
):
    """One image: its channel means (mean_ptr (N, C)) from the pool kernel's blocks x C channel sums, and
    its channel scale c (scale_ptr (N, C)) by the CA MLP."""
    acc_dtype: tl.constexpr = mean_ptr.dtype.element_ty
    image = tl.program_id(0).to(tl.int64)
    channels = tl.arange(0, CP)
    total = tl.zeros([PARTIAL_BLOCK, CP], dtype=acc_dtype)
    for start in range(0, blocks, PARTIAL_BLOCK):
        rows = start + tl.arange(0, PARTIAL_BLOCK)
        inside = (rows[:, None] < blocks) & (channels[None, :] < C)
        total += tl.load(partial_ptr + (image * blocks + rows[:, None]) * C + channels[None, :], mask=inside, other=0)
    mean = divide(tl.sum(total, axis=0), tl.full([CP], plane_size, acc_dtype))
    _, scale = _channel_mlp(mean, w1_ptr, b1_ptr, w2_ptr, b2_ptr, C, R, CP, RP)
    tl.store(mean_ptr + image * C + channels, mean, mask=channels < C)
    tl.store(scale_ptr + image * C + channels, scale, mask=channels < C)


@triton.jit
def _projection_kernel(
    res_ptr,
    x_ptr,
    pool_ptr,
    scale_ptr,
    sa_ptr,
    proj_ptr,
    bias_ptr,
    out_ptr,
    C,
    H,
    W,
    blocks,
    ROWS: tl.constexpr,
    BLOCK_P: tl.constexpr,
    KC: tl.constexpr,
    TAPS: tl.constexpr,
):
    """One pixel block of out (N, C, H*W) = W_a (s res) + (W_b diag(c)) res + b + x, s recomputed from the
    pool, c at scale_ptr (N, C)."""
    acc_dtype: tl.constexpr = pool_ptr.dtype.element_ty
    image, pixels, mask = _pixel_block(H * W, blocks, BLOCK_P)
    s, _ = _spatial_scale(pool_ptr, sa_ptr, image, pixels, mask, H, W, TAPS)
    for first in range(0, C, ROWS):
        rows = first + tl.arange(0, ROWS)
        out = _project_rows(res_ptr, proj_ptr, scale_ptr + image * C, image, rows, pixels, s, C, H * W, False, True, KC)
        offsets, inside = _tile(image, rows, pixels, C, H * W)
        out += tl.load(bias_ptr + rows, mask=rows < C, other=0)[:, None]
        out += tl.load(x_ptr + offsets, mask=inside, other=0).to(acc_dtype)
        tl.store(out_ptr + offsets, out.to(out_ptr.dtype.element_ty), mask=inside)


def _accumulation_weights(dtype: torch.dtype, *weights: torch.Tensor) -> list[torch.Tensor]:
    """The weights as contiguous tensors of dtype."""
    return [w.to(dtype).contiguous() for w in weights]


def dual_attention_forward(
    res: torch.Tensor,
    x: torch.Tensor,
    sa_weight: torch.Tensor,
    ca_w1: torch.Tensor,
    ca_b1: torch.Tensor,
    ca_w2: torch.Tensor,
    ca_b2: torch.Tensor,
    proj_w: torch.Tensor,
    proj_b: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(N, C, H, W)`` res and x of one floating dtype and the official weights (any floating dtype) ->
    (out ``(N, C, H, W)`` like res, pool ``(N, 2, H, W)``, argmax ``(N, H, W)`` int32, channel_mean ``(N, C)``),
    pool and channel_mean in float32 (float64 for float64 res)."""
    res, x = res.contiguous(), x.contiguous()
    batch, channels, height, width = res.shape
    reduced, plane_size = ca_w1.shape[0], height * width
    acc_dtype = accumulation_dtype(res.dtype)
    sa, w1, b1, w2, b2, proj, bias = _accumulation_weights(
        acc_dtype, sa_weight, ca_w1, ca_b1, ca_w2, ca_b2, proj_w, proj_b
    )
    out = torch.empty_like(res, memory_format=torch.contiguous_format)
    pool = res.new_empty((batch, 2, height, width), dtype=acc_dtype)
    argmax = res.new_empty((batch, height, width), dtype=torch.int32)
    channel_mean = res.new_empty((batch, channels), dtype=acc_dtype)
    if res.numel() == 0:
        return out, pool, argmax, channel_mean
    blocks = triton.cdiv(plane_size, BLOCK_P)
    partial = res.new_empty((batch * blocks, channels), dtype=acc_dtype)  # per-block channel sums
    _channel_pool_kernel[(batch * blocks,)](
        res, pool, argmax, partial, channels, plane_size, blocks, BLOCK_C=POOL_BLOCK_C, BLOCK_P=BLOCK_P, **OPTIONS
    )
    scale = torch.empty_like(channel_mean)
    padded = padded_channels(channels)
    _channel_attention_kernel[(batch,)](
        partial,
        w1,
        b1,
        w2,
        b2,
        channel_mean,
        scale,
        channels,
        reduced,
        plane_size,
        blocks,
        CP=padded,
        RP=triton.next_power_of_2(reduced),
        PARTIAL_BLOCK=PARTIAL_BLOCK,
        **OPTIONS,
    )
    blocks = triton.cdiv(plane_size, PROJECTION_BLOCK_P)
    _projection_kernel[(batch * blocks,)](
        res,
        x,
        pool,
        scale,
        sa,
        proj,
        bias,
        out,
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
    return out, pool, argmax, channel_mean
