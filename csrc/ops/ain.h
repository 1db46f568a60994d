// Host-side checks of cycleisp_fast::ain_forward / ain_backward, shared by the CPU and CUDA kernels.
#pragma once

#include <ATen/core/Tensor.h>

#include "ain_math.h"

namespace cycleisp_fast {
namespace ain {

struct PlaneShape {
  int64_t planes;      // N * C
  int64_t plane_size;  // H * W
  int64_t chunks;      // chunks per plane
};

// Checks that x, gamma, beta (and grad_out, when defined) are 4-D floating tensors of one shape, dtype and
// device; returns the plane decomposition.
PlaneShape check_inputs(const char* op, const at::Tensor& x, const at::Tensor& gamma, const at::Tensor& beta,
                        const at::Tensor& grad_out = at::Tensor());

// Checks the saved statistics handed to ain_backward: N*C values each, of stats_dtype(x).
void check_stats(const char* op, const at::Tensor& mean, const at::Tensor& rstd, const at::Tensor& x,
                 const PlaneShape& shape);

// The dtype of the statistics (mean, rstd): float64 for float64 input, else float32.
at::ScalarType stats_dtype(at::ScalarType input);

}  // namespace ain
}  // namespace cycleisp_fast
