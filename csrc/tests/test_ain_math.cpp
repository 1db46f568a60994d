// Unit tests of csrc/ops/ain_math.h, the per-element and reduction math the AIN CPU and CUDA kernels share.
// Plain C++ (no torch): chunked statistics merged with `combine` must equal a direct float64 computation,
// Welford's `push` (the CUDA per-thread path) must agree with them, also when |mean| >> std, and the
// backward formulas must match finite differences of the forward.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "ops/ain_math.h"
#include "tests/expect.h"

namespace ain = cycleisp_fast::ain;


static std::vector<double> sample(int n, double offset) {
  std::vector<double> v(n);
  unsigned state = 12345u;
  for (int i = 0; i < n; ++i) {
    state = state * 1664525u + 1013904223u;
    v[i] = offset + (static_cast<double>(state >> 8) / (1 << 24) - 0.5) * 2.0;  // offset + U(-1, 1)
  }
  return v;
}

static void direct(const std::vector<double>& v, double* mean, double* m2) {
  double s = 0;
  for (double x : v) s += x;
  *mean = s / v.size();
  *m2 = 0;
  for (double x : v) *m2 += (x - *mean) * (x - *mean);
}

static void test_chunked_statistics(double offset) {
  std::vector<double> v = sample(1000, offset);
  for (double& x : v) x = static_cast<float>(x);  // the float data the kernels see
  double mean, m2;
  direct(v, &mean, &m2);
  // uneven chunks, each reduced by Welford's push (float, as the CUDA threads do), then combined in order
  const int bounds[] = {0, 1, 7, 300, 301, 999, 1000};
  std::vector<ain::Moments<float>> partial;
  for (int c = 0; c + 1 < 7; ++c) {
    ain::Moments<float> m{0.f, 0.f, 0.f};
    for (int i = bounds[c]; i < bounds[c + 1]; ++i) m = ain::push(m, static_cast<float>(v[i]));
    partial.push_back(m);
  }
  const ain::Moments<float> total = ain::plane_total(partial.data(), 0, static_cast<int64_t>(partial.size()));
  EXPECT_NEAR(total.count, 1000, 0, "count");
  EXPECT_NEAR(total.mean, mean, 1e-6 * (1 + std::fabs(offset)), "mean");
  // float32 Welford: the running mean near `offset` is rounded to float32 at every step
  EXPECT_NEAR(total.m2 / 1000, m2 / 1000, 1e-4, "variance");
  // empty partials change nothing
  const ain::Moments<float> with_empty = ain::combine(total, ain::Moments<float>{0.f, 0.f, 0.f});
  EXPECT_NEAR(with_empty.mean, total.mean, 0, "combine with empty");
  EXPECT_NEAR(ain::inverse_std(total, 1e-5f), 1 / std::sqrt(m2 / 1000 + 1e-5), 3e-4, "inverse_std");
  EXPECT_NEAR(ain::inverse_std(ain::Moments<float>{0.f, 0.f, 0.f}, 1e-5f), 1 / std::sqrt(1e-5), 1e-1, "empty plane");
}

// Loss L = sum_i w_i * y_i over one plane; checks every gradient of element_grad/input_grad numerically.
static void test_backward_matches_finite_differences(bool leaky, bool gate_is_output) {
  const int n = 12;
  const double eps = 1e-5, slope = 0.1;
  std::vector<double> x = sample(n, 0.3), gamma = sample(n, 0.1), beta = sample(n, -0.2), w = sample(n, 0.0);
  auto loss = [&](const std::vector<double>& xs, const std::vector<double>& gs, const std::vector<double>& bs) {
    double mean, m2;
    direct(xs, &mean, &m2);
    const double rstd = 1 / std::sqrt(m2 / n + eps);
    double l = 0;
    for (int i = 0; i < n; ++i) l += w[i] * ain::modulate<double>(xs[i], mean, rstd, gs[i], bs[i], leaky, slope);
    return l;
  };
  double mean, m2;
  direct(x, &mean, &m2);
  const double rstd = 1 / std::sqrt(m2 / n + eps);
  ain::GradSums<double> sums{0, 0};
  std::vector<ain::ElementGrad<double>> e(n);
  for (int i = 0; i < n; ++i) {
    const double gate =
        gate_is_output ? ain::modulate<double>(x[i], mean, rstd, gamma[i], beta[i], leaky, slope) : beta[i];
    e[i] = ain::element_grad<double>(w[i], x[i], mean, rstd, gamma[i], gate, gate_is_output, leaky, slope);
    sums = ain::combine(sums, ain::GradSums<double>{e[i].grad_xhat, e[i].grad_xhat * e[i].xhat});
  }
  const double h = 1e-6;
  for (int i = 0; i < n; ++i) {
    std::vector<double> xp = x, xm = x, gp = gamma, gm = gamma, bp = beta, bm = beta;
    xp[i] += h, xm[i] -= h, gp[i] += h, gm[i] -= h, bp[i] += h, bm[i] -= h;
    EXPECT_NEAR(ain::input_grad(e[i], rstd, sums, static_cast<double>(n)),
                (loss(xp, gamma, beta) - loss(xm, gamma, beta)) / (2 * h), 1e-6, "grad x");
    EXPECT_NEAR(e[i].grad_gamma, (loss(x, gp, beta) - loss(x, gm, beta)) / (2 * h), 1e-6, "grad gamma");
    EXPECT_NEAR(e[i].grad_beta, (loss(x, gamma, bp) - loss(x, gamma, bm)) / (2 * h), 1e-6, "grad beta");
  }
}

int main() {
  test_chunked_statistics(0.0);
  test_chunked_statistics(1000.0);  // |mean| >> std: Welford + Chan keep the variance
  for (bool gate_is_output : {false, true}) {
    test_backward_matches_finite_differences(false, gate_is_output);
    test_backward_matches_finite_differences(true, gate_is_output);
  }
  EXPECT_NEAR(ain::chunks_per_plane(0), 1, 0, "chunks of an empty plane");
  EXPECT_NEAR(ain::chunks_per_plane(ain::kChunk), 1, 0, "chunks of one full chunk");
  EXPECT_NEAR(ain::chunks_per_plane(ain::kChunk + 1), 2, 0, "chunks of one chunk and one element");
  return finish("ain_math");
}
