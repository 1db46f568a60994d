// Host-side checks of cycleisp_fast::physical_noise, shared by the CPU and CUDA kernels.
#pragma once

#include <optional>

#include "physical_noise_math.h"
#include "stable.h"

namespace cycleisp_fast {
namespace physical_noise {

// The checked, contiguous inputs of physical_noise and its allocated output (like x, contiguous).
struct PhysicalTensors {
  Tensor x, params, bias, out;
  int64_t n, c, h, w;
  int64_t rows;          // sensor rows per image: h, or 2 h with row phases
  int64_t row_phase[8];  // per channel (with row phases), else unused
  bool packed_rows;
  Stream stream;
  int64_t components;
  bool has_min, has_max;
  double clip_min, clip_max;
};

PhysicalTensors prepare_physical(const Tensor& x, const Tensor& params, const Tensor& bias,
                                 IntArrayRef row_phase, int64_t seed, int64_t offset, int64_t components,
                                 std::optional<double> clip_min, std::optional<double> clip_max);

}  // namespace physical_noise
}  // namespace cycleisp_fast
