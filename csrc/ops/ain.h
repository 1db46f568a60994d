// Host-side checks of cycleisp_fast::ain_forward / ain_backward, shared by the CPU and CUDA kernels.
#pragma once

#include "ain_math.h"
#include "stable.h"

namespace cycleisp_fast {
namespace ain {

struct PlaneShape {
  int64_t planes;      // N * C
  int64_t plane_size;  // H * W
  int64_t chunks;      // chunks per plane
};

// The checked inputs of ain_forward, dense in one layout, and its allocated outputs (out like x; mean, rstd (N, C)
// in float32, float64 for float64 input). The layout is NCHW, or channels_last where the kernel reads it
// (allow_channels_last: the CPU kernel) and prefers_channels_last(x) (cycleisp_fast/ops/ain.py's fake kernel
// applies the same rule).
struct ForwardTensors {
  PlaneShape shape;
  bool channels_last;
  Tensor x, gamma, beta;
  Tensor out, mean, rstd;
};
ForwardTensors prepare_forward(const Tensor& x, const Tensor& gamma, const Tensor& beta, bool allow_channels_last);

// The checked inputs of ain_backward, dense in one layout (as prepare_forward decides it), and its allocated
// outputs (each like x). `gate` is beta, or with gate_is_output the forward's output (checked: then the slope,
// if any, must be >= 0).
struct BackwardTensors {
  PlaneShape shape;
  bool channels_last, gate_is_output;
  Tensor grad, x, gamma, gate, mean, rstd;
  Tensor grad_x, grad_gamma, grad_beta;
};
BackwardTensors prepare_backward(const Tensor& grad, const Tensor& x, const Tensor& gamma, const Tensor& gate,
                                 const Tensor& mean, const Tensor& rstd, std::optional<double> negative_slope,
                                 bool gate_is_output, bool allow_channels_last);

}  // namespace ain
}  // namespace cycleisp_fast
