// Math of the fused dual-attention tail of CycleISP's DAB, shared verbatim by the CPU and CUDA kernels.
//
//   pool   = [max_c res, mean_c res]                    (N, 2, H, W)   channel pool, max first
//   s(p)   = sigmoid(sum_{k,dy,dx} w_sa[k][dy][dx] pool_k(p + (dy-1, dx-1)))   zero padding, no bias
//   m      = mean_{h,w} res                             (N, C)
//   c      = sigmoid(W2 relu(W1 m + b1) + b2)            (N, C)
//   out(p) = s(p) W_a res(p) + W_b diag(c) res(p) + b + x(p)   W_a = proj_w[:, :C], W_b = proj_w[:, C:]
//
// The 1x1 projection of cat([res * s, res * c]) splits so, because s is one scalar per pixel and c one per
// channel: neither branch nor the concatenation is ever stored. The backward, with g = dL/dout:
//
//   dL/dx        = g
//   dL/db        = sum_{n,p} g
//   dL/dW_a      = sum_{n,p} (s g) res^T,   dL/dW_b = sum_n (sum_p g res^T) diag(c_n)
//   dL/ds(p)     = g(p) . W_a res(p),       dL/dc_j = sum_i W_b[i][j] (sum_p g res^T)[i][j]
//   dL/dlogit(p) = dL/ds(p) s(p) (1 - s(p)), then the SA conv's and the CA MLP's own backward
//   dL/dres(p)   = s(p) W_a^T g(p) + diag(c) W_b^T g(p) + dL/dmean_c(p) / C + onehot(argmax_c res(p)) dL/dmax_c(p)
//                  + dL/dm / (H W)
//
// The max routes its gradient to the first channel holding the maximum (the kernels record it as argmax).
#pragma once

#include <cmath>
#include <cstdint>

#include "host_device.h"

namespace cycleisp_fast {
namespace dual_attention {

constexpr int kSpatialTaps = 18;  // sa_weight (1, 2, 3, 3), flattened [k][dy][dx]

template <typename acc_t>
CYCLEISP_HOST_DEVICE acc_t sigmoid(acc_t z) {
  using std::exp;
  return acc_t(1) / (acc_t(1) + exp(-z));
}

// The SA logit at pixel (h, w) of one image: the 3x3 conv (zero padding, no bias) of its (2, H, W) pool.
template <typename acc_t>
CYCLEISP_HOST_DEVICE acc_t spatial_logit(const acc_t* pool, const acc_t* weight, int64_t height, int64_t width,
                                         int64_t h, int64_t w) {
  const int64_t plane = height * width;
  acc_t logit = acc_t(0);
  for (int k = 0; k < 2; ++k) {
    for (int dy = 0; dy < 3; ++dy) {
      const int64_t y = h + dy - 1;
      if (y < 0 || y >= height) continue;
      for (int dx = 0; dx < 3; ++dx) {
        const int64_t x = w + dx - 1;
        if (x < 0 || x >= width) continue;
        logit += weight[k * 9 + dy * 3 + dx] * pool[k * plane + y * width + x];
      }
    }
  }
  return logit;
}

// The transposed conv: dL/dpool_k at (h, w) from the (H, W) plane of dL/dlogit of one image.
template <typename acc_t>
CYCLEISP_HOST_DEVICE acc_t spatial_logit_transposed(const acc_t* grad_logit, const acc_t* weight, int k,
                                                    int64_t height, int64_t width, int64_t h, int64_t w) {
  acc_t grad = acc_t(0);
  for (int dy = 0; dy < 3; ++dy) {
    const int64_t y = h - dy + 1;
    if (y < 0 || y >= height) continue;
    for (int dx = 0; dx < 3; ++dx) {
      const int64_t x = w - dx + 1;
      if (x < 0 || x >= width) continue;
      grad += weight[k * 9 + dy * 3 + dx] * grad_logit[y * width + x];
    }
  }
  return grad;
}

// The CA MLP of one image: mean (C) -> hidden = relu(W1 mean + b1) (R), scale = sigmoid(W2 hidden + b2) (C).
// w1 is (R, C) and w2 (C, R), row-major.
template <typename acc_t>
CYCLEISP_HOST_DEVICE void channel_attention_forward(const acc_t* mean, const acc_t* w1, const acc_t* b1,
                                                    const acc_t* w2, const acc_t* b2, int64_t channels,
                                                    int64_t reduced, acc_t* hidden, acc_t* scale) {
  for (int64_t r = 0; r < reduced; ++r) {
    acc_t z = b1[r];
    for (int64_t j = 0; j < channels; ++j) z += w1[r * channels + j] * mean[j];
    hidden[r] = z < acc_t(0) ? acc_t(0) : z;  // relu that keeps NaN, as torch.relu
  }
  for (int64_t i = 0; i < channels; ++i) {
    acc_t z = b2[i];
    for (int64_t r = 0; r < reduced; ++r) z += w2[i * reduced + r] * hidden[r];
    scale[i] = sigmoid(z);
  }
}

// The CA MLP's backward for one image: from dL/dscale (C) it adds this image's share to the weight
// gradients (grad_w1 (R, C), grad_b1 (R), grad_w2 (C, R), grad_b2 (C)) and writes dL/dmean (C).
// grad_hidden (R) is scratch. grad_scale may alias nothing else.
template <typename acc_t>
CYCLEISP_HOST_DEVICE void channel_attention_backward(const acc_t* grad_scale, const acc_t* scale, const acc_t* hidden,
                                                     const acc_t* mean, const acc_t* w1, const acc_t* w2,
                                                     int64_t channels, int64_t reduced, acc_t* grad_hidden,
                                                     acc_t* grad_w1, acc_t* grad_b1, acc_t* grad_w2, acc_t* grad_b2,
                                                     acc_t* grad_mean) {
  for (int64_t r = 0; r < reduced; ++r) grad_hidden[r] = acc_t(0);
  for (int64_t i = 0; i < channels; ++i) {
    const acc_t grad_z = grad_scale[i] * scale[i] * (acc_t(1) - scale[i]);
    grad_b2[i] += grad_z;
    for (int64_t r = 0; r < reduced; ++r) {
      grad_w2[i * reduced + r] += grad_z * hidden[r];
      grad_hidden[r] += grad_z * w2[i * reduced + r];
    }
  }
  for (int64_t j = 0; j < channels; ++j) grad_mean[j] = acc_t(0);
  for (int64_t r = 0; r < reduced; ++r) {
    const acc_t grad_z = hidden[r] <= acc_t(0) ? acc_t(0) : grad_hidden[r];  // torch: NaN passes the gradient
    grad_b1[r] += grad_z;
    for (int64_t j = 0; j < channels; ++j) {
      grad_w1[r * channels + j] += grad_z * mean[j];
      grad_mean[j] += grad_z * w1[r * channels + j];
    }
  }
}

}  // namespace dual_attention
}  // namespace cycleisp_fast
