// CPU kernels of cycleisp_fast::ain_forward / ain_backward: one task per (plane, chunk), two phases each
// (partial reductions, then the element-wise pass), over the shared math of ain_math.h. Chunk sums use
// independent lanes so the compiler vectorises them without reassociating a single accumulator.

#include <algorithm>
#include <tuple>
#include <vector>

#include "../ain.h"
#include "vectorize.h"

namespace cycleisp_fast {
namespace ain {
namespace {

// Two-pass statistics of one chunk (it stays in cache between the passes). The first pass sums x - x[0],
// so that a large common offset (|mean| >> std) does not cost the sum its precision.
template <typename scalar_t, typename acc_t>
CYCLEISP_CPU_CLONES Moments<acc_t> chunk_moments(const scalar_t* x, int64_t n) {
  if (n == 0) return {acc_t(0), acc_t(0), acc_t(0)};
  const acc_t shift = static_cast<acc_t>(x[0]);
  const acc_t mean =
      shift + lane_sum<acc_t>(n, [&](int64_t i) { return static_cast<acc_t>(x[i]) - shift; }) / acc_t(n);
  const acc_t m2 = lane_sum<acc_t>(n, [&](int64_t i) {
    const acc_t d = static_cast<acc_t>(x[i]) - mean;
    return d * d;
  });
  return {acc_t(n), mean, m2};
}

// The element loops take restrict-qualified pointers and the activation as a template argument, so that
// the compiler vectorises them (no aliasing checks, no branch on the activation inside the loop).
template <bool kLeaky, typename scalar_t, typename acc_t>
CYCLEISP_CPU_CLONES void modulate_chunk_impl(const scalar_t* __restrict__ x, const scalar_t* __restrict__ gamma,
                         const scalar_t* __restrict__ beta, scalar_t* __restrict__ out, int64_t n, acc_t mean,
                         acc_t rstd, acc_t slope) {
  for (int64_t i = 0; i < n; ++i) {
    out[i] = static_cast<scalar_t>(modulate<acc_t>(x[i], mean, rstd, gamma[i], beta[i], kLeaky, slope));
  }
}

template <typename scalar_t, typename acc_t>
void modulate_chunk(const scalar_t* x, const scalar_t* gamma, const scalar_t* beta, scalar_t* out, int64_t n,
                    acc_t mean, acc_t rstd, bool leaky, acc_t slope) {
  if (leaky) {
    modulate_chunk_impl<true>(x, gamma, beta, out, n, mean, rstd, slope);
  } else {
    modulate_chunk_impl<false>(x, gamma, beta, out, n, mean, rstd, slope);
  }
}

// One chunk's inputs to the backward.
template <typename scalar_t, typename acc_t>
struct ChunkInputs {
  const scalar_t* __restrict__ grad;
  const scalar_t* __restrict__ x;
  const scalar_t* __restrict__ gamma;
  const scalar_t* __restrict__ gate;  // beta, or the forward's output (gate_is_output)
  acc_t mean, rstd, slope;
  bool gate_is_output;
};

// Writes grad_gamma and grad_beta of a chunk; returns its sums of grad_xhat and grad_xhat * xhat.
template <bool kLeaky, typename scalar_t, typename acc_t>
CYCLEISP_CPU_CLONES GradSums<acc_t> param_grads_chunk(const ChunkInputs<scalar_t, acc_t> in, scalar_t* __restrict__ grad_gamma,
                                  scalar_t* __restrict__ grad_beta, int64_t n) {
  return lane_sum<GradSums<acc_t>>(
      n,
      [&](int64_t i) {
        const ElementGrad<acc_t> e =
            element_grad<acc_t>(in.grad[i], in.x[i], in.mean, in.rstd, in.gamma[i], in.gate[i], in.gate_is_output, kLeaky,
                                in.slope);
        grad_gamma[i] = static_cast<scalar_t>(e.grad_gamma);
        grad_beta[i] = static_cast<scalar_t>(e.grad_beta);
        return GradSums<acc_t>{e.grad_xhat, e.grad_xhat * e.xhat};
      },
      [](GradSums<acc_t> a, GradSums<acc_t> b) { return combine(a, b); });
}

template <bool kLeaky, typename scalar_t, typename acc_t>
CYCLEISP_CPU_CLONES void input_grad_chunk(const ChunkInputs<scalar_t, acc_t> in, GradSums<acc_t> plane, acc_t count,
                      scalar_t* __restrict__ grad_x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const ElementGrad<acc_t> e =
        element_grad<acc_t>(in.grad[i], in.x[i], in.mean, in.rstd, in.gamma[i], in.gate[i], in.gate_is_output, kLeaky,
                            in.slope);
    grad_x[i] = static_cast<scalar_t>(input_grad(e, in.rstd, plane, count));
  }
}

struct Chunk {
  int64_t plane, begin, size;
};

Chunk chunk_of(int64_t task, const PlaneShape& shape) {
  const int64_t plane = task / shape.chunks;
  const int64_t begin = (task % shape.chunks) * kChunk;
  return {plane, begin, std::min(kChunk, shape.plane_size - begin)};
}

// Runs fn(chunk) for every (plane, chunk) task in parallel.
template <typename Fn>
void for_each_chunk(const PlaneShape& shape, const Fn& fn) {
  parallel_for(0, shape.planes * shape.chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) fn(task, chunk_of(task, shape));
  });
}

