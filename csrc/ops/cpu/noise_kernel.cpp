// CPU kernel of cycleisp_fast::noise_sample: one task per run of 1024-element tiles. Per tile, the Philox
// words and the Box-Muller normals are computed in branch-free loops that the compiler vectorises; the
// Poisson-Gaussian model then computes every element's first PTRS attempt in a vectorised float64 pass,
// and only the elements it does not accept (small rates, rejected squeezes) take the scalar path of
// noise_math.h, which restarts from the same words and so gives the same draws as the CUDA kernel.
#include <algorithm>
#include <cstdint>
#include <optional>
#include <type_traits>

#include "../noise.h"
#include "noise_blocks.h"
#include "vectorize.h"

namespace cycleisp_fast {
namespace noise {
namespace {

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

template <typename scalar_t, typename acc_t>
CYCLEISP_CPU_CLONES_AVX512 void poisson_gaussian_outputs(const scalar_t* __restrict__ x, const acc_t* __restrict__ z,
                                                  const double* __restrict__ count, scalar_t* __restrict__ out,
                                                  int64_t n, Plane<acc_t> p) {
  for (int64_t i = 0; i < n; ++i) {
    const acc_t y = poisson_gaussian_from_count(static_cast<acc_t>(x[i]), p.shot, p.read, z[i], count[i]);
    out[i] = static_cast<scalar_t>(clip(y, p.has_min, p.clip_min, p.has_max, p.clip_max));
  }
}

// A run of the Poisson-Gaussian model: the counts of its rates, then the outputs.
template <typename scalar_t, typename acc_t>
void poisson_gaussian_run(const Stream& stream, int64_t first, const scalar_t* x, const acc_t* z, scalar_t* out,
                          int64_t n, Plane<acc_t> p) {
  double rate[kTile], count[kTile];
  poisson_rates(x, p.shot, n, rate);
  cpu::poisson_counts(stream, first, rate, n, count);
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
  parallel_for_dynamic(tiles, cpu::kTilesPerTask, [&](int64_t begin, int64_t end) {
    uint32_t w[4][kTileCounters];
    acc_t z[kTile];
    for (int64_t tile = begin; tile < end; ++tile) {
      cpu::philox_block(t.stream, tile * kTileCounters, 0, kTileCounters, w[0], w[1], w[2], w[3]);
      cpu::tile_normals(w[0], w[1], w[2], w[3], z);
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

Tensor noise_sample_cpu(const Tensor& x, const Tensor& shot, const Tensor& read, int64_t seed,
                            int64_t offset, int64_t model, std::optional<double> clip_min,
                            std::optional<double> clip_max) {
  const SampleTensors t = prepare_sample(x, shot, read, seed, offset, model, clip_min, clip_max);
  if (t.x.numel() == 0) return t.out;
  CF_DISPATCH_FLOATING(t.x.scalar_type(), "noise_sample_cpu", [&] { sample_cpu_typed<scalar_t>(t); });
  return t.out;
}

}  // namespace
}  // namespace noise
}  // namespace cycleisp_fast

STABLE_TORCH_LIBRARY_IMPL(cycleisp_fast, CPU, m) { m.impl("noise_sample", TORCH_BOX(&cycleisp_fast::noise::noise_sample_cpu)); }
