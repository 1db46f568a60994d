// CPU kernel of cycleisp_fast::physical_noise: one task per run of 1024-element tiles (the tiles of the
// Gaussian stream). Per tile, each part of the noise is computed in its own branch-free pass over the tile's
// elements (which the compiler vectorises): the Poisson counts (noise_blocks.h), the read noise from the
// tile's normals or Tukey-lambda quantiles, the quantisation noise, then their sum per row segment, where a
// segment is the part of the tile in one row of one (image, channel) plane and shares its parameters and row
// offset.

#include <algorithm>
#include <cstdint>
#include <optional>
#include <type_traits>

#include "../physical_noise.h"
#include "noise_blocks.h"
#include "vectorize.h"

namespace cycleisp_fast {
namespace physical_noise {
namespace {

using noise::kTile;
using noise::kTileCounters;

// The elements [begin, end) of a tile (tile-relative) in one row of plane (n, c), with that row's offset.
template <typename acc_t>
struct Segment {
  int64_t begin, end, n, c;
  acc_t row;
};

template <typename scalar_t, typename acc_t>
CYCLEISP_CPU_CLONES_AVX512 void signal_pass(const scalar_t* __restrict__ x, acc_t scale, acc_t gain, int64_t n,
                                            acc_t* __restrict__ signal, double* __restrict__ rate) {
  const double inv_gain_guard = gain == acc_t(0) ? 1.0 : static_cast<double>(gain);
  for (int64_t i = 0; i < n; ++i) {
    signal[i] = scale * static_cast<acc_t>(x[i]);
    rate[i] = static_cast<double>(signal[i]) / inv_gain_guard;
  }
}

template <typename acc_t>
CYCLEISP_CPU_CLONES_AVX512 void shot_pass(const double* __restrict__ count, acc_t gain, int64_t n,
                                          acc_t* __restrict__ signal) {
  for (int64_t i = 0; i < n; ++i) signal[i] = shot_from_count(signal[i], gain, count[i]);
}

template <typename acc_t>
CYCLEISP_CPU_CLONES_AVX512 __attribute__((flatten)) void tukey_pass(const uint32_t* __restrict__ w, acc_t sigma,
                                                                    acc_t lambda, int64_t n,
                                                                    acc_t* __restrict__ read) {
  if (tukey_is_logistic(lambda)) {
    for (int64_t i = 0; i < n; ++i) read[i] = sigma * logistic_quantile<acc_t>(w[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) read[i] = sigma * tukey_general(w[i], lambda);
  }
}

template <typename acc_t>
CYCLEISP_CPU_CLONES_AVX512 void scaled_pass(const acc_t* __restrict__ z, acc_t sigma, int64_t n,
                                            acc_t* __restrict__ read) {
  for (int64_t i = 0; i < n; ++i) read[i] = sigma * z[i];
}

template <typename acc_t>
CYCLEISP_CPU_CLONES_AVX512 void quant_pass(const uint32_t* __restrict__ w, acc_t step, int64_t n,
                                           acc_t* __restrict__ quant) {
  for (int64_t i = 0; i < n; ++i) quant[i] = step * centred_uniform(w[i], acc_t(0));
}

template <typename scalar_t, typename acc_t>
CYCLEISP_CPU_CLONES_AVX512 void output_pass(const acc_t* __restrict__ shot, const acc_t* __restrict__ read,
                                            acc_t row, const acc_t* __restrict__ quant, acc_t bias, acc_t scale,
                                            int64_t n, bool has_min, acc_t clip_min, bool has_max, acc_t clip_max,
                                            scalar_t* __restrict__ out) {
  for (int64_t i = 0; i < n; ++i) {
    const acc_t y = combine(shot[i], read[i], row, quant[i], bias, scale);
    out[i] = static_cast<scalar_t>(noise::clip(y, has_min, clip_min, has_max, clip_max));
  }
}

template <typename scalar_t>
void physical_cpu_typed(const PhysicalTensors& t) {
  using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
  const scalar_t* x = t.x.const_data_ptr<scalar_t>();
  scalar_t* out = t.out.mutable_data_ptr<scalar_t>();
  const acc_t* params = t.params.const_data_ptr<acc_t>();
  const acc_t* bias = t.bias.const_data_ptr<acc_t>();
  const int64_t numel = t.x.numel();
  const int64_t tiles = (numel + kTile - 1) / kTile;
  const int64_t comp = t.components;
  parallel_for_dynamic(tiles, noise::cpu::kTilesPerTask, [&](int64_t begin, int64_t end) {
    uint32_t w[4][kTileCounters];
    uint32_t tukey_words[kTile], quant_words[kTile];  // the tile layout: word-major runs of 256 = element order
    acc_t z[kTile], shot[kTile], read[kTile], quant[kTile];
    double rate[kTile], count[kTile];
    Segment<acc_t> segments[kTile];
    std::fill(read, read + kTile, acc_t(0));
    std::fill(quant, quant + kTile, acc_t(0));
    for (int64_t tile = begin; tile < end; ++tile) {
      const int64_t tile_begin = tile * kTile;
      const int64_t size = std::min(numel, tile_begin + kTile) - tile_begin;
      int64_t segment_count = 0;
      for (int64_t i = 0; i < size;) {
        const int64_t row_global = (tile_begin + i) / t.w;  // (n C + c) H + h
        const int64_t seg_end = std::min(size, (row_global + 1) * t.w - tile_begin);
        const int64_t h = row_global % t.h, plane = row_global / t.h;
        const int64_t n = plane / t.c, c = plane % t.c;
        acc_t row_offset{};
        if (comp & kRow) {
          const int64_t row = t.packed_rows ? 2 * h + t.row_phase[c] : h;
          row_offset = params[n * kParams + kRowScale] * row_normal<acc_t>(t.stream, n * t.rows + row);
        }
        segments[segment_count++] = {i, seg_end, n, c, row_offset};
        i = seg_end;
      }
      if (comp & kGaussianRead) {
        noise::cpu::philox_block(t.stream, tile * kTileCounters, 0, kTileCounters, w[0], w[1], w[2], w[3]);
        noise::cpu::tile_normals(w[0], w[1], w[2], w[3], z);
      }
      const auto tile_words = [&](uint32_t round, uint32_t* words) {
        noise::cpu::philox_block(t.stream, tile * kTileCounters, round, kTileCounters, words, words + kTileCounters,
                                 words + 2 * kTileCounters, words + 3 * kTileCounters);
      };
      if (comp & kTukeyRead) tile_words(kTukeyRound, tukey_words);
      if (comp & kQuantization) tile_words(kQuantRound, quant_words);
      for (int64_t s = 0; s < segment_count; ++s) {
        const Segment<acc_t>& g = segments[s];
        const acc_t* p = params + g.n * kParams;
        signal_pass(x + tile_begin + g.begin, p[kScale], p[kGain], g.end - g.begin, shot + g.begin, rate + g.begin);
      }
      if (comp & kShot) {
        noise::cpu::poisson_counts(t.stream, tile_begin, rate, size, count);
        for (int64_t s = 0; s < segment_count; ++s) {
          const Segment<acc_t>& g = segments[s];
          shot_pass(count + g.begin, params[g.n * kParams + kGain], g.end - g.begin, shot + g.begin);
        }
      }
      for (int64_t s = 0; s < segment_count; ++s) {
        const Segment<acc_t>& g = segments[s];
        const acc_t* p = params + g.n * kParams;
        const int64_t len = g.end - g.begin;
        if (comp & kTukeyRead) tukey_pass(tukey_words + g.begin, p[kReadScale], p[kReadShape], len, read + g.begin);
        if (comp & kGaussianRead) scaled_pass(z + g.begin, p[kReadScale], len, read + g.begin);
        if (comp & kQuantization) quant_pass(quant_words + g.begin, p[kQuantStep], len, quant + g.begin);
        const acc_t b = (comp & kColorBias) ? bias[g.n * t.c + g.c] : acc_t(0);
        output_pass(shot + g.begin, read + g.begin, g.row, quant + g.begin, b, p[kScale], len, t.has_min,
                    static_cast<acc_t>(t.clip_min), t.has_max, static_cast<acc_t>(t.clip_max),
                    out + tile_begin + g.begin);
      }
    }
  });
}

Tensor physical_noise_cpu(const Tensor& x, const Tensor& params, const Tensor& bias,
                              IntArrayRef row_phase, int64_t seed, int64_t offset, int64_t components,
                              std::optional<double> clip_min, std::optional<double> clip_max) {
  const PhysicalTensors t = prepare_physical(x, params, bias, row_phase, seed, offset, components, clip_min, clip_max);
  if (t.x.numel() == 0) return t.out;
  CF_DISPATCH_FLOATING(t.x.scalar_type(), "physical_noise_cpu",
                                  [&] { physical_cpu_typed<scalar_t>(t); });
  return t.out;
}

}  // namespace
}  // namespace physical_noise
}  // namespace cycleisp_fast

STABLE_TORCH_LIBRARY_IMPL(cycleisp_fast, CPU, m) {
  m.impl("physical_noise", TORCH_BOX(&cycleisp_fast::physical_noise::physical_noise_cpu));
}
