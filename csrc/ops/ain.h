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

// The checked, contiguous inputs of ain_forward and its allocated outputs (out like x; mean, rstd (N, C) in
// float32, float64 for float64 input).
struct ForwardTensors {
  PlaneShape shape;
  at::Tensor x, gamma, beta;
  at::Tensor out, mean, rstd;
};
ForwardTensors prepare_forward(const at::Tensor& x, const at::Tensor& gamma, const at::Tensor& beta);

// The checked, contiguous inputs of ain_backward and its allocated outputs (each like x).
struct BackwardTensors {
  PlaneShape shape;
  at::Tensor grad, x, gamma, beta, mean, rstd;
  at::Tensor grad_x, grad_gamma, grad_beta;
};
BackwardTensors prepare_backward(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& gamma,
                                 const at::Tensor& beta, const at::Tensor& mean, const at::Tensor& rstd);

}  // namespace ain
}  // namespace cycleisp_fast
