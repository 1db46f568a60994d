// Unit tests of csrc/ops/bayer_math.h, the per-element math the CPU and CUDA kernels share. Plain C++
// (no torch): every layout pair of the remap is run through make_row_job + remap_block_column, exactly
// as the kernels call them, and compared with a naive per-site loop written from the pattern letters.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "ops/bayer_math.h"
#include "tests/expect.h"

using cycleisp_fast::bayer::Layout;
namespace bayer = cycleisp_fast::bayer;


static const char* kPatterns[4] = {"RGGB", "GRBG", "GBRG", "BGGR"};  // indexed by red site

// Canonical channel (R 0, Gr 1, Gb 2, B 3) at (dy, dx), read off the pattern's letters.
static int channel_from_letters(const std::string& p, int dy, int dx) {
  const char letter = p[dy * 2 + dx];
  if (letter == 'R') return 0;
  if (letter == 'B') return 3;
  const int red_row = static_cast<int>(p.find('R')) / 2;
  return dy == red_row ? 1 : 2;
}

static void test_channel_at() {
  for (int red = 0; red < 4; ++red) {
    for (int dy = 0; dy < 2; ++dy) {
      for (int dx = 0; dx < 2; ++dx) {
        EXPECT(bayer::channel_at(dy, dx, red) == channel_from_letters(kPatterns[red], dy, dx),
               "channel_at(%d, %d, %s)", dy, dx, kPatterns[red]);
      }
    }
  }
  EXPECT(bayer::colour_of_channel(0) == 0 && bayer::colour_of_channel(1) == 1 && bayer::colour_of_channel(2) == 1 &&
             bayer::colour_of_channel(3) == 2,
         "colour_of_channel");
}

// Naive index of site (n, y, x) in a contiguous tensor of the layout.
static int64_t naive_index(Layout layout, int64_t n, int64_t y, int64_t x, int channel, int64_t H, int64_t W) {
  if (layout == Layout::kPacked) return ((n * 4 + channel) * (H / 2) + y / 2) * (W / 2) + x / 2;
  if (layout == Layout::kRgb) return ((n * 3 + (channel == 0 ? 0 : channel == 3 ? 2 : 1)) * H + y) * W + x;
  return (n * H + y) * W + x;
}

static int64_t numel(Layout layout, int64_t N, int64_t H, int64_t W) {
  return layout == Layout::kRgb ? N * 3 * H * W : N * H * W;  // packed and cfa hold N*H*W samples
}

template <Layout S, Layout D, bool kLevels>
static void test_remap(int red, int64_t N, int64_t H, int64_t W) {
  std::vector<float> src(numel(S, N, H, W));
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<float>(i) * 0.5f + 1.0f;
  std::vector<float> dst(numel(D, N, H, W), -7.0f), expected(dst.size(), 0.0f);
  const float black[4] = {0.5f, 1.0f, 2.0f, 0.25f}, white[4] = {100.0f, 50.0f, 75.0f, 10.0f};
  const float no_black[4] = {0, 0, 0, 0}, no_white[4] = {1, 1, 1, 1};
  const float* b = kLevels ? black : no_black;
  const float* w = kLevels ? white : no_white;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x) {
        const int c = channel_from_letters(kPatterns[red], static_cast<int>(y % 2), static_cast<int>(x % 2));
        const float v = src[naive_index(S, n, y, x, c, H, W)];
        expected[naive_index(D, n, y, x, c, H, W)] = kLevels ? (v - b[c]) / (w[c] - b[c]) : v;
      }
  for (int64_t n = 0; n < N; ++n)
    for (int64_t y = 0; y < H; ++y) {
      const auto job = bayer::make_row_job<S, D>(src.data(), dst.data(), b, w, n, y, H, W, red);
      for (int64_t bx = 0; bx < W / 2; ++bx) bayer::remap_block_column<S, D, kLevels>(job, bx);
    }
  for (size_t i = 0; i < dst.size(); ++i) {
    EXPECT(dst[i] == expected[i], "remap %d->%d levels=%d pattern %s: element %zu is %g, expected %g",
           static_cast<int>(S), static_cast<int>(D), kLevels, kPatterns[red], i, dst[i], expected[i]);
    if (dst[i] != expected[i]) return;
  }
}

template <bool kLevels>
static void test_all_pairs(int red) {
  test_remap<Layout::kRgb, Layout::kCfa, kLevels>(red, 2, 4, 6);
  test_remap<Layout::kRgb, Layout::kPacked, kLevels>(red, 2, 4, 6);
  test_remap<Layout::kCfa, Layout::kRgb, kLevels>(red, 2, 4, 6);
  test_remap<Layout::kCfa, Layout::kPacked, kLevels>(red, 1, 6, 2);
  test_remap<Layout::kPacked, Layout::kRgb, kLevels>(red, 2, 2, 4);
  test_remap<Layout::kPacked, Layout::kCfa, kLevels>(red, 3, 4, 4);
}

int main() {
  test_channel_at();
  for (int red = 0; red < 4; ++red) {
    test_all_pairs<false>(red);
    test_all_pairs<true>(red);
  }
  return finish("bayer_math");
}