// The data of a forward call's tensors.
template <typename scalar_t, typename acc_t>
struct ForwardData {
  const scalar_t *x, *gamma, *beta;
  scalar_t* out;
  acc_t *mean, *rstd;
  explicit ForwardData(const ForwardTensors& t)
      : x(t.x.const_data_ptr<scalar_t>()),
        gamma(t.gamma.const_data_ptr<scalar_t>()),
        beta(t.beta.const_data_ptr<scalar_t>()),
        out(t.out.mutable_data_ptr<scalar_t>()),
        mean(t.mean.mutable_data_ptr<acc_t>()),
        rstd(t.rstd.mutable_data_ptr<acc_t>()) {}
};

// The data of a backward call's tensors.
template <typename scalar_t, typename acc_t>
struct BackwardData {
  const scalar_t *grad, *x, *gamma, *gate;
  const acc_t *mean, *rstd;
  scalar_t *grad_x, *grad_gamma, *grad_beta;
  bool gate_is_output;
  explicit BackwardData(const BackwardTensors& t)
      : grad(t.grad.const_data_ptr<scalar_t>()),
        x(t.x.const_data_ptr<scalar_t>()),
        gamma(t.gamma.const_data_ptr<scalar_t>()),
        gate(t.gate.const_data_ptr<scalar_t>()),
        mean(t.mean.const_data_ptr<acc_t>()),
        rstd(t.rstd.const_data_ptr<acc_t>()),
        grad_x(t.grad_x.mutable_data_ptr<scalar_t>()),
        grad_gamma(t.grad_gamma.mutable_data_ptr<scalar_t>()),
        grad_beta(t.grad_beta.mutable_data_ptr<scalar_t>()),
        gate_is_output(t.gate_is_output) {}
};

// ---- channels_last (N, H, W, C): the statistics and the modulation vectorised over the contiguous channels ----

// The pixels of one task: a run of about kChunk values of one image.
struct PixelRun {
  int64_t image, begin, size;
};

// The runs of about kChunk values (pixels of C channels) that cut each image of `pixels` pixels; task t is run
// t % per_image of image t / per_image.
struct PixelRuns {
  int64_t pixels, length, per_image;
  PixelRuns(int64_t pixels_, int64_t C)
      : pixels(pixels_),
        length(std::max<int64_t>(1, kChunk / std::max<int64_t>(C, 1))),
        per_image((pixels_ + length - 1) / length) {}
  PixelRun run(int64_t task) const {
    const int64_t begin = (task % per_image) * length;
    return {task / per_image, begin, std::min(length, pixels - begin)};
  }
};

