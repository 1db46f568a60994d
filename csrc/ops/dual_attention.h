// Host-side checks of cycleisp_fast::dual_attention_forward / dual_attention_backward, shared by the CPU
// and CUDA kernels.
#pragma once

#include "dual_attention_math.h"
#include "stable.h"

namespace cycleisp_fast {
namespace dual_attention {

struct Shape {
  int64_t batch, channels, reduced, height, width;
  bool channels_last;  // the features are (N, H, W, C) in memory; else (N, C, H, W)
  int64_t plane() const { return height * width; }
};

// A kernel that takes both layouts runs res in channels_last when stable.h's prefers_channels_last(res) holds
// (cycleisp_fast/ops/dual_attention.py's fake implementations apply the same rule).

// The DAB tail's weights, contiguous in the accumulation dtype (float32; float64 for float64 features),
// whatever dtype the caller's parameters have: sa (18), w1 (R, C), b1 (R), w2 (C, R), b2 (C), proj (C, 2C),
// proj_bias (C).
struct Weights {
  Tensor sa, w1, b1, w2, b2, proj, proj_bias;
};

// Checked inputs of dual_attention_forward, dense in the layout asked for (NCHW, or channels_last where the
// kernel takes it and res prefers it), and its allocated outputs: out (N, C, H, W) like res in that layout,
// pool (N, 2, H, W) and channel_mean (N, C) in the accumulation dtype, argmax (N, H, W) int32.
struct ForwardTensors {
  Shape shape;
  Tensor res, x;
  Weights weights;
  Tensor out, pool, argmax, channel_mean;
};
ForwardTensors prepare_forward(const Tensor& res, const Tensor& x, const Tensor& sa_weight,
                               const Tensor& ca_w1, const Tensor& ca_b1, const Tensor& ca_w2,
                               const Tensor& ca_b2, const Tensor& proj_w, const Tensor& proj_b,
                               bool allow_channels_last);

// Checked inputs of dual_attention_backward, dense in the layout asked for (as the forward's). The kernels write grad_res (like res) and the
// weight gradients in the accumulation dtype (grad_sa (18), grad_w1 (R, C), grad_b1, grad_w2 (C, R),
// grad_b2, grad_proj (C, 2C), grad_proj_bias); finish_backward casts them to the weights' dtypes and shapes.
struct BackwardTensors {
  Shape shape;
  Tensor grad, res, pool, argmax, channel_mean;
  Weights weights;
  Tensor grad_res;
  Weights grads;
};
BackwardTensors prepare_backward(const Tensor& grad_out, const Tensor& res, const Tensor& pool,
                                 const Tensor& argmax, const Tensor& channel_mean,
                                 const Tensor& sa_weight, const Tensor& ca_w1, const Tensor& ca_b1,
                                 const Tensor& ca_w2, const Tensor& ca_b2, const Tensor& proj_w,
                                 bool allow_channels_last);

using BackwardResult = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor,
                                  Tensor>;
// (grad_res, grad_sa_weight, grad_ca_w1, grad_ca_b1, grad_ca_w2, grad_ca_b2, grad_proj_w, grad_proj_b), each
// weight gradient in its weight's dtype and shape.
BackwardResult finish_backward(const BackwardTensors& t, const Tensor& sa_weight, const Tensor& ca_w1,
                               const Tensor& ca_b1, const Tensor& ca_w2, const Tensor& ca_b2,
                               const Tensor& proj_w);

}  // namespace dual_attention
}  // namespace cycleisp_fast
