// CUDA kernel of cycleisp_fast::bayer_remap: one thread per (row, block column), running the same
// per-element math (bayer_math.h) that the CPU kernel runs and the CPU tests exercise.

#include "../bayer.h"
#include "launch.cuh"

namespace cycleisp_fast {
namespace bayer {
namespace {

template <typename acc_t>
struct Levels {
  acc_t black[4];
  acc_t white[4];
};

template <Layout S, Layout D, bool kLevels, typename in_t, typename out_t, typename acc_t>
__global__ void bayer_remap_kernel(const in_t* __restrict__ src, out_t* __restrict__ dst, Levels<acc_t> levels,
                                   int64_t N, int64_t H, int64_t W, int red_site) {
  const int64_t block_columns = W >> 1;
  const int64_t total = N * H * block_columns;
  for (int64_t i = grid_stride_begin(); i < total; i += grid_stride_step()) {
    const int64_t bx = i % block_columns;
    const int64_t row = i / block_columns;
    const auto job = make_row_job<S, D>(src, dst, levels.black, levels.white, row / H, row % H, H, W, red_site);
    remap_block_column<S, D, kLevels>(job, bx);
  }
}

Tensor bayer_remap_cuda(const Tensor& src, std::string_view src_layout, std::string_view dst_layout,
                            std::string_view pattern, std::optional<DoubleArrayRef> black,
                            std::optional<DoubleArrayRef> white) {
  const CudaDeviceGuard guard(src);
  RemapPlan plan = plan_remap(src, src_layout, dst_layout, pattern, black, white);
  const int64_t total = plan.N * plan.H * (plan.W / 2);
  if (total == 0) return plan.dst;
  const cudaStream_t stream = current_cuda_stream();
  const LaunchConfig config = elementwise_launch_config(total);
  CYCLEISP_DISPATCH_BAYER_TYPES(plan.src.scalar_type(), "bayer_remap_cuda", [&] {
    using in_t = scalar_t;
    using out_t = remap_out_t<in_t>;
    using acc_t = opmath_t<out_t>;
    Levels<acc_t> levels;
    for (int c = 0; c < 4; ++c) {
      levels.black[c] = static_cast<acc_t>(plan.black[c]);
      levels.white[c] = static_cast<acc_t>(plan.white[c]);
    }
    const in_t* src_ptr = plan.src.const_data_ptr<in_t>();
    out_t* dst_ptr = plan.dst.mutable_data_ptr<out_t>();
    dispatch_layout_pair(plan.src_layout, plan.dst_layout, [&](auto s, auto d) {
      constexpr Layout S = decltype(s)::value;
      constexpr Layout D = decltype(d)::value;
      if (plan.has_levels) {
        bayer_remap_kernel<S, D, true, in_t, out_t, acc_t><<<config.blocks, config.threads, 0, stream>>>(
            src_ptr, dst_ptr, levels, plan.N, plan.H, plan.W, plan.red_site);
      } else {
        bayer_remap_kernel<S, D, false, in_t, out_t, acc_t><<<config.blocks, config.threads, 0, stream>>>(
            src_ptr, dst_ptr, levels, plan.N, plan.H, plan.W, plan.red_site);
      }
      CF_CUDA_LAUNCH_CHECK();
    });
  });
  return plan.dst;
}

}  // namespace
}  // namespace bayer
}  // namespace cycleisp_fast

STABLE_TORCH_LIBRARY_IMPL(cycleisp_fast, CUDA, m) { m.impl("bayer_remap", TORCH_BOX(&cycleisp_fast::bayer::bayer_remap_cuda)); }
