// Schemas of cycleisp_fast::ain_forward / ain_backward and their host-side argument checks.
#include "ain.h"

#include <ATen/ATen.h>
#include <torch/library.h>

namespace cycleisp_fast {
namespace ain {
namespace {

void check_like(const char* op, const char* name, const at::Tensor& t, const at::Tensor& x) {
  TORCH_CHECK_VALUE(t.sizes() == x.sizes(), op, ": ", name, " must have x's shape ", x.sizes(), ", got ", t.sizes());
  TORCH_CHECK_TYPE(t.scalar_type() == x.scalar_type(), op, ": ", name, " must have x's dtype ", x.scalar_type(),
                   ", got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.device() == x.device(), op, ": ", name, " must be on x's device ", x.device(), ", got ",
                    t.device());
}

PlaneShape check_inputs(const char* op, const at::Tensor& x, const at::Tensor& gamma, const at::Tensor& beta,
                        const at::Tensor& grad_out = at::Tensor()) {
  TORCH_CHECK_VALUE(x.dim() == 4, op, ": x must be 4-D (N, C, H, W), got ", x.dim(), "-D");
  TORCH_CHECK_TYPE(at::isFloatingType(x.scalar_type()), op, ": x must be floating, got ", x.scalar_type());
  check_like(op, "gamma", gamma, x);
  check_like(op, "beta", beta, x);
  if (grad_out.defined()) check_like(op, "grad_out", grad_out, x);
  const int64_t plane_size = x.size(2) * x.size(3);
  return {x.size(0) * x.size(1), plane_size, chunks_per_plane(plane_size)};
}

at::ScalarType stats_dtype(at::ScalarType input) { return input == at::kDouble ? at::kDouble : at::kFloat; }

}  // namespace

ForwardTensors prepare_forward(const at::Tensor& x, const at::Tensor& gamma, const at::Tensor& beta) {
  ForwardTensors t;
  t.shape = check_inputs("ain_forward", x, gamma, beta);
  t.x = x.contiguous();
  t.gamma = gamma.contiguous();
  t.beta = beta.contiguous();
  t.out = at::empty_like(t.x, at::MemoryFormat::Contiguous);
  const auto stats_options = x.options().dtype(stats_dtype(x.scalar_type()));
  t.mean = at::empty({x.size(0), x.size(1)}, stats_options);
  t.rstd = at::empty({x.size(0), x.size(1)}, stats_options);
  return t;
}

BackwardTensors prepare_backward(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& gamma,
                                 const at::Tensor& beta, const at::Tensor& mean, const at::Tensor& rstd) {
  BackwardTensors t;
  t.shape = check_inputs("ain_backward", x, gamma, beta, grad);
  const auto dtype = stats_dtype(x.scalar_type());
  for (const auto* stats : {&mean, &rstd}) {
    TORCH_CHECK_VALUE(stats->numel() == t.shape.planes && stats->scalar_type() == dtype && stats->device() == x.device(),
                      "ain_backward: mean and rstd must hold N*C = ", t.shape.planes, " values of dtype ", dtype, " on ",
                      x.device(), ", got ", stats->numel(), " of ", stats->scalar_type(), " on ", stats->device());
  }
  t.grad = grad.contiguous();
  t.x = x.contiguous();
  t.gamma = gamma.contiguous();
  t.beta = beta.contiguous();
  t.mean = mean.contiguous();
  t.rstd = rstd.contiguous();
  t.grad_x = at::empty_like(t.x, at::MemoryFormat::Contiguous);
  t.grad_gamma = at::empty_like(t.x, at::MemoryFormat::Contiguous);
  t.grad_beta = at::empty_like(t.x, at::MemoryFormat::Contiguous);
  return t;
}

}  // namespace ain
}  // namespace cycleisp_fast

TORCH_LIBRARY_FRAGMENT(cycleisp_fast, m) {
  m.def("ain_forward(Tensor x, Tensor gamma, Tensor beta, float eps, float? negative_slope) -> (Tensor, Tensor, Tensor)");
  m.def(
      "ain_backward(Tensor grad_out, Tensor x, Tensor gamma, Tensor beta, Tensor mean, Tensor rstd, "
      "float? negative_slope) -> (Tensor, Tensor, Tensor)");
}
