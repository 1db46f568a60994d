// Unit tests of csrc/ops/dual_attention_math.h, the math the dual-attention CPU and CUDA kernels share. Plain
// C++ (no torch): the SA logit against a naive zero-padded 3x3 correlation, its transposed form as the exact
// adjoint (<conv(pool), g> = <pool, conv^T(g)>), and the CA MLP's backward against central finite differences
// of its forward, all in float64.
#include <cmath>
#include <vector>

#include "ops/dual_attention_math.h"
#include "tests/expect.h"

namespace da = cycleisp_fast::dual_attention;

static std::vector<double> uniform(int n, unsigned seed) {
  std::vector<double> v(n);
  unsigned state = seed;
  for (int i = 0; i < n; ++i) {
    state = state * 1664525u + 1013904223u;
    v[i] = (static_cast<double>(state >> 8) / (1 << 24) - 0.5) * 2.0;  // U(-1, 1)
  }
  return v;
}

static void spatial_conv(int height, int width) {
  const int plane = height * width;
  const std::vector<double> pool = uniform(2 * plane, 1u), weight = uniform(da::kSpatialTaps, 2u);
  const std::vector<double> grad = uniform(plane, 3u);
  double forward_dot = 0, adjoint_dot = 0;
  for (int h = 0; h < height; ++h) {
    for (int w = 0; w < width; ++w) {
      double naive = 0;
      for (int k = 0; k < 2; ++k) {
        for (int dy = -1; dy <= 1; ++dy) {
          for (int dx = -1; dx <= 1; ++dx) {
            const int y = h + dy, x = w + dx;
            if (y >= 0 && y < height && x >= 0 && x < width) {
              naive += weight[k * 9 + (dy + 1) * 3 + (dx + 1)] * pool[k * plane + y * width + x];
            }
          }
        }
      }
      const double logit = da::spatial_logit(pool.data(), weight.data(), height, width, h, w);
      EXPECT_NEAR(logit, naive, 1e-14, "spatial_logit vs a naive 3x3 correlation");
      forward_dot += logit * grad[h * width + w];
      for (int k = 0; k < 2; ++k) {
        adjoint_dot += pool[k * plane + h * width + w] *
                       da::spatial_logit_transposed(grad.data(), weight.data(), k, height, width, h, w);
      }
    }
  }
  EXPECT_NEAR(forward_dot, adjoint_dot, 1e-12, "spatial_logit_transposed is the adjoint of spatial_logit");
}

// L(mean, w1, b1, w2, b2) = sum_i grad_scale[i] * scale[i]: its exact gradient is what the backward returns.
struct Mlp {
  int channels, reduced;
  std::vector<double> mean, w1, b1, w2, b2, grad_scale;

  double loss() const {
    std::vector<double> hidden(reduced), scale(channels);
    da::channel_attention_forward(mean.data(), w1.data(), b1.data(), w2.data(), b2.data(), channels, reduced,
                                  hidden.data(), scale.data());
    double sum = 0;
    for (int i = 0; i < channels; ++i) sum += grad_scale[i] * scale[i];
    return sum;
  }
};

// Central difference of mlp.loss() with respect to *value.
static double numeric(Mlp& mlp, double* value) {
  const double step = 1e-6, saved = *value;
  *value = saved + step;
  const double up = mlp.loss();
  *value = saved - step;
  const double down = mlp.loss();
  *value = saved;
  return (up - down) / (2 * step);
}

static void channel_mlp(int channels, int reduced) {
  Mlp mlp{channels, reduced, uniform(channels, 4u), uniform(reduced * channels, 5u), uniform(reduced, 6u),
          uniform(channels * reduced, 7u), uniform(channels, 8u), uniform(channels, 9u)};
  std::vector<double> hidden(reduced), scale(channels), grad_hidden(reduced), grad_mean(channels);
  std::vector<double> grad_w1(reduced * channels), grad_b1(reduced), grad_w2(channels * reduced), grad_b2(channels);
  da::channel_attention_forward(mlp.mean.data(), mlp.w1.data(), mlp.b1.data(), mlp.w2.data(), mlp.b2.data(), channels,
                                reduced, hidden.data(), scale.data());
  for (int i = 0; i < channels; ++i) EXPECT(scale[i] > 0 && scale[i] < 1, "scale[%d] = %g outside (0, 1)", i, scale[i]);
  da::channel_attention_backward(mlp.grad_scale.data(), scale.data(), hidden.data(), mlp.mean.data(), mlp.w1.data(),
                                 mlp.w2.data(), channels, reduced, grad_hidden.data(), grad_w1.data(), grad_b1.data(),
                                 grad_w2.data(), grad_b2.data(), grad_mean.data());
  const auto check = [&](std::vector<double>& values, const std::vector<double>& grads, const char* what) {
    for (size_t i = 0; i < values.size(); ++i) EXPECT_NEAR(grads[i], numeric(mlp, &values[i]), 1e-8, what);
  };
  check(mlp.mean, grad_mean, "dL/dmean");
  check(mlp.w1, grad_w1, "dL/dw1");
  check(mlp.b1, grad_b1, "dL/db1");
  check(mlp.w2, grad_w2, "dL/dw2");
  check(mlp.b2, grad_b2, "dL/db2");
}

int main() {
  EXPECT_NEAR(da::sigmoid(0.0), 0.5, 0, "sigmoid(0)");
  EXPECT_NEAR(da::sigmoid(2.0) + da::sigmoid(-2.0), 1.0, 1e-15, "sigmoid(z) + sigmoid(-z)");
  for (int height : {1, 2, 5}) {
    for (int width : {1, 3, 4}) spatial_conv(height, width);
  }
  channel_mlp(16, 4);
  channel_mlp(8, 1);
  return finish("test_dual_attention_math");
}
