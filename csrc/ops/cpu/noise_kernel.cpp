// CPU kernel of cycleisp_fast::noise_sample: one task per run of 1024-element tiles. Per tile, the Philox
// words and the Box-Muller normals are computed in branch-free loops that the compiler vectorises; the
// Poisson-Gaussian model then computes every element's first PTRS attempt in a vectorised float64 pass,
// and only the elements it does not accept (small rates, rejected squeezes) take the scalar path of
// noise_math.h, which restarts from the same words and so gives the same draws as the CUDA kernel.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <type_traits>

#include "../noise.h"
#include "vectorize.h"

namespace cycleisp_fast {
namespace noise {
namespace {

struct WordBlock {
  uint32_t* __restrict__ w[4];
};

// The Philox words of counters first .. first + count - 1 at `round`, word-major.
CYCLEISP_CPU_CLONES_AVX512 void philox_block(Stream stream, int64_t first, uint32_t round, int64_t count,
                                      uint32_t* __restrict__ w0, uint32_t* __restrict__ w1,
                                      uint32_t* __restrict__ w2, uint32_t* __restrict__ w3) {
  for (int64_t l = 0; l < count; ++l) {
    const Words r = stream.draw(first + l, round);
    w0[l] = r.w[0];
    w1[l] = r.w[1];
    w2[l] = r.w[2];
    w3[l] = r.w[3];
  }
}

// The 1024 standard normals of one tile of the Gaussian stream, z[word * 256 + lane].
template <typename acc_t>
CYCLEISP_CPU_CLONES_AVX512 void tile_normals(const uint32_t* __restrict__ w0, const uint32_t* __restrict__ w1,
                                      const uint32_t* __restrict__ w2, const uint32_t* __restrict__ w3,
                                      acc_t* __restrict__ z) {
  for (int64_t l = 0; l < kTileCounters; ++l) {
    const auto a = box_muller(w0[l], w1[l], acc_t(0));
    const auto b = box_muller(w2[l], w3[l], acc_t(0));
    z[l] = a.first;
    z[kTileCounters + l] = a.second;
    z[2 * kTileCounters + l] = b.first;
    z[3 * kTileCounters + l] = b.second;
  }
}

template <typename acc_t>
struct Plane {
  acc_t shot, read;
  bool has_min, has_max;
  acc_t clip_min, clip_max;
};

template <typename scalar_t, typename acc_t>
CYCLEISP_CPU_CLONES_AVX512 void heteroscedastic_run(const scalar_t* __restrict__ x, const acc_t* __restrict__ z,
                                                    scalar_t* __restrict__ out, int64_t n, Plane<acc_t> p) {
  for (int64_t i = 0; i < n; ++i) {
    const acc_t y = heteroscedastic_gaussian<acc_t>(static_cast<acc_t>(x[i]), p.shot, p.read, z[i]);
    out[i] = static_cast<scalar_t>(clip(y, p.has_min, p.clip_min, p.has_max, p.clip_max));
  }
}

template <typename scalar_t, typename acc_t>
CYCLEISP_CPU_CLONES_AVX512 void sensitivity_run(const scalar_t* __restrict__ x, const acc_t* __restrict__ z,
                                                scalar_t* __restrict__ out, int64_t n, Plane<acc_t> p) {
  for (int64_t i = 0; i < n; ++i) {
    out[i] = static_cast<scalar_t>(heteroscedastic_sensitivity<acc_t>(static_cast<acc_t>(x[i]), p.shot, p.read, z[i]));
  }
}

// The Poisson rates of a run, in float64.
template <typename scalar_t, typename acc_t>
CYCLEISP_CPU_CLONES_AVX512 void poisson_rates(const scalar_t* __restrict__ x, acc_t shot, int64_t n, double* __restrict__ rate) {
  for (int64_t i = 0; i < n; ++i) rate[i] = poisson_rate(static_cast<acc_t>(x[i]), shot);
}

CYCLEISP_HOST_DEVICE bool in_ptrs_range(double rate) { return (rate >= kInversionLimit) & (rate < INFINITY); }

// The candidates k of one PTRS attempt of every element from the words (wu, wv), with us (see
// ptrs_candidate), and squeezed[i] where the squeeze accepts k at a rate PTRS handles. Lanes outside PTRS's
// range compute on a stand-in rate. `flatten` inlines the math, which GCC's size heuristics would otherwise
// call (and so not vectorise).
CYCLEISP_CPU_CLONES_AVX512 __attribute__((flatten)) void ptrs_candidates(const double* __restrict__ rate,
                                                                  const uint32_t* __restrict__ wu,
                                                                  const uint32_t* __restrict__ wv, int64_t n,
                                                                  double* __restrict__ k, double* __restrict__ us,
                                                                  uint8_t* __restrict__ squeezed) {
  for (int64_t i = 0; i < n; ++i) {
    const bool ptrs = in_ptrs_range(rate[i]);
    const PtrsSetup s = ptrs_setup(ptrs ? rate[i] : kInversionLimit);
    k[i] = ptrs_candidate(s, uniform_open(wu[i], 0.0), &us[i]);
    squeezed[i] = ptrs & ptrs_squeeze(s, us[i], uniform_open(wv[i], 0.0));
  }
}

// The full acceptance test of candidates (k, us) with their second words wv, at rates PTRS handles.
CYCLEISP_CPU_CLONES_AVX512 __attribute__((flatten)) void ptrs_tests(const double* __restrict__ rate,
                                                             const double* __restrict__ k,
                                                             const double* __restrict__ us,
                                                             const uint32_t* __restrict__ wv, int64_t n,
                                                             uint8_t* __restrict__ accepted) {
  for (int64_t i = 0; i < n; ++i) {
    accepted[i] = ptrs_accepts(ptrs_setup(rate[i]), k[i], us[i], uniform_open(wv[i], 0.0));
  }
}

// Elements of a run gathered for a vectorised pass over some of them.
struct Gathered {
  int64_t size = 0;
  int64_t index[kTile];
  double rate[kTile], k[kTile], us[kTile];
  uint32_t wu[kTile], wv[kTile];
  uint8_t accepted[kTile];

