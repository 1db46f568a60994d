// Launch configuration and grid-stride helpers shared by every CUDA kernel of the package.
#pragma once

#include <cuda_runtime.h>
#include <torch/csrc/inductor/aoti_torch/c/shim.h>
#include <torch/csrc/stable/accelerator.h>
#include <torch/csrc/stable/macros.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

#include "../stable.h"

#ifndef USE_CUDA
#error "compile the CUDA sources with -DUSE_CUDA (csrc/build_flags.txt), which declares the stable CUDA stream shim"
#endif

// Raises a RuntimeError naming the CUDA error if the last launch failed.
#define CF_CUDA_LAUNCH_CHECK() STD_CUDA_KERNEL_LAUNCH_CHECK()

namespace cycleisp_fast {

// Makes a CUDA tensor's device the current one for the guard's lifetime (allocations and launches go there).
class CudaDeviceGuard {
 public:
  explicit CudaDeviceGuard(const Tensor& t) : guard_(t.get_device_index()) {}

 private:
  torch::stable::accelerator::DeviceGuard guard_;
};

// torch's current CUDA stream of the current device.
inline cudaStream_t current_cuda_stream() {
  int device = 0;
  STD_CUDA_CHECK(cudaGetDevice(&device));
  void* stream = nullptr;
  STABLE_TORCH_ERROR_CODE_CHECK(aoti_torch_get_current_cuda_stream(device, &stream));
  return static_cast<cudaStream_t>(stream);
}

// The number of multiprocessors of the current device (asked once per device).
inline int64_t sm_count() {
  constexpr int kMaxDevices = 64;
  static std::atomic<int> cached[kMaxDevices] = {};
  int device = 0;
  STD_CUDA_CHECK(cudaGetDevice(&device));
  int sms = device < kMaxDevices ? cached[device].load(std::memory_order_relaxed) : 0;
  if (sms == 0) {
    STD_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    if (device < kMaxDevices) cached[device].store(sms, std::memory_order_relaxed);
  }
  return sms;
}

struct LaunchConfig {
  unsigned int blocks;
  unsigned int threads;
};

// A 1-D grid-stride launch over `total` work items: 256 threads, at most 32 resident blocks per SM.
inline LaunchConfig elementwise_launch_config(int64_t total) {
  constexpr int64_t threads = 256;
  const int64_t sms = sm_count();
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>((total + threads - 1) / threads, sms * 32));
  return {static_cast<unsigned int>(blocks), static_cast<unsigned int>(threads)};
}

__device__ __forceinline__ int64_t grid_stride_begin() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}

__device__ __forceinline__ int64_t grid_stride_step() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

}  // namespace cycleisp_fast
