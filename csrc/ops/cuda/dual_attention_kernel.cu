// CUDA kernels of cycleisp_fast::dual_attention_forward / dual_attention_backward, over the same math
// (dual_attention_math.h: sigmoid, the SA conv and its transpose, the CA MLP and its backward) that the CPU
// kernel runs. Neither attention branch nor their concatenation is ever stored: the 1x1 projection of a
// tile is out = s (W_a res) + (W_b diag(c)) res, two products accumulated side by side in registers.
//
//   forward   channel_pool_kernel          block per (image, 1024 pixels): channel max, first argmax, mean
//                                          -> pool, argmax; the block's sum of every channel -> tile_sums
//             sum_rows_kernel              channel_mean = (sum of the image's tile sums) / (H W)
//             channel_attention_kernel     thread per image: the CA MLP -> hidden (N, R), c (N, C)
//             projection_forward_kernel    block per (image, 128 pixels, 32 output channels):
//                                          out = s W_a res + (W_b diag(c)) res + b + x
//   backward  channel_attention_kernel     hidden and c again, from channel_mean
//             logit_grad_kernel            block per (image, 128 pixels), over every 32-row tile of W_a res:
//                                          s (recomputed from the pool) and dL/dlogit = (g . W_a res) s (1 - s)
//                                          -> two (N, H W) scratch planes; the block's partial sums of the SA
//                                          weight's 18 gradients
//             weight_grad_partials_kernel  block per (image, pixel split, 32 x 32 tile of (i, j)), 64 threads:
//                                          the split's sum (s g_i) res_j, sum g_i res_j and sum g_i
//             projection_grads_kernel      per (i, j), the splits summed: dL/dW_a, G_n = sum_p g res^T of each
//                                          image and dL/dW_b = sum_n G_n diag(c_n)
//             channel_attention_grad_kernel  block per image: dL/dc_j = sum_i W_b[i][j] G_n[i][j], then the
//                                          CA MLP's backward (one thread) into the image's row of partials,
//                                          and dL/dm / (H W)
//             sum_rows_kernel              dL/db, the CA MLP's and the SA weight's gradients: partials summed
//             input_grad_kernel            block per (image, 128 pixels, 32 channels): dL/dres = s W_a^T g
//                                          + diag(c) W_b^T g + the pool's and the channel mean's terms
//
// `project` is the shared-memory tiled product of the three projection kernels: 256 threads own a (32
// channels x 128 pixels) output tile, 4 x 4 per thread (rows by warp, 4 adjacent pixels by lane), and the
// input channels come in chunks of 16, the chunk of res (or g) and of both weights staged in shared memory,
// in the accumulation type. Every reduction is deterministic: warp shuffles and per-block partials summed in
// a fixed order by a later kernel, never atomics. Half and bfloat16 are read and written as such and
// computed in float32. The features are taken in NCHW only (prepare_forward / prepare_backward are asked for
// no channels_last), as cycleisp_fast/ops/dual_attention.py's fake implementations expect of CUDA.

#include <algorithm>
#include <limits>
#include <tuple>

#include "../dual_attention.h"
#include "launch.cuh"

