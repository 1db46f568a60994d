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

}  // namespace

PlaneShape check_inputs(const char* op, const at::Tensor& x, const at::Tensor& gamma, const at::Tensor& beta,
                        const at::Tensor& grad_out) {
  TORCH_CHECK_VALUE(x.dim() == 4, op, ": x must be 4-D (N, C, H, W), got ", x.dim(), "-D");
  TORCH_CHECK_TYPE(at::isFloatingType(x.scalar_type()), op, ": x must be floating, got ", x.scalar_type());
  check_like(op, "gamma", gamma, x);
  check_like(op, "beta", beta, x);
  if (grad_out.defined()) check_like(op, "grad_out", grad_out, x);
  const int64_t plane_size = x.size(2) * x.size(3);
  return {x.size(0) * x.size(1), plane_size, chunks_per_plane(plane_size)};
}

void check_stats(const char* op, const at::Tensor& mean, const at::Tensor& rstd, const at::Tensor& x,
                 const PlaneShape& shape) {
  const auto dtype = stats_dtype(x.scalar_type());
  for (const auto* t : {&mean, &rstd}) {
    TORCH_CHECK_VALUE(t->numel() == shape.planes && t->scalar_type() == dtype && t->device() == x.device(), op,
                      ": mean and rstd must hold N*C = ", shape.planes, " values of dtype ", dtype, " on ", x.device(),
                      ", got ", t->numel(), " of ", t->scalar_type(), " on ", t->device());
  }
}

at::ScalarType stats_dtype(at::ScalarType input) { return input == at::kDouble ? at::kDouble : at::kFloat; }

}  // namespace ain
}  // namespace cycleisp_fast

TORCH_LIBRARY_FRAGMENT(cycleisp_fast, m) {
  m.def("ain_forward(Tensor x, Tensor gamma, Tensor beta, float eps, float? negative_slope) -> (Tensor, Tensor, Tensor)");
  m.def(
      "ain_backward(Tensor grad_out, Tensor x, Tensor gamma, Tensor beta, Tensor mean, Tensor rstd, "
      "float? negative_slope) -> (Tensor, Tensor, Tensor)");
}
