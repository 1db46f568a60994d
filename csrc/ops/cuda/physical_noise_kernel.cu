// CUDA kernel of cycleisp_fast::physical_noise: one thread per Philox counter of the Gaussian stream, i.e. four
// elements (lane l of the four 256-element runs of a tile, so a warp's stores are coalesced), over the
// per-element math of physical_noise_math.h that the CPU kernel runs and the CPU tests exercise. Each element
// draws its own uniform words and its row's normal (one Philox call each).

#include <optional>
#include <type_traits>

#include "../physical_noise.h"
#include "launch.cuh"

namespace cycleisp_fast {
namespace physical_noise {
namespace {

using noise::kTile;
using noise::kTileCounters;

template <typename acc_t>
struct Args {
  const acc_t* params;
  const acc_t* bias;
  int64_t c, h, w, rows;
  int64_t row_phase[8];
  bool packed_rows;
  Stream stream;
  int64_t components;
  bool has_min, has_max;
  acc_t clip_min, clip_max;
};

template <typename scalar_t, typename acc_t>
__device__ __forceinline__ void physical_element(const scalar_t* __restrict__ x, scalar_t* __restrict__ out,
                                                 int64_t i, acc_t z, const Args<acc_t>& a) {
  const int64_t row_global = i / a.w;  // (n C + c) H + h
  const int64_t h = row_global % a.h, plane = row_global / a.h;
  const int64_t n = plane / a.c, c = plane % a.c;
  const acc_t* p = a.params + n * kParams;
  const acc_t scale = p[kScale], gain = p[kGain];
  acc_t shot = scale * static_cast<acc_t>(x[i]);
  if ((a.components & kShot) && !shot_degenerate(shot, gain)) {
    const double count = noise::poisson_draw(a.stream, i, poisson_rate(shot, gain), a.stream.draw(i, 1));
    shot = shot_from_count(shot, gain, count);
  }
  acc_t read = 0, quant = 0, row = 0, bias = 0;
  if (a.components & kTukeyRead) {
    read = p[kReadScale] * tukey_lambda_quantile(tile_word_at(a.stream, i, kTukeyRound), p[kReadShape]);
  }
  if (a.components & kQuantization) {
    quant = p[kQuantStep] * centred_uniform(tile_word_at(a.stream, i, kQuantRound), acc_t(0));
  }
  if (a.components & kGaussianRead) read = p[kReadScale] * z;
  if (a.components & kRow) {
    const int64_t r = a.packed_rows ? 2 * h + a.row_phase[c] : h;
    row = p[kRowScale] * row_normal<acc_t>(a.stream, n * a.rows + r);
  }
  if (a.components & kColorBias) bias = a.bias[n * a.c + c];
  const acc_t y = combine(shot, read, row, quant, bias, scale);
  out[i] = static_cast<scalar_t>(noise::clip(y, a.has_min, a.clip_min, a.has_max, a.clip_max));
}

template <typename scalar_t, typename acc_t>
__global__ void physical_noise_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ out, int64_t numel,
                                      Args<acc_t> a) {
  const int64_t counters = (numel + kTile - 1) / kTile * kTileCounters;
  for (int64_t j = grid_stride_begin(); j < counters; j += grid_stride_step()) {
    acc_t z[4] = {0, 0, 0, 0};
    if (a.components & kGaussianRead) {
      const Words words = a.stream.draw(j, 0);
      const auto first = noise::box_muller(words.w[0], words.w[1], acc_t(0));
      const auto second = noise::box_muller(words.w[2], words.w[3], acc_t(0));
      z[0] = first.first;
      z[1] = first.second;
      z[2] = second.first;
      z[3] = second.second;
    }
    const int64_t base = (j / kTileCounters) * kTile + j % kTileCounters;
#pragma unroll
    for (int word = 0; word < 4; ++word) {
      const int64_t i = base + word * kTileCounters;
      if (i < numel) physical_element(x, out, i, z[word], a);
    }
  }
}

Tensor physical_noise_cuda(const Tensor& x, const Tensor& params, const Tensor& bias,
                               IntArrayRef row_phase, int64_t seed, int64_t offset, int64_t components,
                               std::optional<double> clip_min, std::optional<double> clip_max) {
  const CudaDeviceGuard guard(x);
  const PhysicalTensors t = prepare_physical(x, params, bias, row_phase, seed, offset, components, clip_min, clip_max);
  const int64_t numel = t.x.numel();
  if (numel == 0) return t.out;
  const cudaStream_t stream = current_cuda_stream();
  const LaunchConfig config = elementwise_launch_config((numel + kTile - 1) / kTile * kTileCounters);
  CF_DISPATCH_FLOATING(t.x.scalar_type(), "physical_noise_cuda", [&] {
    using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    Args<acc_t> a{t.params.const_data_ptr<acc_t>(), t.bias.const_data_ptr<acc_t>(), t.c, t.h, t.w, t.rows, {},
                  t.packed_rows, t.stream, t.components, t.has_min, t.has_max, static_cast<acc_t>(t.clip_min),
                  static_cast<acc_t>(t.clip_max)};
    for (int k = 0; k < 8; ++k) a.row_phase[k] = t.row_phase[k];
    physical_noise_kernel<scalar_t, acc_t><<<config.blocks, config.threads, 0, stream>>>(
        t.x.const_data_ptr<scalar_t>(), t.out.mutable_data_ptr<scalar_t>(), numel, a);
    CF_CUDA_LAUNCH_CHECK();
  });
  return t.out;
}

}  // namespace
}  // namespace physical_noise
}  // namespace cycleisp_fast

STABLE_TORCH_LIBRARY_IMPL(cycleisp_fast, CUDA, m) {
  m.impl("physical_noise", TORCH_BOX(&cycleisp_fast::physical_noise::physical_noise_cuda));
}
