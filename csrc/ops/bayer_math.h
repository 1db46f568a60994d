// Per-element math of the Bayer remap, shared verbatim by the CPU and CUDA kernels.
//
// Every Bayer op is one "remap" between three layouts of the same 2x2-block CFA grid:
//   kRgb    (N, 3, H, W)      colour plane k = colour_of_channel(c) at every site
//   kCfa    (N, 1, H, W)      one sample per site
//   kPacked (N, 4, H/2, W/2)  canonical channel c in (R, Gr, Gb, B) = (0, 1, 2, 3)
// A site is (n, y, x) on the full-resolution grid; its 2x2 position is (dy, dx) = (y & 1, x & 1) and its
// canonical channel is channel_at(dy, dx, red_site). All tensors are contiguous (the host code ensures
// it). A row job covers one full-resolution row (n, y) and handles, for each block column bx, the even
// site (dx = 0) and the odd site (dx = 1): the CPU kernel loops over bx, the CUDA kernel gives each bx
// its own thread, and both call the functions below.
#pragma once

#include <cstdint>

#include "host_device.h"

namespace cycleisp_fast {
namespace bayer {

enum class Layout : int { kRgb = 0, kCfa = 1, kPacked = 2 };

// Index of the red site in the 2x2 block, 2 * ry + rx: RGGB 0, GRBG 1, GBRG 2, BGGR 3. The red site fixes
// the whole pattern: Gr shares its row, Gb its column, B is diagonal to it.
// Canonical channel (0 R, 1 Gr, 2 Gb, 3 B) at block position (dy, dx).
CYCLEISP_HOST_DEVICE int channel_at(int dy, int dx, int red_site) {
  return ((dy << 1) | dx) ^ red_site;
}

// Colour plane (0 R, 1 G, 2 B) of a canonical channel.
CYCLEISP_HOST_DEVICE int colour_of_channel(int c) { return (c + 1) >> 1; }

// values[c] for c in 0..3 by selects, so a GPU keeps a by-value parameter array in registers instead of
// copying it to local memory for a dynamic index.
template <typename T>
CYCLEISP_HOST_DEVICE T select_channel(const T* values, int c) {
  return c == 0 ? values[0] : c == 1 ? values[1] : c == 2 ? values[2] : values[3];
}

// Elements between consecutive block columns bx and bx + 1 in one row of the layout.
template <Layout L>
struct BlockStep {
  static constexpr int64_t value = L == Layout::kPacked ? 1 : 2;
};

// Offset of site (n, y, dx) at block column 0 in a contiguous tensor of layout L, full-res size H x W.
template <Layout L>
CYCLEISP_HOST_DEVICE int64_t row_offset(int64_t n, int64_t y, int dx, int channel, int64_t H, int64_t W) {
  if (L == Layout::kPacked) {
    return ((n * 4 + channel) * (H >> 1) + (y >> 1)) * (W >> 1);
  }
  if (L == Layout::kRgb) {
    return ((n * 3 + colour_of_channel(channel)) * H + y) * W + dx;
  }
  return (n * H + y) * W + dx;
}

// The value written for one site: a plain copy, or (v - black) / (white - black) in acc_t.
template <typename acc_t, typename out_t, bool kLevels, typename in_t>
CYCLEISP_HOST_DEVICE out_t remap_value(in_t v, acc_t black, acc_t white) {
  if (kLevels) {
    return static_cast<out_t>((static_cast<acc_t>(v) - black) / (white - black));
  }
  return static_cast<out_t>(v);
}

// Pointers and levels of one full-resolution row (n, y) for the two sites dx = 0, 1 of each block.
template <typename in_t, typename out_t, typename acc_t>
struct RowJob {
  const in_t* src[2];
  out_t* dst[2];
  out_t* zero[2][2];  // kRgb destination only: the two other colour planes at that site, set to 0
  acc_t black[2];
  acc_t white[2];
};

template <Layout S, Layout D, typename in_t, typename out_t, typename acc_t>
CYCLEISP_HOST_DEVICE RowJob<in_t, out_t, acc_t> make_row_job(const in_t* src, out_t* dst, const acc_t* black,
                                                           const acc_t* white, int64_t n, int64_t y, int64_t H,
                                                           int64_t W, int red_site) {
  RowJob<in_t, out_t, acc_t> job;
  const int dy = static_cast<int>(y & 1);
  for (int dx = 0; dx < 2; ++dx) {
    const int c = channel_at(dy, dx, red_site);
    job.src[dx] = src + row_offset<S>(n, y, dx, c, H, W);
    job.dst[dx] = dst + row_offset<D>(n, y, dx, c, H, W);
    job.black[dx] = select_channel(black, c);
    job.white[dx] = select_channel(white, c);
    const int k = colour_of_channel(c);
    const int64_t plane = H * W;
    job.zero[dx][0] = job.dst[dx] + (((k + 1) % 3) - k) * plane;
    job.zero[dx][1] = job.dst[dx] + (((k + 2) % 3) - k) * plane;
  }
  return job;
}

// Writes block column bx of a row job: both sites, and the zeros of an RGB destination.
template <Layout S, Layout D, bool kLevels, typename in_t, typename out_t, typename acc_t>
CYCLEISP_HOST_DEVICE void remap_block_column(const RowJob<in_t, out_t, acc_t>& job, int64_t bx) {
  constexpr int64_t src_step = BlockStep<S>::value;
  constexpr int64_t dst_step = BlockStep<D>::value;
CYCLEISP_UNROLL
  for (int dx = 0; dx < 2; ++dx) {
    job.dst[dx][bx * dst_step] =
        remap_value<acc_t, out_t, kLevels>(job.src[dx][bx * src_step], job.black[dx], job.white[dx]);
    if (D == Layout::kRgb) {
      job.zero[dx][0][bx * dst_step] = out_t(0);
      job.zero[dx][1][bx * dst_step] = out_t(0);
    }
  }
}

}  // namespace bayer
}  // namespace cycleisp_fast
