// CUDA kernel of cycleisp_fast::noise_sample: one thread per Philox counter of the Gaussian stream, i.e.
// four elements (lane l of the four 256-element runs of a tile, so a warp's stores are coalesced), over
// the same per-element math (noise_math.h) that the CPU kernel runs and the CPU tests exercise.

#include <optional>
#include <type_traits>

#include "../noise.h"
#include "launch.cuh"

namespace cycleisp_fast {
namespace noise {
namespace {

template <typename acc_t>
struct Params {
  const acc_t* shot;
  const acc_t* read;
  int64_t plane_size;
  Stream stream;
  bool has_min, has_max;
  acc_t clip_min, clip_max;
};

template <Model kModel, typename scalar_t, typename acc_t>
__global__ void noise_sample_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ out, int64_t numel,
                                    Params<acc_t> p) {
  const int64_t counters = (numel + kTile - 1) / kTile * kTileCounters;
  for (int64_t j = grid_stride_begin(); j < counters; j += grid_stride_step()) {
    const Words words = p.stream.draw(j, 0);
    const auto first = box_muller(words.w[0], words.w[1], acc_t(0));
    const auto second = box_muller(words.w[2], words.w[3], acc_t(0));
    const int64_t base = (j / kTileCounters) * kTile + j % kTileCounters;
    // Element of word w: base + 256 w (named one by one, so that nothing is indexed at run time).
    const auto emit = [&](int word, acc_t z) {
      const int64_t i = base + word * kTileCounters;
      if (i >= numel) return;
      const int64_t plane = i / p.plane_size;
      const acc_t xi = static_cast<acc_t>(x[i]);
      acc_t y{};
      if constexpr (kModel == Model::kHeteroscedasticGaussian) {
        y = heteroscedastic_gaussian(xi, p.shot[plane], p.read[plane], z);
      } else if constexpr (kModel == Model::kHeteroscedasticSensitivity) {
        out[i] = static_cast<scalar_t>(heteroscedastic_sensitivity(xi, p.shot[plane], p.read[plane], z));
        return;
      } else {
        y = poisson_gaussian(p.stream, i, p.stream.draw(i, 1), xi, p.shot[plane], p.read[plane], z);
      }
      out[i] = static_cast<scalar_t>(clip(y, p.has_min, p.clip_min, p.has_max, p.clip_max));
    };
    emit(0, first.first);
    emit(1, first.second);
    emit(2, second.first);
    emit(3, second.second);
  }
}

Tensor noise_sample_cuda(const Tensor& x, const Tensor& shot, const Tensor& read, int64_t seed,
                             int64_t offset, int64_t model, std::optional<double> clip_min,
                             std::optional<double> clip_max) {
  const CudaDeviceGuard guard(x);
  const SampleTensors t = prepare_sample(x, shot, read, seed, offset, model, clip_min, clip_max);
  const int64_t numel = t.x.numel();
  if (numel == 0) return t.out;
  const cudaStream_t stream = current_cuda_stream();
  const LaunchConfig config = elementwise_launch_config((numel + kTile - 1) / kTile * kTileCounters);
  CF_DISPATCH_FLOATING(t.x.scalar_type(), "noise_sample_cuda", [&] {
    using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    const Params<acc_t> p{t.shot.const_data_ptr<acc_t>(), t.read.const_data_ptr<acc_t>(), t.plane_size, t.stream,
                          t.has_min, t.has_max, static_cast<acc_t>(t.clip_min), static_cast<acc_t>(t.clip_max)};
    const scalar_t* in = t.x.const_data_ptr<scalar_t>();
    scalar_t* out = t.out.mutable_data_ptr<scalar_t>();
    if (t.model == Model::kHeteroscedasticGaussian) {
      noise_sample_kernel<Model::kHeteroscedasticGaussian>
          <<<config.blocks, config.threads, 0, stream>>>(in, out, numel, p);
    } else if (t.model == Model::kHeteroscedasticSensitivity) {
      noise_sample_kernel<Model::kHeteroscedasticSensitivity>
          <<<config.blocks, config.threads, 0, stream>>>(in, out, numel, p);
    } else {
      noise_sample_kernel<Model::kPoissonGaussian><<<config.blocks, config.threads, 0, stream>>>(in, out, numel, p);
    }
    CF_CUDA_LAUNCH_CHECK();
  });
  return t.out;
}

}  // namespace
}  // namespace noise
}  // namespace cycleisp_fast

STABLE_TORCH_LIBRARY_IMPL(cycleisp_fast, CUDA, m) { m.impl("noise_sample", TORCH_BOX(&cycleisp_fast::noise::noise_sample_cuda)); }