  // Appends element i when `keep`, without a branch (the slot is overwritten otherwise): the conditions are
  // random, so a branch would be mispredicted about as often as it is taken.
  void push_if(bool keep, int64_t i, double r, uint32_t u_word, uint32_t v_word, double candidate = 0.0,
               double u_s = 0.0) {
    index[size] = i;
    rate[size] = r;
    wu[size] = u_word;
    wv[size] = v_word;
    k[size] = candidate;
    us[size] = u_s;
    size += keep;
  }
};

template <typename scalar_t, typename acc_t>
CYCLEISP_CPU_CLONES_AVX512 void poisson_gaussian_outputs(const scalar_t* __restrict__ x, const acc_t* __restrict__ z,
                                                  const double* __restrict__ count, scalar_t* __restrict__ out,
                                                  int64_t n, Plane<acc_t> p) {
  for (int64_t i = 0; i < n; ++i) {
    const acc_t y = poisson_gaussian_from_count(static_cast<acc_t>(x[i]), p.shot, p.read, z[i], count[i]);
    out[i] = static_cast<scalar_t>(clip(y, p.has_min, p.clip_min, p.has_max, p.clip_max));
  }
}

// A run of the Poisson-Gaussian model. Vectorised passes take PTRS's first attempt up to its squeeze for every
// element, its full test for those the squeeze leaves, and its second attempt for those rejected (each pass
// over the gathered elements only); the scalar algorithm of noise_math.h takes the rest (small rates, two
// rejections). Every element gets the draw the scalar algorithm alone would give it.
template <typename scalar_t, typename acc_t>
void poisson_gaussian_run(const Stream& stream, int64_t first, const scalar_t* x, const acc_t* z, scalar_t* out,
                          int64_t n, Plane<acc_t> p) {
  uint32_t w[4][kTile];
  double rate[kTile], count[kTile], us[kTile];
  uint8_t done[kTile];  // accepted by attempt 0's squeeze
  philox_block(stream, first, 1, n, w[0], w[1], w[2], w[3]);
  poisson_rates(x, p.shot, n, rate);
  ptrs_candidates(rate, w[0], w[1], n, count, us, done);  // attempt 0: words 0, 1 of round 1
  Gathered tested;  // attempt 0 past the squeeze
  int64_t outside[kTile];  // rates outside PTRS's range: small (inversion), 0, negative, NaN or infinite
  int64_t outside_size = 0;
  for (int64_t i = 0; i < n; ++i) {
    const bool ptrs = in_ptrs_range(rate[i]);
    tested.push_if(!done[i] & ptrs, i, rate[i], w[0][i], w[1][i], count[i], us[i]);
    outside[outside_size] = i;
    outside_size += !ptrs;
  }
  ptrs_tests(tested.rate, tested.k, tested.us, tested.wv, tested.size, tested.accepted);
  Gathered second;  // attempt 1: words 2, 3 of round 1
  for (int64_t j = 0; j < tested.size; ++j) {
    second.push_if(!tested.accepted[j], tested.index[j], tested.rate[j], w[2][tested.index[j]],
                   w[3][tested.index[j]]);
  }
  ptrs_candidates(second.rate, second.wu, second.wv, second.size, second.k, second.us, second.accepted);
  ptrs_tests(second.rate, second.k, second.us, second.wv, second.size, second.accepted);
  for (int64_t j = 0; j < second.size; ++j) {
    const int64_t i = second.index[j];
    count[i] = second.accepted[j]
                   ? second.k[j]
                   : poisson_ptrs(stream, first + i, ptrs_setup(rate[i]), 2, stream.draw(first + i, 2));
  }
  for (int64_t j = 0; j < outside_size; ++j) {  // (where the model is degenerate, the count is unused)
    const int64_t i = outside[j];
    const Words words = {{w[0][i], w[1][i], w[2][i], w[3][i]}};
    count[i] = poisson_draw(stream, first + i, rate[i], words);
  }
  poisson_gaussian_outputs(x, z, count, out, n, p);
}

template <typename scalar_t>
void sample_cpu_typed(const SampleTensors& t) {
  using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
  const scalar_t* x = t.x.const_data_ptr<scalar_t>();
  scalar_t* out = t.out.mutable_data_ptr<scalar_t>();
  const acc_t* shot = t.shot.const_data_ptr<acc_t>();
  const acc_t* read = t.read.const_data_ptr<acc_t>();
  const int64_t numel = t.x.numel();
  const int64_t tiles = (numel + kTile - 1) / kTile;
  at::parallel_for(0, tiles, 16, [&](int64_t begin, int64_t end) {
    uint32_t w[4][kTileCounters];
    acc_t z[kTile];
    for (int64_t tile = begin; tile < end; ++tile) {
      philox_block(t.stream, tile * kTileCounters, 0, kTileCounters, w[0], w[1], w[2], w[3]);
      tile_normals(w[0], w[1], w[2], w[3], z);
      const int64_t tile_begin = tile * kTile;
      const int64_t tile_end = std::min(numel, tile_begin + kTile);
      for (int64_t i = tile_begin; i < tile_end;) {  // one run per (shot, read) plane inside the tile
        const int64_t plane = i / t.plane_size;
        const int64_t run_end = std::min(tile_end, (plane + 1) * t.plane_size);
        const Plane<acc_t> p{shot[plane], read[plane], t.has_min, t.has_max, static_cast<acc_t>(t.clip_min),
                             static_cast<acc_t>(t.clip_max)};
        if (t.model == Model::kHeteroscedasticGaussian) {
          heteroscedastic_run(x + i, z + (i - tile_begin), out + i, run_end - i, p);
        } else if (t.model == Model::kHeteroscedasticSensitivity) {
          sensitivity_run(x + i, z + (i - tile_begin), out + i, run_end - i, p);
        } else {
          poisson_gaussian_run(t.stream, i, x + i, z + (i - tile_begin), out + i, run_end - i, p);
        }
        i = run_end;
      }
    }
  });
}

at::Tensor noise_sample_cpu(const at::Tensor& x, const at::Tensor& shot, const at::Tensor& read, int64_t seed,
                            int64_t offset, int64_t model, std::optional<double> clip_min,
                            std::optional<double> clip_max) {
  const SampleTensors t = prepare_sample(x, shot, read, seed, offset, model, clip_min, clip_max);
  if (t.x.numel() == 0) return t.out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, t.x.scalar_type(), "noise_sample_cpu",
                                  [&] { sample_cpu_typed<scalar_t>(t); });
  return t.out;
}

}  // namespace
}  // namespace noise
}  // namespace cycleisp_fast

TORCH_LIBRARY_IMPL(cycleisp_fast, CPU, m) { m.impl("noise_sample", &cycleisp_fast::noise::noise_sample_cpu); }