// Statistics per channel of the `pixels` pixels at x (C values each), two passes as chunk_moments: the sums of
// x - (the run's first pixel), then of squared deviations from the mean. `work` holds 2 * C values.
template <typename scalar_t, typename acc_t>
CYCLEISP_CPU_CLONES void pixel_run_moments(const scalar_t* __restrict__ x, int64_t pixels, int64_t C,
                                           Moments<acc_t>* __restrict__ out, acc_t* __restrict__ work) {
  acc_t* __restrict__ sum = work;
  acc_t* __restrict__ mean = work + C;
  for (int64_t c = 0; c < C; ++c) sum[c] = acc_t(0);
  for (int64_t p = 0; p < pixels; ++p) {
    const scalar_t* row = x + p * C;
    for (int64_t c = 0; c < C; ++c) sum[c] += static_cast<acc_t>(row[c]) - static_cast<acc_t>(x[c]);
  }
  for (int64_t c = 0; c < C; ++c) {
    mean[c] = static_cast<acc_t>(x[c]) + sum[c] / acc_t(pixels);
    sum[c] = acc_t(0);
  }
  for (int64_t p = 0; p < pixels; ++p) {
    const scalar_t* row = x + p * C;
    for (int64_t c = 0; c < C; ++c) {
      const acc_t d = static_cast<acc_t>(row[c]) - mean[c];
      sum[c] += d * d;
    }
  }
  for (int64_t c = 0; c < C; ++c) out[c] = {acc_t(pixels), mean[c], sum[c]};
}

template <bool kLeaky, typename scalar_t, typename acc_t>
CYCLEISP_CPU_CLONES void modulate_pixels(const scalar_t* __restrict__ x, const scalar_t* __restrict__ gamma,
                                         const scalar_t* __restrict__ beta, scalar_t* __restrict__ out,
                                         int64_t pixels, int64_t C, const acc_t* __restrict__ mean,
                                         const acc_t* __restrict__ rstd, acc_t slope) {
  for (int64_t p = 0; p < pixels; ++p) {
    const int64_t o = p * C;
    for (int64_t c = 0; c < C; ++c) {
      out[o + c] = static_cast<scalar_t>(
          modulate<acc_t>(x[o + c], mean[c], rstd[c], gamma[o + c], beta[o + c], kLeaky, slope));
    }
  }
}

template <typename scalar_t, typename acc_t>
void ain_forward_channels_last(const ForwardTensors& t, double eps, std::optional<double> negative_slope) {
  const int64_t N = t.x.size(0), C = t.x.size(1), pixels = t.shape.plane_size;
  const PixelRuns runs_of(pixels, C);
  const int64_t runs = runs_of.per_image;
  const auto run_of = [&](int64_t task) { return runs_of.run(task); };
  const ForwardData<scalar_t, acc_t> d(t);
  const scalar_t *xp = d.x, *gp = d.gamma, *bp = d.beta;
  scalar_t* yp = d.out;
  acc_t *mean_p = d.mean, *rstd_p = d.rstd;
  std::vector<Moments<acc_t>> partial(N * runs * C);
  parallel_for(0, N * runs, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> work(2 * C);
    for (int64_t task = begin; task < end; ++task) {
      const PixelRun r = run_of(task);
      pixel_run_moments<scalar_t, acc_t>(xp + (r.image * pixels + r.begin) * C, r.size, C, &partial[task * C],
                                         work.data());
    }
  });
  parallel_for(0, N * C, 64, [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t n = plane / C, c = plane % C;
      Moments<acc_t> total = partial[(n * runs) * C + c];
      for (int64_t k = 1; k < runs; ++k) total = combine(total, partial[(n * runs + k) * C + c]);
      mean_p[plane] = total.mean;
      rstd_p[plane] = inverse_std(total, static_cast<acc_t>(eps));
    }
  });
  const acc_t slope = static_cast<acc_t>(negative_slope.value_or(0.0));
  parallel_for(0, N * runs, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const PixelRun r = run_of(task);
      const int64_t offset = (r.image * pixels + r.begin) * C;
      const acc_t* m = mean_p + r.image * C;
      const acc_t* s = rstd_p + r.image * C;
      if (negative_slope.has_value()) {
        modulate_pixels<true>(xp + offset, gp + offset, bp + offset, yp + offset, r.size, C, m, s, slope);
      } else {
        modulate_pixels<false>(xp + offset, gp + offset, bp + offset, yp + offset, r.size, C, m, s, slope);
      }
    }
  });
}

