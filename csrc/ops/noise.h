// Host-side checks of cycleisp_fast::noise_sample, shared by the CPU and CUDA kernels.
#pragma once

#include <optional>

#include "noise_math.h"
#include "stable.h"

namespace cycleisp_fast {
namespace noise {

// The checked, contiguous inputs of noise_sample and its allocated output (like x, contiguous).
struct SampleTensors {
  Tensor x, shot, read, out;
  int64_t plane_size;  // elements per (shot, read) pair; element i uses pair i / plane_size
  Stream stream;
  Model model;
  bool has_min, has_max;
  double clip_min, clip_max;
};

SampleTensors prepare_sample(const Tensor& x, const Tensor& shot, const Tensor& read, int64_t seed,
                             int64_t offset, int64_t model, std::optional<double> clip_min,
                             std::optional<double> clip_max);

}  // namespace noise
}  // namespace cycleisp_fast
