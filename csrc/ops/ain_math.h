// Per-element math of adaptive instance normalization (AIN), shared verbatim by the CPU and CUDA kernels.
//
//   y = act((x - mean) * rstd * (1 + gamma) + beta),  rstd = 1 / sqrt(var + eps),  act = LeakyReLU or identity
//
// mean and the biased var are per (n, c) plane over H x W. Every plane is cut into chunks of at most
// kChunk elements; a first phase reduces each chunk to partial statistics, a second merges the partials
// of its plane (Chan et al.'s parallel formula) and writes its chunk. The CPU kernel runs each (plane,
// chunk) as one task, the CUDA kernel as one thread block, both through the functions below.
#pragma once

#include <cmath>
#include <cstdint>

#include "host_device.h"

namespace cycleisp_fast {
namespace ain {

constexpr int64_t kChunk = 16384;

CYCLEISP_HOST_DEVICE int64_t chunks_per_plane(int64_t plane_size) {
  return plane_size == 0 ? 1 : (plane_size + kChunk - 1) / kChunk;
}

// Partial statistics of a run of values: count, mean, and M2 = sum of squared deviations from the mean.
template <typename acc_t>
struct Moments {
  acc_t count;
  acc_t mean;
  acc_t m2;
};

// Welford's update with one value.
template <typename acc_t>
CYCLEISP_HOST_DEVICE Moments<acc_t> push(Moments<acc_t> a, acc_t value) {
  const acc_t count = a.count + acc_t(1);
  const acc_t delta = value - a.mean;
  const acc_t mean = a.mean + delta / count;
  return {count, mean, a.m2 + delta * (value - mean)};
}

// Chan et al.'s merge of two partial statistics (exact in exact arithmetic, stable when |mean| >> std).
template <typename acc_t>
CYCLEISP_HOST_DEVICE Moments<acc_t> combine(Moments<acc_t> a, Moments<acc_t> b) {
  const acc_t count = a.count + b.count;
  if (count == acc_t(0)) return a;
  const acc_t delta = b.mean - a.mean;
  const acc_t b_share = b.count / count;
  return {count, a.mean + delta * b_share, a.m2 + b.m2 + delta * delta * a.count * b_share};
}

// 1 / sqrt(biased variance + eps) of a whole plane's statistics.
template <typename acc_t>
CYCLEISP_HOST_DEVICE acc_t inverse_std(Moments<acc_t> plane, acc_t eps) {
  const acc_t variance = plane.count > acc_t(0) ? plane.m2 / plane.count : acc_t(0);
  return acc_t(1) / std::sqrt(variance + eps);
}

// The forward output of one element.
template <typename acc_t>
CYCLEISP_HOST_DEVICE acc_t modulate(acc_t x, acc_t mean, acc_t rstd, acc_t gamma, acc_t beta, bool leaky,
                                    acc_t negative_slope) {
  const acc_t z = (x - mean) * rstd * (acc_t(1) + gamma) + beta;
  const acc_t leaked = z * negative_slope;  // unconditionally, so that the select vectorises
  return leaky && !(z > acc_t(0)) ? leaked : z;
}

// What the backward needs of one element: the gradients of gamma and beta, and of x_hat = (x - mean) * rstd.
template <typename acc_t>
struct ElementGrad {
  acc_t grad_gamma;
  acc_t grad_beta;
  acc_t grad_xhat;
  acc_t xhat;
};

// `gate` is beta, or with gate_is_output the forward's output y = act(z): for a slope >= 0, y > 0 exactly where
// z > 0 (NaN and -inf alike take the slope), so the backward can keep y (usually kept anyway, as the next
// convolution's input) instead of beta.
template <typename acc_t>
CYCLEISP_HOST_DEVICE ElementGrad<acc_t> element_grad(acc_t grad_out, acc_t x, acc_t mean, acc_t rstd, acc_t gamma,
                                                     acc_t gate, bool gate_is_output, bool leaky,
                                                     acc_t negative_slope) {
  const acc_t xhat = (x - mean) * rstd;
  const acc_t z = gate_is_output ? gate : xhat * (acc_t(1) + gamma) + gate;
  const acc_t leaked = grad_out * negative_slope;
  const acc_t grad_z = leaky && !(z > acc_t(0)) ? leaked : grad_out;
  return {grad_z * xhat, grad_z, grad_z * (acc_t(1) + gamma), xhat};
}

// Per-plane sums of the backward: sum(grad_xhat) and sum(grad_xhat * xhat).
template <typename acc_t>
struct GradSums {
  acc_t grad_xhat;
  acc_t grad_xhat_xhat;
};

template <typename acc_t>
CYCLEISP_HOST_DEVICE GradSums<acc_t> combine(GradSums<acc_t> a, GradSums<acc_t> b) {
  return {a.grad_xhat + b.grad_xhat, a.grad_xhat_xhat + b.grad_xhat_xhat};
}

// A plane's total (Moments or GradSums) from the partials of its `chunks` chunks, stored plane-major.
template <typename Partial>
CYCLEISP_HOST_DEVICE Partial plane_total(const Partial* partial, int64_t plane, int64_t chunks) {
  Partial total = partial[plane * chunks];
  for (int64_t k = 1; k < chunks; ++k) total = combine(total, partial[plane * chunks + k]);
  return total;
}

// d loss / d x of one element, from its grad_xhat and x_hat and its plane's sums over `count` elements.
template <typename acc_t>
CYCLEISP_HOST_DEVICE acc_t input_grad(ElementGrad<acc_t> g, acc_t rstd, GradSums<acc_t> plane, acc_t count) {
  return rstd * (g.grad_xhat - plane.grad_xhat / count - g.xhat * (plane.grad_xhat_xhat / count));
}

}  // namespace ain
}  // namespace cycleisp_fast