// The backward's first phase for `pixels` pixels of one image (C values each): grad_gamma and grad_beta, and
// per channel the sums of grad_xhat and grad_xhat * xhat (`work`: 2 * C values).
template <bool kLeaky, typename scalar_t, typename acc_t>
CYCLEISP_CPU_CLONES void pixel_run_param_grads(const BackwardData<scalar_t, acc_t>& d, int64_t offset, int64_t pixels,
                                               int64_t C, const acc_t* __restrict__ mean,
                                               const acc_t* __restrict__ rstd, acc_t slope,
                                               GradSums<acc_t>* __restrict__ out, acc_t* __restrict__ work) {
  acc_t* __restrict__ sum = work;
  acc_t* __restrict__ sum_xhat = work + C;
  for (int64_t c = 0; c < C; ++c) sum[c] = sum_xhat[c] = acc_t(0);
  const scalar_t *__restrict__ dy = d.grad + offset, *__restrict__ x = d.x + offset;
  const scalar_t *__restrict__ gamma = d.gamma + offset, *__restrict__ gate = d.gate + offset;
  const bool from_output = d.gate_is_output;  // a local, so that the stores below cannot be thought to change it
  scalar_t *__restrict__ dgamma = d.grad_gamma + offset, *__restrict__ dbeta = d.grad_beta + offset;
  for (int64_t p = 0; p < pixels; ++p) {
    const int64_t o = p * C;
    for (int64_t c = 0; c < C; ++c) {
      const ElementGrad<acc_t> e =
          element_grad<acc_t>(dy[o + c], x[o + c], mean[c], rstd[c], gamma[o + c], gate[o + c], from_output, kLeaky,
                              slope);
      dgamma[o + c] = static_cast<scalar_t>(e.grad_gamma);
      dbeta[o + c] = static_cast<scalar_t>(e.grad_beta);
      sum[c] += e.grad_xhat;
      sum_xhat[c] += e.grad_xhat * e.xhat;
    }
  }
  for (int64_t c = 0; c < C; ++c) out[c] = {sum[c], sum_xhat[c]};
}

// The backward's second phase for `pixels` pixels of one image: grad_x from the image's per-channel sums.
template <bool kLeaky, typename scalar_t, typename acc_t>
CYCLEISP_CPU_CLONES void pixel_run_input_grad(const BackwardData<scalar_t, acc_t>& d, int64_t offset, int64_t pixels,
                                              int64_t C, const acc_t* __restrict__ mean,
                                              const acc_t* __restrict__ rstd, acc_t slope,
                                              const acc_t* __restrict__ sum, const acc_t* __restrict__ sum_xhat,
                                              acc_t count) {
  const scalar_t *__restrict__ dy = d.grad + offset, *__restrict__ x = d.x + offset;
  const scalar_t *__restrict__ gamma = d.gamma + offset, *__restrict__ gate = d.gate + offset;
  const bool from_output = d.gate_is_output;
  scalar_t* __restrict__ dx = d.grad_x + offset;
  for (int64_t p = 0; p < pixels; ++p) {
    const int64_t o = p * C;
    for (int64_t c = 0; c < C; ++c) {
      const ElementGrad<acc_t> e =
          element_grad<acc_t>(dy[o + c], x[o + c], mean[c], rstd[c], gamma[o + c], gate[o + c], from_output, kLeaky,
                              slope);
      dx[o + c] = static_cast<scalar_t>(input_grad(e, rstd[c], GradSums<acc_t>{sum[c], sum_xhat[c]}, count));
    }
  }
}