namespace cycleisp_fast {
namespace dual_attention {
namespace {

constexpr int kWarp = 32;
constexpr int kThreads = 256;  // pool, projection, logit-grad and channel-attention-grad blocks
constexpr int kWarps = kThreads / kWarp;

// The projection tile.
constexpr int kRowsPerThread = 4;
constexpr int kPixelsPerThread = 4;
constexpr int kTileRows = kWarps * kRowsPerThread;     // 32 output channels
constexpr int kTilePixels = kWarp * kPixelsPerThread;  // 128 pixels
constexpr int kChunk = 16;                             // input channels staged at a time
constexpr int kTileWarps = kTilePixels / kWarp;        // warps of the threads that own one pixel each
static_assert(kChunk * kTileRows % kThreads == 0 && kThreads % kTilePixels == 0 &&
                  kChunk % (kThreads / kTilePixels) == 0,
              "staging");

// The channel pool.
constexpr int kPoolPixelsPerThread = 4;
constexpr int kPoolTile = kThreads * kPoolPixelsPerThread;  // 1024 pixels

// The weight-gradient partials: 8 x 8 threads own a 32 x 32 tile of (i, j), 4 x 4 each (strided by 8).
constexpr int kGradSide = 8;
constexpr int kGradThreads = kGradSide * kGradSide;
constexpr int kGradPerThread = 4;
constexpr int kGradTile = kGradSide * kGradPerThread;  // 32
constexpr int kGradChunk = 32;                         // pixels staged at a time
constexpr int64_t kMinSplitPixels = 1024;              // pixels per split at least, beside the partials' size
constexpr int64_t kGradBlocksPerSm = 32;
static_assert(kGradThreads % kGradChunk == 0 && kGradTile % (kGradThreads / kGradChunk) == 0, "staging");

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

unsigned int grid_size(int64_t blocks) {
  CF_CHECK(blocks <= std::numeric_limits<int>::max(), "dual_attention (CUDA): the input is too large (",
              blocks, " thread blocks)");
  return static_cast<unsigned int>(blocks);
}

template <typename acc_t>
__device__ __forceinline__ acc_t warp_sum(acc_t value) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

// out[t] = s(pixel0 + t) for the kTilePixels pixels of a tile (0 past the plane), from one image's pool.
template <typename acc_t>
__device__ void stage_spatial_scale(const acc_t* __restrict__ pool, const acc_t* __restrict__ sa, int64_t height,
                                    int64_t width, int64_t pixel0, acc_t* __restrict__ out) {
  const int64_t p = pixel0 + threadIdx.x;
  if (threadIdx.x < kTilePixels) {
    out[threadIdx.x] =
        p < height * width ? sigmoid(spatial_logit(pool, sa, height, width, p / width, p % width)) : acc_t(0);
  }
}

// ---------------------------------------------------------------------------------------------------------
// The projection tile.

template <typename acc_t>
struct ProjectionStage {
  alignas(16) acc_t spatial[kChunk][kTileRows];   // W_a chunk as [input k][output m] (transposed for W_a^T)
  alignas(16) acc_t channel[kChunk][kTileRows];   // (W_b diag(c)) chunk, likewise
  alignas(16) acc_t values[kChunk][kTilePixels];  // res (or g) chunk as [input k][pixel]
};

template <typename acc_t>
struct Fragment {
  acc_t spatial[kRowsPerThread][kPixelsPerThread];  // (W_a v) of the thread's rows and pixels
  acc_t channel[kRowsPerThread][kPixelsPerThread];  // (W_b diag(c) v), likewise
};

struct TileTask {
  int64_t image, row0, pixel0;
};

// Block blockIdx.x of (images x pixel_tiles x row_tiles), row tiles fastest (they share their input tile).
__device__ TileTask tile_task(int64_t row_tiles, int64_t pixel_tiles) {
  const int64_t task = blockIdx.x;
  return {task / (row_tiles * pixel_tiles), task % row_tiles * kTileRows,
          task / row_tiles % pixel_tiles * kTilePixels};
}

// The thread's fragment of the (kTileRows x kTilePixels) tile at (row0, pixel0) of
//   kTransposed false:  W_a v (and W_b diag(c) v),        rows = output channels i, inputs j
//   kTransposed true:   W_a^T v (and diag(c) W_b^T v),    rows = inputs j, summed over output channels i
// for v (C, H W) one image of res or g, proj (C, 2C) = [W_a | W_b], scale = the image's c (kChannel only).
// Rows past C and pixels past the plane come out as 0.
template <bool kTransposed, bool kChannel, typename scalar_t, typename acc_t>
__device__ void project(const scalar_t* __restrict__ v, const acc_t* __restrict__ proj, const acc_t* __restrict__ scale,
                        int64_t channels, int64_t plane, int64_t row0, int64_t pixel0, ProjectionStage<acc_t>& stage,
                        Fragment<acc_t>& f) {
  const int tid = threadIdx.x, warp = tid / kWarp, lane = tid % kWarp;
#pragma unroll
  for (int a = 0; a < kRowsPerThread; ++a) {
#pragma unroll
    for (int q = 0; q < kPixelsPerThread; ++q) {
      f.spatial[a][q] = acc_t(0);
      f.channel[a][q] = acc_t(0);
    }
  }
  for (int64_t k0 = 0; k0 < channels; k0 += kChunk) {
#pragma unroll
    for (int r = 0; r < kChunk * kTileRows / kThreads; ++r) {
      const int e = tid + r * kThreads, k = e / kTileRows, m = e % kTileRows;
      const int64_t row = row0 + m, input = k0 + k;
      const int64_t i = kTransposed ? input : row, j = kTransposed ? row : input;  // proj's row and column
      const bool inside = row < channels && input < channels;
      stage.spatial[k][m] = inside ? proj[i * 2 * channels + j] : acc_t(0);
      if constexpr (kChannel) {
        stage.channel[k][m] = inside ? proj[i * 2 * channels + channels + j] * scale[j] : acc_t(0);
      }
    }
    // Thread tid stages pixel tid % kTilePixels of inputs tid / kTilePixels + kValueStep r.
    constexpr int kValueStep = kThreads / kTilePixels;
    const int t = tid % kTilePixels;
    const bool pixel_inside = pixel0 + t < plane;
    const scalar_t* src = v + (k0 + tid / kTilePixels) * plane + pixel0 + t;
#pragma unroll
    for (int r = 0; r < kChunk / kValueStep; ++r, src += kValueStep * plane) {
      const int k = tid / kTilePixels + r * kValueStep;
      stage.values[k][t] = pixel_inside && k0 + k < channels ? static_cast<acc_t>(*src) : acc_t(0);
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < kChunk; ++k) {
      acc_t ws[kRowsPerThread], wc[kRowsPerThread], x[kPixelsPerThread];
#pragma unroll
      for (int a = 0; a < kRowsPerThread; ++a) {
        ws[a] = stage.spatial[k][warp * kRowsPerThread + a];
        if constexpr (kChannel) wc[a] = stage.channel[k][warp * kRowsPerThread + a];
      }
#pragma unroll
      for (int q = 0; q < kPixelsPerThread; ++q) x[q] = stage.values[k][lane * kPixelsPerThread + q];
#pragma unroll
      for (int a = 0; a < kRowsPerThread; ++a) {
#pragma unroll
        for (int q = 0; q < kPixelsPerThread; ++q) {
          f.spatial[a][q] = fma(ws[a], x[q], f.spatial[a][q]);
          if constexpr (kChannel) f.channel[a][q] = fma(wc[a], x[q], f.channel[a][q]);
        }
      }
    }
    __syncthreads();
  }
}

// body(a, q, row, t) for each entry (a, q) of the thread's fragment of the tile at (row0, pixel0) that lies
// inside the image: row = the channel, t = the pixel's index in the tile.
template <typename Body>
__device__ __forceinline__ void for_each_output(int64_t row0, int64_t pixel0, int64_t channels, int64_t plane,
                                                const Body& body) {
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
#pragma unroll
  for (int a = 0; a < kRowsPerThread; ++a) {
    const int64_t row = row0 + warp * kRowsPerThread + a;
#pragma unroll
    for (int q = 0; q < kPixelsPerThread; ++q) {
      const int t = lane * kPixelsPerThread + q;
      if (row < channels && pixel0 + t < plane) body(a, q, row, t);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Forward.

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    channel_pool_kernel(const scalar_t* __restrict__ res, acc_t* __restrict__ pool, int32_t* __restrict__ argmax,
                        acc_t* __restrict__ tile_sums, int64_t channels, int64_t plane, int64_t tiles) {
  __shared__ acc_t warp_sums[kWarps][kWarp];  // [warp][channel within a run of 32]
  const int tid = threadIdx.x, warp = tid / kWarp, lane = tid % kWarp;
  const int64_t n = blockIdx.x / tiles, pixel0 = blockIdx.x % tiles * kPoolTile + tid;
  const scalar_t* image = res + n * channels * plane;
  acc_t top[kPoolPixelsPerThread], sum[kPoolPixelsPerThread];
  int32_t index[kPoolPixelsPerThread];
#pragma unroll
  for (int q = 0; q < kPoolPixelsPerThread; ++q) {
    top[q] = sum[q] = acc_t(0);
    index[q] = 0;
  }
  for (int64_t c = 0; c < channels; ++c) {
    acc_t channel_sum = acc_t(0);
#pragma unroll
    for (int q = 0; q < kPoolPixelsPerThread; ++q) {
      const int64_t p = pixel0 + q * kThreads;
      if (p >= plane) continue;
      const acc_t v = static_cast<acc_t>(image[c * plane + p]);
      if (c == 0 || v > top[q] || (v != v && top[q] == top[q])) {  // the first maximum; the first NaN wins
        top[q] = v;
        index[q] = static_cast<int32_t>(c);
      }
      sum[q] += v;
      channel_sum += v;
    }
    channel_sum = warp_sum(channel_sum);
    const int slot = static_cast<int>(c % kWarp);
    if (lane == 0) warp_sums[warp][slot] = channel_sum;
    if (slot == kWarp - 1 || c == channels - 1) {
      __syncthreads();
      if (tid <= slot) {
        acc_t total = acc_t(0);
        for (int w = 0; w < kWarps; ++w) total += warp_sums[w][tid];
        tile_sums[blockIdx.x * channels + c - slot + tid] = total;
      }
      __syncthreads();
    }
  }
  const acc_t inverse_channels = acc_t(1) / static_cast<acc_t>(channels);
#pragma unroll
  for (int q = 0; q < kPoolPixelsPerThread; ++q) {
    const int64_t p = pixel0 + q * kThreads;
    if (p >= plane) continue;
    pool[2 * n * plane + p] = top[q];
    pool[(2 * n + 1) * plane + p] = sum[q] * inverse_channels;
    argmax[n * plane + p] = index[q];
  }
}

// out[b][e] = (sum_r part[b][r][e]) / divisor for e < count, rows in order; part[b][r] is row_stride long.
template <typename acc_t>
__global__ void sum_rows_kernel(const acc_t* __restrict__ part, int64_t batches, int64_t rows, int64_t row_stride,
                                int64_t count, acc_t divisor, acc_t* __restrict__ out) {
  for (int64_t k = grid_stride_begin(); k < batches * count; k += grid_stride_step()) {
    const acc_t* column = part + k / count * rows * row_stride + k % count;
    acc_t total = acc_t(0);
    for (int64_t r = 0; r < rows; ++r) total += column[r * row_stride];
    out[k] = total / divisor;
  }
}

template <typename acc_t>
__global__ void channel_attention_kernel(const acc_t* __restrict__ mean, const acc_t* __restrict__ w1,
                                         const acc_t* __restrict__ b1, const acc_t* __restrict__ w2,
                                         const acc_t* __restrict__ b2, acc_t* __restrict__ hidden,
                                         acc_t* __restrict__ scale, int64_t batch, int64_t channels, int64_t reduced) {
  for (int64_t n = grid_stride_begin(); n < batch; n += grid_stride_step()) {
    channel_attention_forward(mean + n * channels, w1, b1, w2, b2, channels, reduced, hidden + n * reduced,
                              scale + n * channels);
  }
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) projection_forward_kernel(
    const scalar_t* __restrict__ res, const scalar_t* __restrict__ x, const acc_t* __restrict__ pool,
    const acc_t* __restrict__ sa, const acc_t* __restrict__ proj, const acc_t* __restrict__ bias,
    const acc_t* __restrict__ scale, scalar_t* __restrict__ out, int64_t channels, int64_t height, int64_t width,
    int64_t row_tiles, int64_t pixel_tiles) {
  __shared__ ProjectionStage<acc_t> stage;
  __shared__ acc_t spatial_scale[kTilePixels];
  const int64_t plane = height * width;
  const TileTask task = tile_task(row_tiles, pixel_tiles);
  const int64_t offset = task.image * channels * plane + task.pixel0;
  stage_spatial_scale(pool + task.image * 2 * plane, sa, height, width, task.pixel0, spatial_scale);
  __syncthreads();
  Fragment<acc_t> f;
  project<false, true>(res + task.image * channels * plane, proj, scale + task.image * channels, channels, plane,
                       task.row0, task.pixel0, stage, f);
  for_each_output(task.row0, task.pixel0, channels, plane, [&](int a, int q, int64_t row, int t) {
    const int64_t i = offset + row * plane + t;
    out[i] = static_cast<scalar_t>(spatial_scale[t] * f.spatial[a][q] + f.channel[a][q] + bias[row] +
                                   static_cast<acc_t>(x[i]));
  });
}

// ---------------------------------------------------------------------------------------------------------
// Backward.

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads)
    logit_grad_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ res,
                      const acc_t* __restrict__ pool, const acc_t* __restrict__ sa, const acc_t* __restrict__ proj,
                      acc_t* __restrict__ spatial_out, acc_t* __restrict__ grad_logit,
                      acc_t* __restrict__ sa_partial, int64_t channels,
                      int64_t height, int64_t width, int64_t pixel_tiles) {
  __shared__ ProjectionStage<acc_t> stage;
  __shared__ acc_t spatial_scale[kTilePixels];
  __shared__ acc_t warp_dots[kWarps][kTilePixels];
  __shared__ acc_t warp_taps[kTileWarps][kSpatialTaps];
  const int tid = threadIdx.x;
  const int64_t plane = height * width;
  const TileTask task = tile_task(1, pixel_tiles);
  const acc_t* image_pool = pool + task.image * 2 * plane;
  const scalar_t* image_grad = grad + task.image * channels * plane + task.pixel0;
  stage_spatial_scale(image_pool, sa, height, width, task.pixel0, spatial_scale);
  // dL/ds(p) = g(p) . W_a res(p): the thread's share over its rows of every row tile, then over the warps.
  acc_t dot[kPixelsPerThread] = {};
  for (int64_t row0 = 0; row0 < channels; row0 += kTileRows) {
    Fragment<acc_t> f;
    project<false, false>(res + task.image * channels * plane, proj, static_cast<const acc_t*>(nullptr), channels,
                          plane, row0, task.pixel0, stage, f);
    for_each_output(row0, task.pixel0, channels, plane, [&](int a, int q, int64_t row, int t) {
      dot[q] = fma(static_cast<acc_t>(image_grad[row * plane + t]), f.spatial[a][q], dot[q]);
    });
  }
#pragma unroll
  for (int q = 0; q < kPixelsPerThread; ++q) warp_dots[tid / kWarp][tid % kWarp * kPixelsPerThread + q] = dot[q];
  __syncthreads();
  if (tid < kTilePixels) {  // thread t owns pixel t of the tile
    const int64_t p = task.pixel0 + tid;
    const bool inside = p < plane;
    acc_t grad_s = acc_t(0);
    for (int w = 0; w < kWarps; ++w) grad_s += warp_dots[w][tid];
    const acc_t s = spatial_scale[tid];
    const acc_t g = inside ? grad_s * s * (acc_t(1) - s) : acc_t(0);
    if (inside) {
      spatial_out[task.image * plane + p] = s;
      grad_logit[task.image * plane + p] = g;
    }
    // dL/dsa[k][dy][dx] = sum_p dL/dlogit(p) pool_k(p + (dy - 1, dx - 1)), zero padding: a padded tap adds
    // dL/dlogit(p) * 0, NaN for a non-finite dL/dlogit, as the reference conv's weight gradient does.
    const int64_t h = p / width, w = p % width;
#pragma unroll
    for (int tap = 0; tap < kSpatialTaps; ++tap) {
      const int64_t y = h + tap / 3 % 3 - 1, xx = w + tap % 3 - 1;
      const bool tap_inside = y >= 0 && y < height && xx >= 0 && xx < width;
      const acc_t pool_tap = tap_inside ? image_pool[tap / 9 * plane + y * width + xx] : acc_t(0);
      const acc_t term = warp_sum(inside ? g * pool_tap : acc_t(0));
      if (tid % kWarp == 0) warp_taps[tid / kWarp][tap] = term;
    }
  }
  __syncthreads();
  if (tid < kSpatialTaps) {
    acc_t total = acc_t(0);
    for (int w = 0; w < kTileWarps; ++w) total += warp_taps[w][tid];
    sa_partial[static_cast<int64_t>(blockIdx.x) * kSpatialTaps + tid] = total;
  }
}

// The weight-gradient partials: a row of (2 C^2 + C) per (image, split).
struct PartialLayout {
  int64_t channels;
  __host__ __device__ int64_t scaled_outer() const { return 0; }                 // sum (s g) res^T, (C, C)
  __host__ __device__ int64_t outer() const { return channels * channels; }      // sum g res^T, (C, C)
  __host__ __device__ int64_t bias() const { return 2 * channels * channels; }   // sum g, (C)
  __host__ __device__ int64_t stride() const { return 2 * channels * channels + channels; }
};

// tile[px][r] = v[row0 + r][pixel0 + px] of one image, 0 past C or from `limit` on (rows padded by one so that
// both this transposing store and the reads are free of bank conflicts).
template <typename scalar_t, typename acc_t>
__device__ void stage_transposed(const scalar_t* __restrict__ v, int64_t channels, int64_t plane, int64_t row0,
                                 int64_t pixel0, int64_t limit, acc_t (&tile)[kGradChunk][kGradTile + 1]) {
  // Thread tid stages pixel tid % kGradChunk of rows tid / kGradChunk + kRowStep r.
  constexpr int kRowStep = kGradThreads / kGradChunk;
  const int px = threadIdx.x % kGradChunk;
  const bool pixel_inside = pixel0 + px < limit;
  const scalar_t* src = v + (row0 + threadIdx.x / kGradChunk) * plane + pixel0 + px;
#pragma unroll
  for (int r = 0; r < kGradTile / kRowStep; ++r, src += kRowStep * plane) {
    const int m = threadIdx.x / kGradChunk + r * kRowStep;
    tile[px][m] = pixel_inside && row0 + m < channels ? static_cast<acc_t>(*src) : acc_t(0);
  }
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kGradThreads) weight_grad_partials_kernel(
    const scalar_t* __restrict__ grad, const scalar_t* __restrict__ res, const acc_t* __restrict__ spatial,
    acc_t* __restrict__ partial, int64_t channels, int64_t plane, int64_t side_tiles, int64_t splits,
    int64_t split_pixels) {
  __shared__ acc_t grad_tile[kGradChunk][kGradTile + 1];
  __shared__ acc_t res_tile[kGradChunk][kGradTile + 1];
  __shared__ acc_t spatial_scale[kGradChunk];
  const int64_t task = blockIdx.x, row = task / (side_tiles * side_tiles);  // row = image * splits + split
  const int64_t n = row / splits, begin = row % splits * split_pixels;
  const int64_t end = std::min(plane, begin + split_pixels);
  const int64_t i0 = task / side_tiles % side_tiles * kGradTile, j0 = task % side_tiles * kGradTile;
  const int ti = threadIdx.x % kGradSide, tj = threadIdx.x / kGradSide;
  const scalar_t* image_grad = grad + n * channels * plane;
  const scalar_t* image_res = res + n * channels * plane;
  acc_t scaled[kGradPerThread][kGradPerThread] = {}, outer[kGradPerThread][kGradPerThread] = {};
  acc_t bias[kGradPerThread] = {};
  for (int64_t pixel0 = begin; pixel0 < end; pixel0 += kGradChunk) {
    if (threadIdx.x < kGradChunk) {
      const int64_t p = pixel0 + threadIdx.x;
      spatial_scale[threadIdx.x] = p < end ? spatial[n * plane + p] : acc_t(0);
    }
    stage_transposed(image_grad, channels, plane, i0, pixel0, end, grad_tile);
    stage_transposed(image_res, channels, plane, j0, pixel0, end, res_tile);
    __syncthreads();
#pragma unroll 4
    for (int k = 0; k < kGradChunk; ++k) {
      const acc_t s = spatial_scale[k];
      acc_t g[kGradPerThread], r[kGradPerThread];
#pragma unroll
      for (int a = 0; a < kGradPerThread; ++a) {
        g[a] = grad_tile[k][ti + a * kGradSide];
        r[a] = res_tile[k][tj + a * kGradSide];
      }
#pragma unroll
      for (int a = 0; a < kGradPerThread; ++a) {
        const acc_t sg = s * g[a];
        bias[a] += g[a];
#pragma unroll
        for (int b = 0; b < kGradPerThread; ++b) {
          scaled[a][b] = fma(sg, r[b], scaled[a][b]);
          outer[a][b] = fma(g[a], r[b], outer[a][b]);
        }
      }
    }
    __syncthreads();
  }
  const PartialLayout layout{channels};
  acc_t* out = partial + row * layout.stride();
#pragma unroll
  for (int a = 0; a < kGradPerThread; ++a) {
    const int64_t i = i0 + ti + a * kGradSide;
    if (i >= channels) continue;
#pragma unroll
    for (int b = 0; b < kGradPerThread; ++b) {
      const int64_t j = j0 + tj + b * kGradSide;
      if (j >= channels) continue;
      out[layout.scaled_outer() + i * channels + j] = scaled[a][b];
      out[layout.outer() + i * channels + j] = outer[a][b];
    }
    if (j0 == 0 && tj == 0) out[layout.bias() + i] = bias[a];
  }
}

// Per (i, j): dL/dW_a[i][j] = sum over images and splits of the scaled outer products; G_n[i][j] = sum over
// the image's splits of g res^T (-> outer (N, C, C)); dL/dW_b[i][j] = sum_n c_nj G_n[i][j].
template <typename acc_t>
__global__ void projection_grads_kernel(const acc_t* __restrict__ partial, const acc_t* __restrict__ scale,
                                        acc_t* __restrict__ outer, acc_t* __restrict__ grad_proj, int64_t batch,
                                        int64_t splits, int64_t channels) {
  const PartialLayout layout{channels};
  const int64_t squared = channels * channels;
  for (int64_t e = grid_stride_begin(); e < squared; e += grid_stride_step()) {
    const int64_t i = e / channels, j = e % channels;
    acc_t spatial = acc_t(0), channel = acc_t(0);
    for (int64_t n = 0; n < batch; ++n) {
      acc_t image = acc_t(0);
      for (int64_t s = 0; s < splits; ++s) {
        const acc_t* row = partial + (n * splits + s) * layout.stride();
        spatial += row[layout.scaled_outer() + e];
        image += row[layout.outer() + e];
      }
      outer[n * squared + e] = image;
      channel += scale[n * channels + j] * image;
    }
    grad_proj[i * 2 * channels + j] = spatial;
    grad_proj[i * 2 * channels + channels + j] = channel;
  }
}

// The CA MLP's gradients of one image: a row of (2 R C + R + C): w1 (R, C), b1 (R), w2 (C, R), b2 (C).
struct MlpLayout {
  int64_t channels, reduced;
  __host__ __device__ int64_t w1() const { return 0; }
  __host__ __device__ int64_t b1() const { return reduced * channels; }
  __host__ __device__ int64_t w2() const { return reduced * channels + reduced; }
  __host__ __device__ int64_t b2() const { return 2 * reduced * channels + reduced; }
  __host__ __device__ int64_t stride() const { return 2 * reduced * channels + reduced + channels; }
};

// Block per image: dL/dc, the CA MLP's backward into the image's row of mlp_partial (zeroed), and
// channel_grad = dL/dm / (H W) (inverse_plane = 1 / (H W)). Dynamic shared memory: (2 C + R) acc_t, for the
// serial part's running sums. (At least one resident block asked for: without it ptxas spills that part.)
template <typename acc_t>
__global__ void __launch_bounds__(kThreads, 1) channel_attention_grad_kernel(
    const acc_t* __restrict__ outer, const acc_t* __restrict__ proj, const acc_t* __restrict__ scale,
    const acc_t* __restrict__ hidden, const acc_t* __restrict__ mean, const acc_t* __restrict__ w1,
    const acc_t* __restrict__ w2, acc_t* __restrict__ mlp_partial, acc_t* __restrict__ channel_grad,
    int64_t channels, int64_t reduced, acc_t inverse_plane) {
  extern __shared__ __align__(sizeof(double)) unsigned char shared_bytes[];
  acc_t* grad_scale = reinterpret_cast<acc_t*>(shared_bytes);
  acc_t* grad_hidden = grad_scale + channels;
  acc_t* grad_mean = grad_hidden + reduced;
  const int64_t n = blockIdx.x;
  const acc_t* image_outer = outer + n * channels * channels;
  for (int64_t j = threadIdx.x; j < channels; j += blockDim.x) {
    acc_t total = acc_t(0);
    for (int64_t i = 0; i < channels; ++i) {
      total += proj[i * 2 * channels + channels + j] * image_outer[i * channels + j];
    }
    grad_scale[j] = total;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    const MlpLayout layout{channels, reduced};
    acc_t* row = mlp_partial + n * layout.stride();
    channel_attention_backward(grad_scale, scale + n * channels, hidden + n * reduced, mean + n * channels, w1, w2,
                               channels, reduced, grad_hidden, row + layout.w1(), row + layout.b1(), row + layout.w2(),
                               row + layout.b2(), grad_mean);
  }
  __syncthreads();
  for (int64_t j = threadIdx.x; j < channels; j += blockDim.x) {
    channel_grad[n * channels + j] = grad_mean[j] * inverse_plane;
  }
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) input_grad_kernel(
    const scalar_t* __restrict__ grad, const acc_t* __restrict__ spatial, const int32_t* __restrict__ argmax,
    const acc_t* __restrict__ grad_logit, const acc_t* __restrict__ sa, const acc_t* __restrict__ proj,
    const acc_t* __restrict__ scale, const acc_t* __restrict__ channel_grad, scalar_t* __restrict__ grad_res,
    int64_t channels, int64_t height, int64_t width, int64_t row_tiles, int64_t pixel_tiles) {
  __shared__ ProjectionStage<acc_t> stage;
  __shared__ acc_t spatial_scale[kTilePixels], max_grad[kTilePixels], mean_grad[kTilePixels];
  __shared__ int32_t max_index[kTilePixels];
  const int64_t plane = height * width;
  const TileTask task = tile_task(row_tiles, pixel_tiles);
  if (threadIdx.x < kTilePixels) {
    const int64_t p = task.pixel0 + threadIdx.x;
    if (p < plane) {
      spatial_scale[threadIdx.x] = spatial[task.image * plane + p];
      const acc_t* image_grad_logit = grad_logit + task.image * plane;
      const int64_t h = p / width, w = p % width;
      max_grad[threadIdx.x] = spatial_logit_transposed(image_grad_logit, sa, 0, height, width, h, w);
      mean_grad[threadIdx.x] =
          spatial_logit_transposed(image_grad_logit, sa, 1, height, width, h, w) / static_cast<acc_t>(channels);
      max_index[threadIdx.x] = argmax[task.image * plane + p];
    }
  }
  __syncthreads();
  Fragment<acc_t> f;
  project<true, true>(grad + task.image * channels * plane, proj, scale + task.image * channels, channels, plane,
                      task.row0, task.pixel0, stage, f);
  const int64_t offset = task.image * channels * plane + task.pixel0;
  for_each_output(task.row0, task.pixel0, channels, plane, [&](int a, int q, int64_t row, int t) {
    acc_t value = spatial_scale[t] * f.spatial[a][q] + f.channel[a][q] + mean_grad[t] +
                  channel_grad[task.image * channels + row];
    if (max_index[t] == row) value += max_grad[t];
    grad_res[offset + row * plane + t] = static_cast<scalar_t>(value);
  });
}

// ---------------------------------------------------------------------------------------------------------
// Host side.

template <typename acc_t>
void sum_rows(const acc_t* part, int64_t batches, int64_t rows, int64_t row_stride, int64_t count, acc_t divisor,
              acc_t* out, cudaStream_t stream) {
  const LaunchConfig config = elementwise_launch_config(batches * count);
  sum_rows_kernel<acc_t><<<config.blocks, config.threads, 0, stream>>>(part, batches, rows, row_stride, count,
                                                                       divisor, out);
  CF_CUDA_LAUNCH_CHECK();
}

struct ChannelAttention {
  Tensor hidden, scale;  // (N, R), (N, C)
};

template <typename acc_t>
ChannelAttention channel_attention(const Shape& s, const Weights& w, const Tensor& channel_mean,
                                   cudaStream_t stream) {
  ChannelAttention ca{empty_tensor({s.batch, s.reduced}, channel_mean.scalar_type(), channel_mean.device()),
                      empty_tensor({s.batch, s.channels}, channel_mean.scalar_type(), channel_mean.device())};
  const LaunchConfig config = elementwise_launch_config(s.batch);
  channel_attention_kernel<acc_t><<<config.blocks, config.threads, 0, stream>>>(
      channel_mean.const_data_ptr<acc_t>(), w.w1.const_data_ptr<acc_t>(), w.b1.const_data_ptr<acc_t>(),
      w.w2.const_data_ptr<acc_t>(), w.b2.const_data_ptr<acc_t>(), ca.hidden.mutable_data_ptr<acc_t>(),
      ca.scale.mutable_data_ptr<acc_t>(), s.batch, s.channels, s.reduced);
  CF_CUDA_LAUNCH_CHECK();
  return ca;
}

std::tuple<Tensor, Tensor, Tensor, Tensor> dual_attention_forward_cuda(
    const Tensor& res, const Tensor& x, const Tensor& sa_weight, const Tensor& ca_w1,
    const Tensor& ca_b1, const Tensor& ca_w2, const Tensor& ca_b2, const Tensor& proj_w,
    const Tensor& proj_b) {
  const CudaDeviceGuard guard(res);
  const ForwardTensors t = prepare_forward(res, x, sa_weight, ca_w1, ca_b1, ca_w2, ca_b2, proj_w, proj_b,
                                             /*allow_channels_last=*/false);
  if (t.res.numel() == 0) return {t.out, t.pool, t.argmax, t.channel_mean};
  const Shape& s = t.shape;
  const int64_t C = s.channels, P = s.plane();
  const cudaStream_t stream = current_cuda_stream();
  CF_DISPATCH_FLOATING(t.res.scalar_type(), "dual_attention_forward_cuda", [&] {
    using acc_t = opmath_t<scalar_t>;
    const Weights& w = t.weights;
    const int64_t pool_tiles = ceil_div(P, kPoolTile);
    Tensor tile_sums = empty_tensor({s.batch * pool_tiles * C}, t.pool.scalar_type(), t.pool.device());
    channel_pool_kernel<scalar_t, acc_t><<<grid_size(s.batch * pool_tiles), kThreads, 0, stream>>>(
        t.res.const_data_ptr<scalar_t>(), t.pool.mutable_data_ptr<acc_t>(), t.argmax.mutable_data_ptr<int32_t>(),
        tile_sums.mutable_data_ptr<acc_t>(), C, P, pool_tiles);
    CF_CUDA_LAUNCH_CHECK();
    sum_rows<acc_t>(tile_sums.const_data_ptr<acc_t>(), s.batch, pool_tiles, C, C, static_cast<acc_t>(P),
                    t.channel_mean.mutable_data_ptr<acc_t>(), stream);
    const ChannelAttention ca = channel_attention<acc_t>(s, w, t.channel_mean, stream);
    const int64_t row_tiles = ceil_div(C, kTileRows), pixel_tiles = ceil_div(P, kTilePixels);
    projection_forward_kernel<scalar_t, acc_t><<<grid_size(s.batch * pixel_tiles * row_tiles), kThreads, 0, stream>>>(
        t.res.const_data_ptr<scalar_t>(), t.x.const_data_ptr<scalar_t>(), t.pool.const_data_ptr<acc_t>(),
        w.sa.const_data_ptr<acc_t>(), w.proj.const_data_ptr<acc_t>(), w.proj_bias.const_data_ptr<acc_t>(),
        ca.scale.const_data_ptr<acc_t>(), t.out.mutable_data_ptr<scalar_t>(), C, s.height, s.width, row_tiles,
        pixel_tiles);
    CF_CUDA_LAUNCH_CHECK();
  });
  return {t.out, t.pool, t.argmax, t.channel_mean};
}

template <typename scalar_t>
void backward_kernels(BackwardTensors& t, cudaStream_t stream) {
  using acc_t = opmath_t<scalar_t>;
  const Shape& s = t.shape;
  const int64_t N = s.batch, C = s.channels, R = s.reduced, P = s.plane();
  const Weights& w = t.weights;
  Weights& grads = t.grads;
  const auto acc = [&](int64_t count) { return empty_tensor({count}, t.pool.scalar_type(), t.pool.device()); };
  const ChannelAttention ca = channel_attention<acc_t>(s, w, t.channel_mean, stream);

  // dL/dlogit and the SA weight's partials.
  const int64_t pixel_tiles = ceil_div(P, kTilePixels);
  Tensor spatial = acc(N * P);  // s, recomputed from the pool once
  Tensor grad_logit = acc(N * P);
  Tensor sa_partial = acc(N * pixel_tiles * kSpatialTaps);
  logit_grad_kernel<scalar_t, acc_t><<<grid_size(N * pixel_tiles), kThreads, 0, stream>>>(
      t.grad.const_data_ptr<scalar_t>(), t.res.const_data_ptr<scalar_t>(), t.pool.const_data_ptr<acc_t>(),
      w.sa.const_data_ptr<acc_t>(), w.proj.const_data_ptr<acc_t>(), spatial.mutable_data_ptr<acc_t>(),
      grad_logit.mutable_data_ptr<acc_t>(), sa_partial.mutable_data_ptr<acc_t>(), C, s.height, s.width, pixel_tiles);
  CF_CUDA_LAUNCH_CHECK();

  // The projection's gradients: per (image, split) partials, then their fixed-order sums.
  const int64_t side_tiles = ceil_div(C, kGradTile);
  // Splits of each image's pixels: kGradBlocksPerSm blocks per SM, unless that leaves a split fewer than
  // kMinSplitPixels pixels; whole kGradChunk runs.
  const int64_t sms = sm_count();
  const int64_t wanted = ceil_div(sms * kGradBlocksPerSm, N * side_tiles * side_tiles);
  const int64_t split_count = std::clamp<int64_t>(wanted, 1, ceil_div(P, kMinSplitPixels));
  const int64_t split_pixels = ceil_div(ceil_div(P, split_count), kGradChunk) * kGradChunk;
  const int64_t splits = ceil_div(P, split_pixels);
  const PartialLayout layout{C};
  Tensor partial = acc(N * splits * layout.stride());
  weight_grad_partials_kernel<scalar_t, acc_t>
      <<<grid_size(N * splits * side_tiles * side_tiles), kGradThreads, 0, stream>>>(
          t.grad.const_data_ptr<scalar_t>(), t.res.const_data_ptr<scalar_t>(), spatial.const_data_ptr<acc_t>(),
          partial.mutable_data_ptr<acc_t>(), C, P, side_tiles, splits, split_pixels);
  CF_CUDA_LAUNCH_CHECK();
  Tensor outer = acc(N * C * C);
  const LaunchConfig squared = elementwise_launch_config(C * C);
  projection_grads_kernel<acc_t><<<squared.blocks, squared.threads, 0, stream>>>(
      partial.const_data_ptr<acc_t>(), ca.scale.const_data_ptr<acc_t>(), outer.mutable_data_ptr<acc_t>(),
      grads.proj.mutable_data_ptr<acc_t>(), N, splits, C);
  CF_CUDA_LAUNCH_CHECK();
  sum_rows<acc_t>(partial.const_data_ptr<acc_t>() + layout.bias(), 1, N * splits, layout.stride(), C, acc_t(1),
                  grads.proj_bias.mutable_data_ptr<acc_t>(), stream);

  // The CA MLP's backward, per image, then summed over the images.
  const MlpLayout mlp{C, R};
  Tensor mlp_partial = zeros_tensor({N * mlp.stride()}, t.pool.scalar_type(), t.pool.device());
  Tensor channel_grad = acc(N * C);
  const size_t shared_bytes = static_cast<size_t>(2 * C + R) * sizeof(acc_t);
  CF_CHECK(shared_bytes <= 48 * 1024, "dual_attention_backward (CUDA): C = ", C, " and C/r = ", R,
              " need more than 48 KiB of shared memory in the channel attention's backward");
  channel_attention_grad_kernel<acc_t><<<grid_size(N), kThreads, shared_bytes, stream>>>(
      outer.const_data_ptr<acc_t>(), w.proj.const_data_ptr<acc_t>(), ca.scale.const_data_ptr<acc_t>(),
      ca.hidden.const_data_ptr<acc_t>(), t.channel_mean.const_data_ptr<acc_t>(), w.w1.const_data_ptr<acc_t>(),
      w.w2.const_data_ptr<acc_t>(), mlp_partial.mutable_data_ptr<acc_t>(), channel_grad.mutable_data_ptr<acc_t>(), C,
      R, acc_t(1) / static_cast<acc_t>(P));
  CF_CUDA_LAUNCH_CHECK();
  const auto sum_images = [&](int64_t offset, int64_t count, Tensor& out) {
    sum_rows<acc_t>(mlp_partial.const_data_ptr<acc_t>() + offset, 1, N, mlp.stride(), count, acc_t(1),
                    out.mutable_data_ptr<acc_t>(), stream);
  };
  sum_images(mlp.w1(), R * C, grads.w1);
  sum_images(mlp.b1(), R, grads.b1);
  sum_images(mlp.w2(), C * R, grads.w2);
  sum_images(mlp.b2(), C, grads.b2);
  sum_rows<acc_t>(sa_partial.const_data_ptr<acc_t>(), 1, N * pixel_tiles, kSpatialTaps, kSpatialTaps, acc_t(1),
                  grads.sa.mutable_data_ptr<acc_t>(), stream);

  // dL/dres.
  const int64_t row_tiles = ceil_div(C, kTileRows);
  input_grad_kernel<scalar_t, acc_t><<<grid_size(N * pixel_tiles * row_tiles), kThreads, 0, stream>>>(
      t.grad.const_data_ptr<scalar_t>(), spatial.const_data_ptr<acc_t>(), t.argmax.const_data_ptr<int32_t>(),
      grad_logit.const_data_ptr<acc_t>(), w.sa.const_data_ptr<acc_t>(), w.proj.const_data_ptr<acc_t>(),
      ca.scale.const_data_ptr<acc_t>(), channel_grad.const_data_ptr<acc_t>(), t.grad_res.mutable_data_ptr<scalar_t>(),
      C, s.height, s.width, row_tiles, pixel_tiles);
  CF_CUDA_LAUNCH_CHECK();
}

BackwardResult dual_attention_backward_cuda(const Tensor& grad_out, const Tensor& res, const Tensor& pool,
                                            const Tensor& argmax, const Tensor& channel_mean,
                                            const Tensor& sa_weight, const Tensor& ca_w1,
                                            const Tensor& ca_b1, const Tensor& ca_w2, const Tensor& ca_b2,
                                            const Tensor& proj_w) {
  const CudaDeviceGuard guard(res);
  BackwardTensors t =
      prepare_backward(grad_out, res, pool, argmax, channel_mean, sa_weight, ca_w1, ca_b1, ca_w2, ca_b2, proj_w,
                       /*allow_channels_last=*/false);
  if (t.res.numel() > 0) {
    const cudaStream_t stream = current_cuda_stream();
    CF_DISPATCH_FLOATING(t.res.scalar_type(), "dual_attention_backward_cuda",
                                    [&] { backward_kernels<scalar_t>(t, stream); });
  }
  return finish_backward(t, sa_weight, ca_w1, ca_b1, ca_w2, ca_b2, proj_w);
}

}  // namespace
}  // namespace dual_attention
}  // namespace cycleisp_fast

STABLE_TORCH_LIBRARY_IMPL(cycleisp_fast, CUDA, m) {
  m.impl("dual_attention_forward", TORCH_BOX(&cycleisp_fast::dual_attention::dual_attention_forward_cuda));
  m.impl("dual_attention_backward", TORCH_BOX(&cycleisp_fast::dual_attention::dual_attention_backward_cuda));
}
