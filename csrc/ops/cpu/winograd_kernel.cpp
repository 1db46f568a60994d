// CPU kernel of cycleisp_fast::winograd_conv3x3 (see ../winograd.h): per band of tiles, the input transform
// (one task per tile, 16 channels at a time), torch's batched matrix product (36 of them) and the output
// transform with the bias. The transforms are written out with their exact coefficients and vectorised over
// the 16 channels of a block, which channels_last keeps contiguous.

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <tuple>
#include <vector>

#include <torch/csrc/inductor/aoti_torch/generated/c_shim_cpu.h>

#include "../winograd.h"
#include "vectorize.h"

namespace cycleisp_fast {
namespace winograd {
namespace {

constexpr int kBlock = 16;  // channels per vector block
struct alignas(64) Block {
  float v[kBlock];
};

// r = B^T d along one axis of the 6x6 tile, for 16 channels: d[k * ds + l] -> r[i * rs + l] (strides in floats;
// the results go through registers, so that the compiler needs no proof that the six rows of r do not overlap).
__attribute__((always_inline)) inline void input_1d(const float* __restrict__ d, int64_t ds, float* __restrict__ r,
                                                    int64_t rs) {
  Block out[kInputTile];
  for (int l = 0; l < kBlock; ++l) {
    const float d0 = d[l], d1 = d[ds + l], d2 = d[2 * ds + l];
    const float d3 = d[3 * ds + l], d4 = d[4 * ds + l], d5 = d[5 * ds + l];
    out[0].v[l] = 2.0f * (d0 + d4) - 3.0f * (d1 - d3) - 4.0f * d2;
    out[1].v[l] = 2.0f * (d4 - d1) + d2 + 5.0f * d3;
    out[2].v[l] = -2.0f * (d1 + d4) + 5.0f * d2 - d3;
    out[3].v[l] = 2.0f * (d1 - d3) + d2 - d4;
    out[4].v[l] = (d1 - d3) + 2.0f * (d4 - d2);
    out[5].v[l] = 2.0f * (d1 + d5) - 3.0f * (d2 - d4) - 4.0f * d3;
  }
  for (int i = 0; i < kInputTile; ++i) std::memcpy(r + i * rs, out[i].v, sizeof(out[i].v));
}

// y = A^T m along one axis (m: 6 blocks at stride ms, y: 4 blocks at stride ys).
__attribute__((always_inline)) inline void output_1d(const Block* m, int ms, Block* y, int ys) {
  for (int l = 0; l < kBlock; ++l) {
    const float m0 = m[0].v[l], m1 = m[ms].v[l], m2 = m[2 * ms].v[l];
    const float m3 = m[3 * ms].v[l], m4 = m[4 * ms].v[l], m5 = m[5 * ms].v[l];
    const float sum12 = m1 + m2, diff12 = m1 - m2;
    y[0].v[l] = m0 + sum12 + (m3 + m4);
    y[ys].v[l] = diff12 + 0.5f * m3 - 2.0f * m4;
    y[2 * ys].v[l] = sum12 + 0.25f * m3 + 4.0f * m4;
    y[3 * ys].v[l] = diff12 + 0.125f * m3 - 8.0f * m4 + m5;
  }
}

// r = A g along one axis, for 16 channels: 4 rows of g (stride gs, in floats) -> 6 rows of r (stride rs). The
// transpose of output_1d: the output gradient's way back to the 36 products.
__attribute__((always_inline)) inline void gradient_1d(const float* __restrict__ g, int64_t gs, float* __restrict__ r,
                                                       int64_t rs) {
  Block out[kInputTile];
  for (int l = 0; l < kBlock; ++l) {
    const float g0 = g[l], g1 = g[gs + l], g2 = g[2 * gs + l], g3 = g[3 * gs + l];
    const float sum02 = g0 + g2, sum13 = g1 + g3;
    out[0].v[l] = g0;
    out[1].v[l] = sum02 + sum13;
    out[2].v[l] = sum02 - sum13;
    out[3].v[l] = (g0 + 0.25f * g2) + 0.5f * (g1 + 0.25f * g3);
    out[4].v[l] = (g0 + 4.0f * g2) - 2.0f * (g1 + 4.0f * g3);
    out[5].v[l] = g3;
  }
  for (int i = 0; i < kInputTile; ++i) std::memcpy(r + i * rs, out[i].v, sizeof(out[i].v));
}

// n floats from src to dst: one vector move for a whole block (the common case), else a short loop.
__attribute__((always_inline)) inline void copy_floats(float* __restrict__ dst, const float* __restrict__ src, int n) {
  if (n == kBlock) {
    std::memcpy(dst, src, kBlock * sizeof(float));
  } else {
    for (int l = 0; l < n; ++l) dst[l] = src[l];
  }
}

// The tile of index `tile` (batch-major, then tile rows, then tile columns).
struct TilePosition {
  int64_t n, y0, x0;
};
inline TilePosition tile_position(const ConvShape& s, int64_t tile) {
  const int64_t per_image = s.tiles_h * s.tiles_w;
  const int64_t n = tile / per_image, rest = tile % per_image;
  return {n, (rest / s.tiles_w) * kOutputTile, (rest % s.tiles_w) * kOutputTile};
}

// V[t - first][p][c] for the tiles [begin, end) of the band starting at tile `first` (V: band x 36 x C, so that a
// tile's 36 transformed blocks go to one place; bmm reads V[:, p] as a strided matrix at no cost).
CYCLEISP_CPU_CLONES_AVX512 void input_transform(const ConvShape& s, const float* __restrict__ x,
                                                float* __restrict__ v, int64_t first, int64_t begin, int64_t end) {
  const int64_t C = s.in_channels, row = s.width * C;
  Block d[kPoints], tmp[kPoints];
  for (int64_t t = begin; t < end; ++t) {
    const TilePosition at = tile_position(s, t);
    const bool inside = at.y0 >= 1 && at.y0 + kInputTile - 1 <= s.height && at.x0 >= 1 &&
                        at.x0 + kInputTile - 1 <= s.width;
    const float* corner = x + ((at.n * s.height + at.y0 - 1) * s.width + at.x0 - 1) * C;
    float* out = v + (t - first) * kPoints * C;
    for (int64_t c0 = 0; c0 < C; c0 += kBlock) {
      const int nc = static_cast<int>(std::min<int64_t>(kBlock, C - c0));
      if (inside && nc == kBlock) {  // the common case: straight from x to V
        for (int j = 0; j < kInputTile; ++j) input_1d(corner + j * C + c0, row, tmp[j].v, kInputTile * kBlock);
        for (int i = 0; i < kInputTile; ++i) input_1d(tmp[i * kInputTile].v, kBlock, out + i * kInputTile * C + c0, C);
        continue;
      }
      for (int i = 0; i < kInputTile; ++i) {
        const int64_t y = at.y0 - 1 + i;
        for (int j = 0; j < kInputTile; ++j) {
          const int64_t xx = at.x0 - 1 + j;
          Block& dst = d[i * kInputTile + j];
          std::memset(dst.v, 0, sizeof(dst.v));
          if (y >= 0 && y < s.height && xx >= 0 && xx < s.width) {
            copy_floats(dst.v, x + ((at.n * s.height + y) * s.width + xx) * C + c0, nc);
          }
        }
      }
      for (int j = 0; j < kInputTile; ++j) input_1d(d[j].v, kInputTile * kBlock, tmp[j].v, kInputTile * kBlock);
      for (int i = 0; i < kInputTile; ++i) input_1d(tmp[i * kInputTile].v, kBlock, d[i * kInputTile].v, kBlock);
      for (int p = 0; p < kPoints; ++p) copy_floats(out + p * C + c0, d[p].v, nc);
    }
  }
}

// y[n, y0 + i, x0 + j, k] = (A^T M A)[i][j] + bias[k] for the tiles [begin, end) of the band at `first` (M: 36 x
// band x K, as bmm writes it without a copy).
CYCLEISP_CPU_CLONES_AVX512 void output_transform(const ConvShape& s, const float* __restrict__ m,
                                                 const float* __restrict__ bias, float* __restrict__ y,
                                                 int64_t band, int64_t first, int64_t begin, int64_t end) {
  const int64_t K = s.out_channels;
  Block prod[kPoints], tmp[kOutputTile * kInputTile], out[kOutputTile * kOutputTile];
  for (int64_t t = begin; t < end; ++t) {
    const TilePosition at = tile_position(s, t);
    const int rows = static_cast<int>(std::min<int64_t>(kOutputTile, s.height - at.y0));
    const int cols = static_cast<int>(std::min<int64_t>(kOutputTile, s.width - at.x0));
    for (int64_t k0 = 0; k0 < K; k0 += kBlock) {
      const int nk = static_cast<int>(std::min<int64_t>(kBlock, K - k0));
      const float* src = m + (t - first) * K + k0;
      for (int p = 0; p < kPoints; ++p) copy_floats(prod[p].v, src + p * band * K, nk);
      for (int j = 0; j < kInputTile; ++j) output_1d(prod + j, kInputTile, tmp + j, kInputTile);  // columns
      for (int i = 0; i < kOutputTile; ++i) output_1d(tmp + i * kInputTile, 1, out + i * kOutputTile, 1);
      Block b{};
      if (bias != nullptr) std::memcpy(b.v, bias + k0, nk * sizeof(float));
      for (int i = 0; i < rows; ++i) {
        for (int j = 0; j < cols; ++j) {
          Block& o = out[i * kOutputTile + j];
          for (int l = 0; l < kBlock; ++l) o.v[l] += b.v[l];
          copy_floats(y + ((at.n * s.height + at.y0 + i) * s.width + at.x0 + j) * K + k0, o.v, nk);
        }
      }
    }
  }
}

// dM[t - first][p][k] = (A dY A^T)[p] for the tiles [begin, end) of the band at `first` (dM: band x 36 x K, the
// layout of V), the output gradient's tiles zero beyond the image; and bias_sum[k] += the sum of dY over the tiles
// (each tile's 16 values summed in float, the tiles in double).
CYCLEISP_CPU_CLONES_AVX512 void gradient_transform(const ConvShape& s, const float* __restrict__ dy,
                                                   float* __restrict__ dm, double* __restrict__ bias_sum,
                                                   int64_t first, int64_t begin, int64_t end) {
  const int64_t K = s.out_channels, row = s.width * K;
  Block g[kOutputTile * kOutputTile], tmp[kOutputTile * kInputTile], points[kPoints];
  for (int64_t t = begin; t < end; ++t) {
    const TilePosition at = tile_position(s, t);
    const int rows = static_cast<int>(std::min<int64_t>(kOutputTile, s.height - at.y0));
    const int cols = static_cast<int>(std::min<int64_t>(kOutputTile, s.width - at.x0));
    const float* corner = dy + ((at.n * s.height + at.y0) * s.width + at.x0) * K;
    float* out = dm + (t - first) * kPoints * K;
    for (int64_t k0 = 0; k0 < K; k0 += kBlock) {
      const int nk = static_cast<int>(std::min<int64_t>(kBlock, K - k0));
      const float* src = corner + k0;
      int64_t row_stride = row, col_stride = K;
      if (rows < kOutputTile || cols < kOutputTile || nk < kBlock) {  // a tile at the edge: zero-filled copy
        for (int i = 0; i < kOutputTile; ++i) {
          for (int j = 0; j < kOutputTile; ++j) {
            Block& dst = g[i * kOutputTile + j];
            std::memset(dst.v, 0, sizeof(dst.v));
            if (i < rows && j < cols) copy_floats(dst.v, corner + i * row + j * K + k0, nk);
          }
        }
        src = g[0].v, row_stride = kOutputTile * kBlock, col_stride = kBlock;
      }
      Block sum{};
      for (int i = 0; i < kOutputTile; ++i) {
        for (int j = 0; j < kOutputTile; ++j) {
          const float* block = src + i * row_stride + j * col_stride;
          for (int l = 0; l < kBlock; ++l) sum.v[l] += block[l];
        }
      }
      for (int l = 0; l < nk; ++l) bias_sum[k0 + l] += sum.v[l];
      for (int i = 0; i < kOutputTile; ++i) gradient_1d(src + i * row_stride, col_stride, tmp[i * kInputTile].v, kBlock);
      if (nk == kBlock) {  // straight into dM
        for (int j = 0; j < kInputTile; ++j) gradient_1d(tmp[j].v, kInputTile * kBlock, out + j * K + k0, kInputTile * K);
      } else {  // the last, partial block of channels: through `points`, so that only nk floats are written
        for (int j = 0; j < kInputTile; ++j) gradient_1d(tmp[j].v, kInputTile * kBlock, points[j].v, kInputTile * kBlock);
        for (int p = 0; p < kPoints; ++p) copy_floats(out + p * K + k0, points[p].v, nk);
      }
    }
  }
}

// A thread's buffer of floats, 64-byte aligned, grown on demand and kept for the thread's life.
class ThreadBuffer {
 public:
  ThreadBuffer() = default;
  ThreadBuffer(const ThreadBuffer&) = delete;
  ThreadBuffer& operator=(const ThreadBuffer&) = delete;
  ~ThreadBuffer() { std::free(data_); }
  float* reserve(int64_t count) {
    if (count > capacity_) {
      std::free(data_);
      const size_t bytes = (static_cast<size_t>(count) * sizeof(float) + 63) / 64 * 64;
      data_ = static_cast<float*>(std::aligned_alloc(64, bytes));
      capacity_ = data_ != nullptr ? count : 0;
      CF_CHECK(data_ != nullptr, "winograd_conv3x3: out of memory for ", bytes, " bytes of tile buffers");
    }
    return data_;
  }