template <typename scalar_t, typename acc_t>
void ain_backward_channels_last(const BackwardTensors& t, std::optional<double> negative_slope) {
  const int64_t N = t.x.size(0), C = t.x.size(1), pixels = t.shape.plane_size;
  const PixelRuns runs_of(pixels, C);
  const int64_t runs = runs_of.per_image;
  const auto run_of = [&](int64_t task) { return runs_of.run(task); };
  const BackwardData<scalar_t, acc_t> d(t);
  const bool leaky = negative_slope.has_value();
  const acc_t slope = static_cast<acc_t>(negative_slope.value_or(0.0));
  std::vector<GradSums<acc_t>> partial(N * runs * C);
  parallel_for(0, N * runs, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> work(2 * C);
    for (int64_t task = begin; task < end; ++task) {
      const PixelRun r = run_of(task);
      const int64_t offset = (r.image * pixels + r.begin) * C;
      const acc_t *m = d.mean + r.image * C, *s = d.rstd + r.image * C;
      GradSums<acc_t>* out = &partial[task * C];
      if (leaky) {
        pixel_run_param_grads<true>(d, offset, r.size, C, m, s, slope, out, work.data());
      } else {
        pixel_run_param_grads<false>(d, offset, r.size, C, m, s, slope, out, work.data());
      }
    }
  });
  // The per-image sums, channel by channel (sum of grad_xhat, then of grad_xhat * xhat).
  std::vector<acc_t> sums(2 * N * C);
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t c = 0; c < C; ++c) {
      GradSums<acc_t> total = partial[(n * runs) * C + c];
      for (int64_t k = 1; k < runs; ++k) total = combine(total, partial[(n * runs + k) * C + c]);
      sums[n * C + c] = total.grad_xhat;
      sums[(N + n) * C + c] = total.grad_xhat_xhat;
    }
  }
  const acc_t count = static_cast<acc_t>(pixels);
  parallel_for(0, N * runs, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const PixelRun r = run_of(task);
      const int64_t offset = (r.image * pixels + r.begin) * C;
      const acc_t *m = d.mean + r.image * C, *s = d.rstd + r.image * C;
      const acc_t *sum = sums.data() + r.image * C, *sum_xhat = sums.data() + (N + r.image) * C;
      if (leaky) {
        pixel_run_input_grad<true>(d, offset, r.size, C, m, s, slope, sum, sum_xhat, count);
      } else {
        pixel_run_input_grad<false>(d, offset, r.size, C, m, s, slope, sum, sum_xhat, count);
      }
    }
  });
}

std::tuple<Tensor, Tensor, Tensor> ain_forward_cpu(const Tensor& x, const Tensor& gamma,
                                                               const Tensor& beta, double eps,
                                                               std::optional<double> negative_slope) {
  const ForwardTensors t = prepare_forward(x, gamma, beta, /*allow_channels_last=*/true);
  const PlaneShape& shape = t.shape;
  CF_DISPATCH_FLOATING(t.x.scalar_type(), "ain_forward_cpu", [&] {
    using acc_t = opmath_t<scalar_t>;
    if (t.channels_last) {
      ain_forward_channels_last<scalar_t, acc_t>(t, eps, negative_slope);
      return;
    }
    const ForwardData<scalar_t, acc_t> d(t);
    const scalar_t *xp = d.x, *gp = d.gamma, *bp = d.beta;
    scalar_t* yp = d.out;
    acc_t *mean_p = d.mean, *rstd_p = d.rstd;
    const bool leaky = negative_slope.has_value();
    const acc_t slope = static_cast<acc_t>(negative_slope.value_or(0.0));
    if (shape.chunks == 1) {
      // A plane of one chunk: its statistics and its modulation in one task, so that the modulation reads x
      // from the cache the statistics just filled (one pass over x in memory instead of two).
      for_each_chunk(shape, [&](int64_t, Chunk c) {
        const Moments<acc_t> plane = chunk_moments<scalar_t, acc_t>(xp + c.plane * shape.plane_size, c.size);
        const acc_t m = plane.mean, r = inverse_std(plane, static_cast<acc_t>(eps));
        mean_p[c.plane] = m;
        rstd_p[c.plane] = r;
        const int64_t offset = c.plane * shape.plane_size;
        modulate_chunk(xp + offset, gp + offset, bp + offset, yp + offset, c.size, m, r, leaky, slope);
      });
      return;
    }
    std::vector<Moments<acc_t>> partial(shape.planes * shape.chunks);
    for_each_chunk(shape, [&](int64_t task, Chunk c) {
      partial[task] = chunk_moments<scalar_t, acc_t>(xp + c.plane * shape.plane_size + c.begin, c.size);
    });
    for_each_chunk(shape, [&](int64_t task, Chunk c) {
      const Moments<acc_t> plane = plane_total(partial.data(), c.plane, shape.chunks);
      const acc_t m = plane.mean, r = inverse_std(plane, static_cast<acc_t>(eps));
      if (task % shape.chunks == 0) {
        mean_p[c.plane] = m;
        rstd_p[c.plane] = r;
      }
      const int64_t offset = c.plane * shape.plane_size + c.begin;
      modulate_chunk(xp + offset, gp + offset, bp + offset, yp + offset, c.size, m, r, leaky, slope);
    });
  });
  return {t.out, t.mean, t.rstd};
}

