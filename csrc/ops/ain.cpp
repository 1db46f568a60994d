// Schemas of cycleisp_fast::ain_forward / ain_backward and their host-side argument checks.
#include "ain.h"


namespace cycleisp_fast {
namespace ain {
namespace {

void check_like(const char* op, const char* name, const Tensor& t, const Tensor& x) {
  CF_CHECK(t.sizes() == x.sizes(), op, ": ", name, " must have x's shape ", x.sizes(), ", got ", t.sizes());
  CF_CHECK(t.scalar_type() == x.scalar_type(), op, ": ", name, " must have x's dtype ", x.scalar_type(),
                   ", got ", t.scalar_type());
  CF_CHECK(t.device() == x.device(), op, ": ", name, " must be on x's device ", x.device(), ", got ",
                    t.device());
}

// x, gamma and the third pixel-wise tensor (beta, or the backward's gate), named `third` in errors.
PlaneShape check_inputs(const char* op, const Tensor& x, const Tensor& gamma, const Tensor& beta, const char* third,
                        const Tensor& grad_out = Tensor()) {
  CF_CHECK(x.dim() == 4, op, ": x must be 4-D (N, C, H, W), got ", x.dim(), "-D");
  CF_CHECK(is_floating(x.scalar_type()), op, ": x must be floating, got ", x.scalar_type());
  check_like(op, "gamma", gamma, x);
  check_like(op, third, beta, x);
  if (grad_out.defined()) check_like(op, "grad_out", grad_out, x);
  const int64_t plane_size = x.size(2) * x.size(3);
  return {x.size(0) * x.size(1), plane_size, chunks_per_plane(plane_size)};
}

}  // namespace

ForwardTensors prepare_forward(const Tensor& x, const Tensor& gamma, const Tensor& beta, bool allow_channels_last) {
  ForwardTensors t;
  t.shape = check_inputs("ain_forward", x, gamma, beta, "beta");
  t.channels_last = allow_channels_last && prefers_channels_last(x);
  const MemoryFormat format = t.channels_last ? MemoryFormat::ChannelsLast : MemoryFormat::Contiguous;
  t.x = contiguous(x, format);
  t.gamma = contiguous(gamma, format);
  t.beta = contiguous(beta, format);
  t.out = empty_like(t.x);
  t.mean = empty_tensor({x.size(0), x.size(1)}, accumulation_dtype(x.scalar_type()), x.device());
  t.rstd = empty_tensor({x.size(0), x.size(1)}, accumulation_dtype(x.scalar_type()), x.device());
  return t;
}

BackwardTensors prepare_backward(const Tensor& grad, const Tensor& x, const Tensor& gamma, const Tensor& gate,
                                 const Tensor& mean, const Tensor& rstd, std::optional<double> negative_slope,
                                 bool gate_is_output, bool allow_channels_last) {
  BackwardTensors t;
  t.shape = check_inputs("ain_backward", x, gamma, gate, "gate", grad);
  t.gate_is_output = gate_is_output;
  CF_CHECK(!gate_is_output || !negative_slope.has_value() || *negative_slope >= 0.0,
           "ain_backward: gate_is_output needs a slope >= 0 (the output's sign is then z's), got ",
           negative_slope.value_or(0.0));
  t.channels_last = allow_channels_last && prefers_channels_last(x);
  const MemoryFormat format = t.channels_last ? MemoryFormat::ChannelsLast : MemoryFormat::Contiguous;
  const auto dtype = accumulation_dtype(x.scalar_type());
  for (const auto* stats : {&mean, &rstd}) {
    CF_CHECK(stats->numel() == t.shape.planes && stats->scalar_type() == dtype && stats->device() == x.device(),
                      "ain_backward: mean and rstd must hold N*C = ", t.shape.planes, " values of dtype ", dtype, " on ",
                      x.device(), ", got ", stats->numel(), " of ", stats->scalar_type(), " on ", stats->device());
  }
  t.grad = contiguous(grad, format);
  t.x = contiguous(x, format);
  t.gamma = contiguous(gamma, format);
  t.gate = contiguous(gate, format);
  t.mean = contiguous(mean);
  t.rstd = contiguous(rstd);
  t.grad_x = empty_like(t.x);
  t.grad_gamma = empty_like(t.x);
  t.grad_beta = empty_like(t.x);
  return t;
}

}  // namespace ain
}  // namespace cycleisp_fast

CF_OP_SCHEMAS(m) {
  m.def("ain_forward(Tensor x, Tensor gamma, Tensor beta, float eps, float? negative_slope) -> (Tensor, Tensor, Tensor)");
  m.def(
      "ain_backward(Tensor grad_out, Tensor x, Tensor gamma, Tensor gate, Tensor mean, Tensor rstd, "
      "float? negative_slope, bool gate_is_output=False) -> (Tensor, Tensor, Tensor)");
}
