// Launch configuration and grid-stride helpers shared by every CUDA kernel of the package.
#pragma once

#include <ATen/cuda/CUDAContext.h>

#include <algorithm>
#include <cstdint>

namespace cycleisp_fast {

struct LaunchConfig {
  unsigned int blocks;
  unsigned int threads;
};

// A 1-D grid-stride launch over `total` work items: 256 threads, at most 32 resident blocks per SM.
inline LaunchConfig elementwise_launch_config(int64_t total) {
  constexpr int64_t threads = 256;
  const int64_t sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>((total + threads - 1) / threads, sms * 32));
  return {static_cast<unsigned int>(blocks), static_cast<unsigned int>(threads)};
}

__device__ __forceinline__ int64_t grid_stride_begin() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}

__device__ __forceinline__ int64_t grid_stride_step() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

}  // namespace cycleisp_fast