 private:
  float* data_ = nullptr;
  int64_t capacity_ = 0;
};

// Each pool thread's transformed tiles and products, kept between calls: allocating them per call, between the
// calls' large outputs, fragmented the heap (the resident memory grew with every convolution of a network).
// One band's worth: about 768 KiB, or 32 tiles x 36 x (C + K) floats where that is more (band_tiles).
struct Workspace {
  ThreadBuffer tiles, products;
};
Workspace& thread_workspace() {
  thread_local Workspace workspace;
  return workspace;
}

// out = a @ b, batched, through torch's bmm.out (the BLAS torch was built with).
void bmm_out(const Tensor& a, const Tensor& b, const Tensor& out) {
  std::array<StableIValue, 3> stack{torch::stable::detail::from(a), torch::stable::detail::from(b),
                                    torch::stable::detail::from(out)};
  STABLE_TORCH_ERROR_CODE_CHECK(torch_call_dispatcher("aten::bmm", "out", stack.data(), TORCH_ABI_VERSION));
  // The call returns `out` again as a new reference: take it, so that it is released.
  (void)torch::stable::detail::to<Tensor>(stack[0]);
}

Tensor winograd_conv3x3_cpu(const Tensor& x, const Tensor& weight, std::optional<Tensor> bias, int64_t requested) {
  ConvTensors t = prepare(x, weight, bias);
  const ConvShape& s = t.shape;
  if (t.out.numel() == 0 || s.in_channels == 0) {
    if (t.out.numel() != 0) {
      // No input channels: the output is the bias alone.
      float* y = t.out.mutable_data_ptr<float>();
      const float* b = t.bias.defined() ? t.bias.const_data_ptr<float>() : nullptr;
      for (int64_t i = 0; i < t.out.numel(); ++i) y[i] = b ? b[i % s.out_channels] : 0.0f;
    }
    return t.out;
  }
  // Each thread takes whole bands and runs all three steps on them in its own buffers, which stay in its
  // caches; bmm inside the parallel region runs on the calling thread.
  const int64_t band = band_tiles(s, requested);
  const int64_t bands = (s.tiles() + band - 1) / band;
  const int64_t C = s.in_channels, K = s.out_channels;
  const float* xp = t.x.const_data_ptr<float>();
  const float* bp = t.bias.defined() ? t.bias.const_data_ptr<float>() : nullptr;
  float* yp = t.out.mutable_data_ptr<float>();
  parallel_for(0, bands, 1, [&](int64_t begin, int64_t end) {
    Workspace& workspace = thread_workspace();
    float* vp = workspace.tiles.reserve(band * kPoints * C);
    float* mp = workspace.products.reserve(kPoints * band * K);
    // V is band x 36 x C in memory; bmm reads it as 36 matrices (band x C) with rows 36 C apart.
    Tensor v_points =
        torch::stable::from_blob(vp, {kPoints, band, C}, {C, kPoints * C, 1}, x.device(), ScalarType::Float);
    Tensor m = torch::stable::from_blob(mp, {kPoints, band, K}, {band * K, K, 1}, x.device(), ScalarType::Float);
    for (int64_t index = begin; index < end; ++index) {
      const int64_t first = index * band, count = std::min(band, s.tiles() - first);
      input_transform(s, xp, vp, first, first, first + count);
      if (count == band) {
        bmm_out(v_points, t.weight, m);
      } else {
        bmm_out(torch::stable::narrow(v_points, 1, 0, count), t.weight, torch::stable::narrow(m, 1, 0, count));
      }
      output_transform(s, mp, bp, yp, band, first, first, first + count);
    }
  });
  return t.out;
}

// sums[b] = sum_i coefficients[i] * rows[i][b] for b < n (`count` rows of n doubles, `stride` apart): the loops
// over b vectorise.
CYCLEISP_CPU_CLONES_AVX512 void combine_rows(const double* __restrict__ coefficients, int count,
                                             const double* __restrict__ rows, int64_t stride, int64_t n,
                                             double* __restrict__ sums) {
  for (int64_t b = 0; b < n; ++b) sums[b] = 0.0;
  for (int i = 0; i < count; ++i) {
    const double coefficient = coefficients[i];
    const double* __restrict__ row = rows + i * stride;
    for (int64_t b = 0; b < n; ++b) sums[b] += coefficient * row[b];
  }
}

// G^T (3 x 6) of the kernel transform G (6 x 3).
std::array<double, 18> transposed(const double* g) {
  std::array<double, 18> t{};
  for (int r = 0; r < kInputTile; ++r) {
    for (int i = 0; i < 3; ++i) t[i * kInputTile + r] = g[r * 3 + i];
  }
  return t;
}

// out[6r + s][a][b] = (G g G^T)[r][s] of the kernel g of (a, b), in double (G g first, then its product with
// G^T: 162 multiply-adds instead of 324), rounded once: not flipped, (a, b) = (c, k) and g = weight[k][c];
// flipped (the input gradient's kernels), (a, b) = (k, c) and g = weight[k][c] turned by 180 degrees.
void winograd_transform_weight_cpu(const Tensor& weight, const Tensor& transform, bool flip, Tensor out) {
  WeightTransformTensors t = prepare_weight_transform(weight, transform, flip, out);
  const int64_t K = t.weight.size(0), C = t.weight.size(1);
  const int64_t rows = flip ? K : C, cols = flip ? C : K;
  const float* g = t.weight.const_data_ptr<float>();
  const double* gp = t.transform.const_data_ptr<double>();  // G, 6 x 3
  float* up = out.mutable_data_ptr<float>();
  parallel_for(0, rows, std::max<int64_t>(1, 1024 / std::max<int64_t>(cols, 1)), [&](int64_t begin, int64_t end) {
    // taps[3i + j][b]: tap (i, j) of the row's kernels; half[3r + j][b] = (G g)[r][j]
    std::vector<double> taps(kTaps * cols), half(kInputTile * 3 * cols), sums(cols);
    for (int64_t a = begin; a < end; ++a) {
      for (int64_t b = 0; b < cols; ++b) {
        const float* kernel = flip ? g + (a * C + b) * kTaps : g + (b * C + a) * kTaps;
        for (int q = 0; q < kTaps; ++q) taps[q * cols + b] = kernel[flip ? kTaps - 1 - q : q];
      }
      for (int r = 0; r < kInputTile; ++r) {
        for (int j = 0; j < 3; ++j) {
          combine_rows(gp + r * 3, 3, taps.data() + j * cols, 3 * cols, cols, half.data() + (r * 3 + j) * cols);
        }
      }
      for (int r = 0; r < kInputTile; ++r) {
        for (int s = 0; s < kInputTile; ++s) {
          combine_rows(gp + s * 3, 3, half.data() + r * 3 * cols, cols, cols, sums.data());
          float* row = up + ((r * kInputTile + s) * rows + a) * cols;
          for (int64_t b = 0; b < cols; ++b) row[b] = static_cast<float>(sums[b]);
        }
      }
    }
  });
}

// acc += a @ b, batched (torch's baddbmm.out with beta = 1, out aliasing self; the AOTI C shim's stable entry).
void baddbmm_accumulate(const Tensor& acc, const Tensor& a, const Tensor& b) {
  STABLE_TORCH_ERROR_CODE_CHECK(aoti_torch_cpu_baddbmm_out(acc.get(), acc.get(), a.get(), b.get(), 1.0, 1.0));
}

// The calling thread's accumulators of the weight gradient (one 36 x C x K block per chunk), kept between calls:
// fresh ones cost a page fault per 4 KiB on every call (18 MiB for 256 -> 256 channels). The calling thread's
// and not the pool threads', so that concurrent calls from several threads never share one.
ThreadBuffer& caller_accumulators() {
  thread_local ThreadBuffer accumulators;
  return accumulators;
}

std::tuple<Tensor, Tensor> winograd_conv3x3_weight_grad_cpu(const Tensor& x, const Tensor& grad,
                                                            const Tensor& transform, int64_t requested) {
  WeightGradTensors t = prepare_weight_grad(x, grad, transform);
  const ConvShape& s = t.shape;
  const int64_t C = s.in_channels, K = s.out_channels;
  if (s.tiles() == 0 || K == 0) return {t.weight_grad, t.bias_grad};  // zeros
  // The tiles split into one contiguous range per chunk (about one per thread), each with its own accumulators
  // (36 x C x K products and K bias sums), added at the end: the weight gradient is a sum over every tile.
  const int64_t band = band_tiles(s, requested);  // measured: bands of 32-64 tiles beat 128-512 by 1.1-1.5x
  const int64_t bands = (s.tiles() + band - 1) / band;
  const int64_t per_chunk = kPoints * C * K;
  // One chunk per thread, but no more than kAccumulatorBytes of accumulators in all (at least one chunk), so
  // that wide convolutions on many-core machines do not hold one 36 x C x K block per core.
  constexpr int64_t kAccumulatorBytes = int64_t(64) << 20;
  const int64_t affordable = std::max<int64_t>(1, kAccumulatorBytes / std::max<int64_t>(per_chunk * 4, 1));
  const int64_t chunks = std::min({static_cast<int64_t>(std::max(num_threads(), 1)), bands, affordable});
  std::vector<double> bias_partial(chunks * K, 0.0);
  float* accumulators = caller_accumulators().reserve(std::max<int64_t>(chunks * per_chunk, 1));
  const float* xp = t.x.const_data_ptr<float>();
  const float* gp = t.grad.const_data_ptr<float>();
  parallel_for(0, chunks, 1, [&](int64_t chunk_begin, int64_t chunk_end) {
    Workspace& workspace = thread_workspace();
    float* vp = workspace.tiles.reserve(std::max<int64_t>(band * kPoints * C, 1));  // C = 0: the bias alone
    float* mp = workspace.products.reserve(band * kPoints * K);
    // V and dM are band x 36 x C (K) in memory; baddbmm reads V[:, p]^T (C x band) and dM[:, p] (band x K).
    Tensor v_t = torch::stable::from_blob(vp, {kPoints, C, band}, {C, 1, kPoints * C}, x.device(), ScalarType::Float);
    Tensor dm = torch::stable::from_blob(mp, {kPoints, band, K}, {K, kPoints * K, 1}, x.device(), ScalarType::Float);
    for (int64_t chunk = chunk_begin; chunk < chunk_end; ++chunk) {
      float* ap = accumulators + chunk * per_chunk;
      std::memset(ap, 0, per_chunk * sizeof(float));
      Tensor acc = torch::stable::from_blob(ap, {kPoints, C, K}, {C * K, K, 1}, x.device(), ScalarType::Float);
      double* bias_sum = bias_partial.data() + chunk * K;
      for (int64_t index = bands * chunk / chunks; index < bands * (chunk + 1) / chunks; ++index) {
        const int64_t first = index * band, count = std::min(band, s.tiles() - first);
        input_transform(s, xp, vp, first, first, first + count);
        gradient_transform(s, gp, mp, bias_sum, first, first, first + count);
        if (C == 0) continue;
        if (count == band) {
          baddbmm_accumulate(acc, v_t, dm);
        } else {
          baddbmm_accumulate(acc, torch::stable::narrow(v_t, 2, 0, count), torch::stable::narrow(dm, 1, 0, count));
        }
      }
    }
  });
  // dg[k][c] = G^T dU[.][c][k] G (dU the chunks' sum), in double: dU G first, then G^T times it.
  const std::array<double, 18> gt = transposed(t.transform.const_data_ptr<double>());  // G^T, 3 x 6
  float* wp = t.weight_grad.mutable_data_ptr<float>();
  parallel_for(0, C, std::max<int64_t>(1, 4096 / std::max<int64_t>(K, 1)), [&](int64_t begin, int64_t end) {
    // points[6r + s][k]: dU; half[3r + j][k] = (dU G)[r][j]
    std::vector<double> points(kPoints * K), half(kInputTile * 3 * K), sums(K);
    for (int64_t c = begin; c < end; ++c) {
      for (int p = 0; p < kPoints; ++p) {
        double* total = points.data() + p * K;
        for (int64_t k = 0; k < K; ++k) total[k] = 0.0;
        for (int64_t chunk = 0; chunk < chunks; ++chunk) {
          const float* part = accumulators + chunk * per_chunk + (p * C + c) * K;
          for (int64_t k = 0; k < K; ++k) total[k] += part[k];
        }
      }
      for (int r = 0; r < kInputTile; ++r) {
        for (int j = 0; j < 3; ++j) {
          combine_rows(gt.data() + j * kInputTile, kInputTile, points.data() + r * kInputTile * K, K, K,
                       half.data() + (r * 3 + j) * K);
        }
      }
      for (int i = 0; i < 3; ++i) {
        for (int j = 0; j < 3; ++j) {
          combine_rows(gt.data() + i * kInputTile, kInputTile, half.data() + j * K, 3 * K, K, sums.data());
          for (int64_t k = 0; k < K; ++k) wp[(k * C + c) * kTaps + i * 3 + j] = static_cast<float>(sums[k]);
        }
      }
    }
  });
  float* bp = t.bias_grad.mutable_data_ptr<float>();
  for (int64_t k = 0; k < K; ++k) {
    double total = 0.0;
    for (int64_t chunk = 0; chunk < chunks; ++chunk) total += bias_partial[chunk * K + k];
    bp[k] = static_cast<float>(total);
  }
  return {t.weight_grad, t.bias_grad};
}

}  // namespace
}  // namespace winograd
}  // namespace cycleisp_fast

STABLE_TORCH_LIBRARY_IMPL(cycleisp_fast, CPU, m) {
  m.impl("winograd_conv3x3", TORCH_BOX(&cycleisp_fast::winograd::winograd_conv3x3_cpu));
  m.impl("winograd_conv3x3_weight_grad", TORCH_BOX(&cycleisp_fast::winograd::winograd_conv3x3_weight_grad_cpu));
  m.impl("winograd_transform_weight", TORCH_BOX(&cycleisp_fast::winograd::winograd_transform_weight_cpu));
}
