// CUDA kernels of cycleisp_fast::ain_forward / ain_backward: one thread block per (plane, chunk), two
// kernels per direction (partial reductions with CUB, then the element-wise pass), over the same
// per-element math (ain_math.h) that the CPU kernels run and the CPU tests exercise.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cub/block/block_reduce.cuh>
#include <tuple>

#include "../ain.h"

namespace cycleisp_fast {
namespace ain {
namespace {

constexpr int kThreads = 256;

struct MergeMoments {
  template <typename acc_t>
  __device__ Moments<acc_t> operator()(const Moments<acc_t>& a, const Moments<acc_t>& b) const {
    return merge(a, b);
  }
};

struct AddGradSums {
  template <typename acc_t>
  __device__ GradSums<acc_t> operator()(const GradSums<acc_t>& a, const GradSums<acc_t>& b) const {
    return add(a, b);
  }
};

struct ChunkRange {
  int64_t plane, begin, end;
};

__device__ ChunkRange this_chunk(int64_t plane_size, int64_t chunks) {
  const int64_t task = blockIdx.x;
  const int64_t begin = (task % chunks) * kChunk;
  return {task / chunks, begin, begin + kChunk < plane_size ? begin + kChunk : plane_size};
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) ain_stats_kernel(const scalar_t* __restrict__ x,
                                                             Moments<acc_t>* __restrict__ partial,
                                                             int64_t plane_size, int64_t chunks) {
  const ChunkRange c = this_chunk(plane_size, chunks);
  const scalar_t* xp = x + c.plane * plane_size;
  Moments<acc_t> m{acc_t(0), acc_t(0), acc_t(0)};
  for (int64_t i = c.begin + threadIdx.x; i < c.end; i += kThreads) m = push(m, static_cast<acc_t>(xp[i]));
  using Reduce = cub::BlockReduce<Moments<acc_t>, kThreads>;
  __shared__ typename Reduce::TempStorage storage;
  m = Reduce(storage).Reduce(m, MergeMoments{});
  if (threadIdx.x == 0) partial[blockIdx.x] = m;
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) ain_modulate_kernel(
    const scalar_t* __restrict__ x, const scalar_t* __restrict__ gamma, const scalar_t* __restrict__ beta,
    scalar_t* __restrict__ out, const Moments<acc_t>* __restrict__ partial, acc_t* __restrict__ mean_out,
    acc_t* __restrict__ rstd_out, int64_t plane_size, int64_t chunks, acc_t eps, bool leaky, acc_t slope) {
  const ChunkRange c = this_chunk(plane_size, chunks);
  __shared__ acc_t plane_mean, plane_rstd;
  if (threadIdx.x == 0) {
    Moments<acc_t> plane = partial[c.plane * chunks];
    for (int64_t k = 1; k < chunks; ++k) plane = merge(plane, partial[c.plane * chunks + k]);
    plane_mean = plane.mean;
    plane_rstd = inverse_std(plane, eps);
    if (blockIdx.x % chunks == 0) {
      mean_out[c.plane] = plane_mean;
      rstd_out[c.plane] = plane_rstd;
    }
  }
  __syncthreads();
  const int64_t offset = c.plane * plane_size;
  for (int64_t i = offset + c.begin + threadIdx.x; i < offset + c.end; i += kThreads) {
    out[i] = static_cast<scalar_t>(modulate<acc_t>(x[i], plane_mean, plane_rstd, gamma[i], beta[i], leaky, slope));
  }
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) ain_grad_sums_kernel(
    const scalar_t* __restrict__ grad, const scalar_t* __restrict__ x, const scalar_t* __restrict__ gamma,
    const scalar_t* __restrict__ beta, const acc_t* __restrict__ mean, const acc_t* __restrict__ rstd,
    scalar_t* __restrict__ grad_gamma, scalar_t* __restrict__ grad_beta, GradSums<acc_t>* __restrict__ partial,
    int64_t plane_size, int64_t chunks, bool leaky, acc_t slope) {
  const ChunkRange c = this_chunk(plane_size, chunks);
  const int64_t offset = c.plane * plane_size;
  const acc_t m = mean[c.plane], r = rstd[c.plane];
  GradSums<acc_t> sums{acc_t(0), acc_t(0)};
  for (int64_t i = offset + c.begin + threadIdx.x; i < offset + c.end; i += kThreads) {
    const ElementGrad<acc_t> e = element_grad<acc_t>(grad[i], x[i], m, r, gamma[i], beta[i], leaky, slope);
    grad_gamma[i] = static_cast<scalar_t>(e.grad_gamma);
    grad_beta[i] = static_cast<scalar_t>(e.grad_beta);
    sums = add(sums, GradSums<acc_t>{e.grad_xhat, e.grad_xhat * e.xhat});
  }
  using Reduce = cub::BlockReduce<GradSums<acc_t>, kThreads>;
  __shared__ typename Reduce::TempStorage storage;
  sums = Reduce(storage).Reduce(sums, AddGradSums{});
  if (threadIdx.x == 0) partial[blockIdx.x] = sums;
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) ain_input_grad_kernel(
    const scalar_t* __restrict__ grad, const scalar_t* __restrict__ x, const scalar_t* __restrict__ gamma,
    const scalar_t* __restrict__ beta, const acc_t* __restrict__ mean, const acc_t* __restrict__ rstd,
    const GradSums<acc_t>* __restrict__ partial, scalar_t* __restrict__ grad_x, int64_t plane_size, int64_t chunks,
    bool leaky, acc_t slope) {
  const ChunkRange c = this_chunk(plane_size, chunks);
  __shared__ GradSums<acc_t> plane;
  if (threadIdx.x == 0) {
    GradSums<acc_t> total = partial[c.plane * chunks];
    for (int64_t k = 1; k < chunks; ++k) total = add(total, partial[c.plane * chunks + k]);
    plane = total;
  }
  __syncthreads();
  const int64_t offset = c.plane * plane_size;
  const acc_t m = mean[c.plane], r = rstd[c.plane], count = static_cast<acc_t>(plane_size);
  for (int64_t i = offset + c.begin + threadIdx.x; i < offset + c.end; i += kThreads) {
    const ElementGrad<acc_t> e = element_grad<acc_t>(grad[i], x[i], m, r, gamma[i], beta[i], leaky, slope);
    grad_x[i] = static_cast<scalar_t>(input_grad(e, r, plane, count));
  }
}

// A scratch buffer of `count` values of T, a struct of acc_t fields.
template <typename T, typename acc_t>
at::Tensor scratch(int64_t count, const at::Tensor& like) {
  static_assert(sizeof(T) % sizeof(acc_t) == 0, "scratch: T must be made of acc_t fields");
  return at::empty({count * static_cast<int64_t>(sizeof(T) / sizeof(acc_t))},
                   like.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ain_forward_cuda(const at::Tensor& x_in, const at::Tensor& gamma_in,
                                                                const at::Tensor& beta_in, double eps,
                                                                std::optional<double> negative_slope) {
  const c10::cuda::OptionalCUDAGuard guard(x_in.device());
  const PlaneShape shape = check_inputs("ain_forward", x_in, gamma_in, beta_in);
  const at::Tensor x = x_in.contiguous(), gamma = gamma_in.contiguous(), beta = beta_in.contiguous();
  at::Tensor out = at::empty_like(x, at::MemoryFormat::Contiguous);
  const auto stats_options = x.options().dtype(stats_dtype(x.scalar_type()));
  at::Tensor mean = at::empty({x.size(0), x.size(1)}, stats_options);
  at::Tensor rstd = at::empty({x.size(0), x.size(1)}, stats_options);
  const int64_t tasks = shape.planes * shape.chunks;
  if (tasks == 0) return {out, mean, rstd};
  const auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "ain_forward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    at::Tensor partial = scratch<Moments<acc_t>, acc_t>(tasks, x);
    auto* partial_p = reinterpret_cast<Moments<acc_t>*>(partial.mutable_data_ptr<acc_t>());
    ain_stats_kernel<scalar_t, acc_t><<<tasks, kThreads, 0, stream>>>(x.const_data_ptr<scalar_t>(), partial_p,
                                                                      shape.plane_size, shape.chunks);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    ain_modulate_kernel<scalar_t, acc_t><<<tasks, kThreads, 0, stream>>>(
        x.const_data_ptr<scalar_t>(), gamma.const_data_ptr<scalar_t>(), beta.const_data_ptr<scalar_t>(),
        out.mutable_data_ptr<scalar_t>(), partial_p, mean.mutable_data_ptr<acc_t>(), rstd.mutable_data_ptr<acc_t>(),
        shape.plane_size, shape.chunks, static_cast<acc_t>(eps), negative_slope.has_value(),
        static_cast<acc_t>(negative_slope.value_or(0.0)));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {out, mean, rstd};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ain_backward_cuda(const at::Tensor& grad_in, const at::Tensor& x_in,
                                                                 const at::Tensor& gamma_in, const at::Tensor& beta_in,
                                                                 const at::Tensor& mean_in, const at::Tensor& rstd_in,
                                                                 std::optional<double> negative_slope) {
  const c10::cuda::OptionalCUDAGuard guard(x_in.device());
  const PlaneShape shape = check_inputs("ain_backward", x_in, gamma_in, beta_in, grad_in);
  check_stats("ain_backward", mean_in, rstd_in, x_in, shape);
  const at::Tensor grad = grad_in.contiguous(), x = x_in.contiguous(), gamma = gamma_in.contiguous(),
                   beta = beta_in.contiguous(), mean = mean_in.contiguous(), rstd = rstd_in.contiguous();
  at::Tensor grad_x = at::empty_like(x, at::MemoryFormat::Contiguous);
  at::Tensor grad_gamma = at::empty_like(x, at::MemoryFormat::Contiguous);
  at::Tensor grad_beta = at::empty_like(x, at::MemoryFormat::Contiguous);
  const int64_t tasks = shape.planes * shape.chunks;
  if (tasks == 0) return {grad_x, grad_gamma, grad_beta};
  const auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "ain_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    at::Tensor partial = scratch<GradSums<acc_t>, acc_t>(tasks, x);
    auto* partial_p = reinterpret_cast<GradSums<acc_t>*>(partial.mutable_data_ptr<acc_t>());
    const bool leaky = negative_slope.has_value();
    const acc_t slope = static_cast<acc_t>(negative_slope.value_or(0.0));
    ain_grad_sums_kernel<scalar_t, acc_t><<<tasks, kThreads, 0, stream>>>(
        grad.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(), gamma.const_data_ptr<scalar_t>(),
        beta.const_data_ptr<scalar_t>(), mean.const_data_ptr<acc_t>(), rstd.const_data_ptr<acc_t>(),
        grad_gamma.mutable_data_ptr<scalar_t>(), grad_beta.mutable_data_ptr<scalar_t>(), partial_p, shape.plane_size,
        shape.chunks, leaky, slope);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    ain_input_grad_kernel<scalar_t, acc_t><<<tasks, kThreads, 0, stream>>>(
        grad.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(), gamma.const_data_ptr<scalar_t>(),
        beta.const_data_ptr<scalar_t>(), mean.const_data_ptr<acc_t>(), rstd.const_data_ptr<acc_t>(), partial_p,
        grad_x.mutable_data_ptr<scalar_t>(), shape.plane_size, shape.chunks, leaky, slope);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad_x, grad_gamma, grad_beta};
}

}  // namespace
}  // namespace ain
}  // namespace cycleisp_fast

TORCH_LIBRARY_IMPL(cycleisp_fast, CUDA, m) {
  m.impl("ain_forward", &cycleisp_fast::ain::ain_forward_cuda);
  m.impl("ain_backward", &cycleisp_fast::ain::ain_backward_cuda);
}
