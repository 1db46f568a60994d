// CUDA kernels of the camera ops: one thread per site (mosaic) or output pixel (demosaic), running the same
// per-site math (camera_math.h) that the CPU kernels run and the CPU tests exercise.

#include "../camera.h"
#include "../camera_math.h"
#include "launch.cuh"

namespace cycleisp_fast {
namespace camera {
namespace {

template <typename scalar_t, typename acc_t>
__global__ void mosaic_kernel(const scalar_t* __restrict__ linear, const scalar_t* __restrict__ matrices,
                              const scalar_t* __restrict__ inverse_gains, scalar_t* __restrict__ packed, int64_t N,
                              int64_t H, int64_t W) {
  const int64_t total = N * H * W;
  for (int64_t i = grid_stride_begin(); i < total; i += grid_stride_step()) {
    const int64_t x = i % W, y = (i / W) % H, n = i / (H * W);
    acc_t m[9], gains[3];
    for (int k = 0; k < 9; ++k) m[k] = static_cast<acc_t>(matrices[n * 9 + k]);
    for (int k = 0; k < 3; ++k) gains[k] = static_cast<acc_t>(inverse_gains[n * 3 + k]);
    const scalar_t* r = linear + n * 3 * H * W + y * W + x;
    const int plane = static_cast<int>(((y & 1) << 1) | (x & 1));
    const acc_t value = mosaic_site<acc_t>(static_cast<acc_t>(r[0]), static_cast<acc_t>(r[H * W]),
                                           static_cast<acc_t>(r[2 * H * W]), m, gains, plane_colour(plane));
    packed[n * H * W + plane * (H / 2) * (W / 2) + (y >> 1) * (W / 2) + (x >> 1)] = static_cast<scalar_t>(value);
  }
}

template <typename scalar_t, typename acc_t>
__global__ void demosaic_kernel(const scalar_t* __restrict__ packed, const scalar_t* __restrict__ plane_gains,
                                const scalar_t* __restrict__ matrices, scalar_t* __restrict__ out, int64_t N,
                                int64_t H, int64_t W) {
  const int64_t total = N * H * W;
  for (int64_t i = grid_stride_begin(); i < total; i += grid_stride_step()) {
    const int64_t x = i % W, y = (i / W) % H, n = i / (H * W);
    acc_t m[9], gains[4], rgb[3];
    for (int k = 0; k < 9; ++k) m[k] = static_cast<acc_t>(matrices[n * 9 + k]);
    for (int k = 0; k < 4; ++k) gains[k] = static_cast<acc_t>(plane_gains[n * 4 + k]);
    demosaic_site<acc_t>(packed + n * H * W, gains, m, H, W, y, x, rgb);
    for (int c = 0; c < 3; ++c) out[(n * 3 + c) * H * W + y * W + x] = static_cast<scalar_t>(rgb[c]);
  }
}

template <bool kMosaic>
Tensor run(CameraPlan plan) {
  if (plan.dst.numel() == 0) return plan.dst;
  const auto config = elementwise_launch_config(plan.N * plan.H * plan.W);
  const cudaStream_t stream = current_cuda_stream();
  CF_DISPATCH_FLOATING(plan.src.scalar_type(), "camera_cuda", [&] {
    using acc_t = opmath_t<scalar_t>;
    if (kMosaic) {
      mosaic_kernel<scalar_t, acc_t><<<config.blocks, config.threads, 0, stream>>>(
          plan.src.const_data_ptr<scalar_t>(), plan.matrix.const_data_ptr<scalar_t>(),
          plan.gains.const_data_ptr<scalar_t>(), plan.dst.mutable_data_ptr<scalar_t>(), plan.N, plan.H, plan.W);
    } else {
      demosaic_kernel<scalar_t, acc_t><<<config.blocks, config.threads, 0, stream>>>(
          plan.src.const_data_ptr<scalar_t>(), plan.gains.const_data_ptr<scalar_t>(),
          plan.matrix.const_data_ptr<scalar_t>(), plan.dst.mutable_data_ptr<scalar_t>(), plan.N, plan.H, plan.W);
    }
    CF_CUDA_LAUNCH_CHECK();
  });
  return plan.dst;
}

Tensor camera_mosaic_cuda(const Tensor& linear, const Tensor& rgb2cam, const Tensor& gains) {
  const CudaDeviceGuard guard(linear);
  return run<true>(plan_mosaic(linear, rgb2cam, gains));
}

Tensor camera_demosaic_cuda(const Tensor& packed, const Tensor& gains, const Tensor& cam2rgb) {
  const CudaDeviceGuard guard(packed);
  return run<false>(plan_demosaic(packed, gains, cam2rgb));
}

}  // namespace
}  // namespace camera
}  // namespace cycleisp_fast

STABLE_TORCH_LIBRARY_IMPL(cycleisp_fast, CUDA, m) {
  m.impl("camera_mosaic", TORCH_BOX(&cycleisp_fast::camera::camera_mosaic_cuda));
  m.impl("camera_demosaic", TORCH_BOX(&cycleisp_fast::camera::camera_demosaic_cuda));
}
