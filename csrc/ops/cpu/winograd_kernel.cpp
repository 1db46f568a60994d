// CPU kernel of cycleisp_fast::winograd_conv3x3 (see ../winograd.h): per band of tiles, the input transform
// (one task per tile, 16 channels at a time), torch's batched matrix product (36 of them) and the output
// transform with the bias. The transforms are written out with their exact coefficients and vectorised over
// the 16 channels of a block, which channels_last keeps contiguous.

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>

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

}  // namespace
}  // namespace winograd
}  // namespace cycleisp_fast

STABLE_TORCH_LIBRARY_IMPL(cycleisp_fast, CPU, m) {
  m.impl("winograd_conv3x3", TORCH_BOX(&cycleisp_fast::winograd::winograd_conv3x3_cpu));
}
