// CUDA kernels of cycleisp_fast::ain_forward / ain_backward: one thread block per (plane, chunk), two
// kernels per direction (partial reductions with CUB, then the element-wise pass), over the same
// per-element math (ain_math.h) that the CPU kernels run and the CPU tests exercise.

#include <cub/block/block_reduce.cuh>
#include <tuple>

#include "../ain.h"
#include "launch.cuh"

namespace cycleisp_fast {
namespace ain {
namespace {

constexpr int kThreads = 256;

// The CUB reduction operator of both partials (Moments, GradSums).
struct Combine {
  template <typename Partial>
  __device__ Partial operator()(const Partial& a, const Partial& b) const {
    return combine(a, b);
  }
};

// Reduces the threads' partials (Moments or GradSums) over the block; thread 0 stores this block's partial.
template <typename Partial>
__device__ void store_block_partial(Partial value, Partial* __restrict__ partial) {
  using Reduce = cub::BlockReduce<Partial, kThreads>;
  __shared__ typename Reduce::TempStorage storage;
  value = Reduce(storage).Reduce(value, Combine{});
  if (threadIdx.x == 0) partial[blockIdx.x] = value;
}

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
  store_block_partial(m, partial);
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) ain_modulate_kernel(
    const scalar_t* __restrict__ x, const scalar_t* __restrict__ gamma, const scalar_t* __restrict__ beta,
    scalar_t* __restrict__ out, const Moments<acc_t>* __restrict__ partial, acc_t* __restrict__ mean_out,
    acc_t* __restrict__ rstd_out, int64_t plane_size, int64_t chunks, acc_t eps, bool leaky, acc_t slope) {
  const ChunkRange c = this_chunk(plane_size, chunks);
  __shared__ acc_t plane_mean, plane_rstd;
  if (threadIdx.x == 0) {
    const Moments<acc_t> plane = plane_total(partial, c.plane, chunks);
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
    const scalar_t* __restrict__ gate, const acc_t* __restrict__ mean, const acc_t* __restrict__ rstd,
    scalar_t* __restrict__ grad_gamma, scalar_t* __restrict__ grad_beta, GradSums<acc_t>* __restrict__ partial,
    int64_t plane_size, int64_t chunks, bool gate_is_output, bool leaky, acc_t slope) {
  const ChunkRange c = this_chunk(plane_size, chunks);
  const int64_t offset = c.plane * plane_size;
  const acc_t m = mean[c.plane], r = rstd[c.plane];
  GradSums<acc_t> sums{acc_t(0), acc_t(0)};
  for (int64_t i = offset + c.begin + threadIdx.x; i < offset + c.end; i += kThreads) {
    const ElementGrad<acc_t> e = element_grad<acc_t>(grad[i], x[i], m, r, gamma[i], gate[i], gate_is_output, leaky, slope);
    grad_gamma[i] = static_cast<scalar_t>(e.grad_gamma);
    grad_beta[i] = static_cast<scalar_t>(e.grad_beta);
    sums = combine(sums, GradSums<acc_t>{e.grad_xhat, e.grad_xhat * e.xhat});
  }
  store_block_partial(sums, partial);
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kThreads) ain_input_grad_kernel(
    const scalar_t* __restrict__ grad, const scalar_t* __restrict__ x, const scalar_t* __restrict__ gamma,
    const scalar_t* __restrict__ gate, const acc_t* __restrict__ mean, const acc_t* __restrict__ rstd,
    const GradSums<acc_t>* __restrict__ partial, scalar_t* __restrict__ grad_x, int64_t plane_size, int64_t chunks,
    bool gate_is_output, bool leaky, acc_t slope) {
  const ChunkRange c = this_chunk(plane_size, chunks);
  __shared__ GradSums<acc_t> plane;
  if (threadIdx.x == 0) plane = plane_total(partial, c.plane, chunks);
  __syncthreads();
  const int64_t offset = c.plane * plane_size;
  const acc_t m = mean[c.plane], r = rstd[c.plane], count = static_cast<acc_t>(plane_size);
  for (int64_t i = offset + c.begin + threadIdx.x; i < offset + c.end; i += kThreads) {
    const ElementGrad<acc_t> e = element_grad<acc_t>(grad[i], x[i], m, r, gamma[i], gate[i], gate_is_output, leaky, slope);
    grad_x[i] = static_cast<scalar_t>(input_grad(e, r, plane, count));
  }
}

// A scratch buffer of `count` values of T, a struct of acc_t fields.
template <typename T, typename acc_t>
Tensor scratch(int64_t count, const Tensor& like) {
  static_assert(sizeof(T) % sizeof(acc_t) == 0, "scratch: T must be made of acc_t fields");
  return empty_tensor({count * static_cast<int64_t>(sizeof(T) / sizeof(acc_t))},
                      std::is_same_v<acc_t, double> ? ScalarType::Double : ScalarType::Float, like.device());
}

std::tuple<Tensor, Tensor, Tensor> ain_forward_cuda(const Tensor& x, const Tensor& gamma,
                                                                const Tensor& beta, double eps,
                                                                std::optional<double> negative_slope) {
  const CudaDeviceGuard guard(x);
  const ForwardTensors t = prepare_forward(x, gamma, beta, /*allow_channels_last=*/false);
  const int64_t tasks = t.shape.planes * t.shape.chunks;
  if (tasks == 0) return {t.out, t.mean, t.rstd};
  const cudaStream_t stream = current_cuda_stream();
  CF_DISPATCH_FLOATING(t.x.scalar_type(), "ain_forward_cuda", [&] {
    using acc_t = opmath_t<scalar_t>;
    Tensor partial = scratch<Moments<acc_t>, acc_t>(tasks, t.x);
    auto* partial_p = reinterpret_cast<Moments<acc_t>*>(partial.mutable_data_ptr<acc_t>());
    ain_stats_kernel<scalar_t, acc_t><<<tasks, kThreads, 0, stream>>>(t.x.const_data_ptr<scalar_t>(), partial_p,
                                                                      t.shape.plane_size, t.shape.chunks);
    CF_CUDA_LAUNCH_CHECK();
    ain_modulate_kernel<scalar_t, acc_t><<<tasks, kThreads, 0, stream>>>(
        t.x.const_data_ptr<scalar_t>(), t.gamma.const_data_ptr<scalar_t>(), t.beta.const_data_ptr<scalar_t>(),
        t.out.mutable_data_ptr<scalar_t>(), partial_p, t.mean.mutable_data_ptr<acc_t>(),
        t.rstd.mutable_data_ptr<acc_t>(), t.shape.plane_size, t.shape.chunks, static_cast<acc_t>(eps),
        negative_slope.has_value(), static_cast<acc_t>(negative_slope.value_or(0.0)));
    CF_CUDA_LAUNCH_CHECK();
  });
  return {t.out, t.mean, t.rstd};
}

std::tuple<Tensor, Tensor, Tensor> ain_backward_cuda(const Tensor& grad, const Tensor& x,
                                                                 const Tensor& gamma, const Tensor& gate,
                                                                 const Tensor& mean, const Tensor& rstd,
                                                                 std::optional<double> negative_slope,
                                                                 bool gate_is_output) {
  const CudaDeviceGuard guard(x);
  const BackwardTensors t = prepare_backward(grad, x, gamma, gate, mean, rstd, negative_slope, gate_is_output,
                                             /*allow_channels_last=*/false);
  const int64_t tasks = t.shape.planes * t.shape.chunks;
  if (tasks == 0) return {t.grad_x, t.grad_gamma, t.grad_beta};
  const cudaStream_t stream = current_cuda_stream();
  CF_DISPATCH_FLOATING(t.x.scalar_type(), "ain_backward_cuda", [&] {
    using acc_t = opmath_t<scalar_t>;
    Tensor partial = scratch<GradSums<acc_t>, acc_t>(tasks, t.x);
    auto* partial_p = reinterpret_cast<GradSums<acc_t>*>(partial.mutable_data_ptr<acc_t>());
    const bool leaky = negative_slope.has_value();
    const acc_t slope = static_cast<acc_t>(negative_slope.value_or(0.0));
    ain_grad_sums_kernel<scalar_t, acc_t><<<tasks, kThreads, 0, stream>>>(
        t.grad.const_data_ptr<scalar_t>(), t.x.const_data_ptr<scalar_t>(), t.gamma.const_data_ptr<scalar_t>(),
        t.gate.const_data_ptr<scalar_t>(), t.mean.const_data_ptr<acc_t>(), t.rstd.const_data_ptr<acc_t>(),
        t.grad_gamma.mutable_data_ptr<scalar_t>(), t.grad_beta.mutable_data_ptr<scalar_t>(), partial_p,
        t.shape.plane_size, t.shape.chunks, gate_is_output, leaky, slope);
    CF_CUDA_LAUNCH_CHECK();
    ain_input_grad_kernel<scalar_t, acc_t><<<tasks, kThreads, 0, stream>>>(
        t.grad.const_data_ptr<scalar_t>(), t.x.const_data_ptr<scalar_t>(), t.gamma.const_data_ptr<scalar_t>(),
        t.gate.const_data_ptr<scalar_t>(), t.mean.const_data_ptr<acc_t>(), t.rstd.const_data_ptr<acc_t>(), partial_p,
        t.grad_x.mutable_data_ptr<scalar_t>(), t.shape.plane_size, t.shape.chunks, gate_is_output, leaky, slope);
    CF_CUDA_LAUNCH_CHECK();
  });
  return {t.grad_x, t.grad_gamma, t.grad_beta};
}

}  // namespace
}  // namespace ain
}  // namespace cycleisp_fast

STABLE_TORCH_LIBRARY_IMPL(cycleisp_fast, CUDA, m) {
  m.impl("ain_forward", TORCH_BOX(&cycleisp_fast::ain::ain_forward_cuda));
  m.impl("ain_backward", TORCH_BOX(&cycleisp_fast::ain::ain_backward_cuda));
}