std::tuple<Tensor, Tensor, Tensor> ain_backward_cpu(const Tensor& grad, const Tensor& x,
                                                                const Tensor& gamma, const Tensor& gate,
                                                                const Tensor& mean, const Tensor& rstd,
                                                                std::optional<double> negative_slope,
                                                                bool gate_is_output) {
  const BackwardTensors t =
      prepare_backward(grad, x, gamma, gate, mean, rstd, negative_slope, gate_is_output, /*allow_channels_last=*/true);
  const PlaneShape& shape = t.shape;
  CF_DISPATCH_FLOATING(t.x.scalar_type(), "ain_backward_cpu", [&] {
    using acc_t = opmath_t<scalar_t>;
    if (t.channels_last) {
      ain_backward_channels_last<scalar_t, acc_t>(t, negative_slope);
      return;
    }
    const scalar_t* dyp = t.grad.const_data_ptr<scalar_t>();
    const scalar_t* xp = t.x.const_data_ptr<scalar_t>();
    const scalar_t* gp = t.gamma.const_data_ptr<scalar_t>();
    const scalar_t* gate_p = t.gate.const_data_ptr<scalar_t>();
    const acc_t* mean_p = t.mean.const_data_ptr<acc_t>();
    const acc_t* rstd_p = t.rstd.const_data_ptr<acc_t>();
    scalar_t* dxp = t.grad_x.mutable_data_ptr<scalar_t>();
    scalar_t* dgp = t.grad_gamma.mutable_data_ptr<scalar_t>();
    scalar_t* dbp = t.grad_beta.mutable_data_ptr<scalar_t>();
    const bool leaky = negative_slope.has_value();
    const acc_t slope = static_cast<acc_t>(negative_slope.value_or(0.0));
    auto chunk_inputs = [&](Chunk c) {
      const int64_t o = c.plane * shape.plane_size + c.begin;
      return ChunkInputs<scalar_t, acc_t>{dyp + o, xp + o, gp + o, gate_p + o, mean_p[c.plane], rstd_p[c.plane], slope,
                                          gate_is_output};
    };
    const acc_t count = static_cast<acc_t>(shape.plane_size);
    if (shape.chunks == 1) {
      // A plane of one chunk: both passes in one task, the second reading the plane from the cache the first
      // filled (four tensors read from memory once instead of twice).
      for_each_chunk(shape, [&](int64_t, Chunk c) {
        const int64_t o = c.plane * shape.plane_size;
        scalar_t* out = dxp + o;
        if (leaky) {
          const GradSums<acc_t> plane = param_grads_chunk<true>(chunk_inputs(c), dgp + o, dbp + o, c.size);
          input_grad_chunk<true>(chunk_inputs(c), plane, count, out, c.size);
        } else {
          const GradSums<acc_t> plane = param_grads_chunk<false>(chunk_inputs(c), dgp + o, dbp + o, c.size);
          input_grad_chunk<false>(chunk_inputs(c), plane, count, out, c.size);
        }
      });
      return;
    }
    std::vector<GradSums<acc_t>> partial(shape.planes * shape.chunks);
    for_each_chunk(shape, [&](int64_t task, Chunk c) {
      const int64_t o = c.plane * shape.plane_size + c.begin;
      partial[task] = leaky ? param_grads_chunk<true>(chunk_inputs(c), dgp + o, dbp + o, c.size)
                            : param_grads_chunk<false>(chunk_inputs(c), dgp + o, dbp + o, c.size);
    });
    for_each_chunk(shape, [&](int64_t, Chunk c) {
      const GradSums<acc_t> plane = plane_total(partial.data(), c.plane, shape.chunks);
      scalar_t* out = dxp + c.plane * shape.plane_size + c.begin;
      if (leaky) {
        input_grad_chunk<true>(chunk_inputs(c), plane, count, out, c.size);
      } else {
        input_grad_chunk<false>(chunk_inputs(c), plane, count, out, c.size);
      }
    });
  });
  return {t.grad_x, t.grad_gamma, t.grad_beta};
}

}  // namespace
}  // namespace ain
}  // namespace cycleisp_fast

STABLE_TORCH_LIBRARY_IMPL(cycleisp_fast, CPU, m) {
  m.impl("ain_forward", TORCH_BOX(&cycleisp_fast::ain::ain_forward_cpu));
  m.impl("ain_backward", TORCH_BOX(&cycleisp_fast::ain::ain_backward_cpu));
}
