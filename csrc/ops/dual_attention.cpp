// Schemas of cycleisp_fast::dual_attention_forward / dual_attention_backward and their host-side checks.
#include "dual_attention.h"


namespace cycleisp_fast {
namespace dual_attention {
namespace {

void check_weight(const char* op, const char* name, const Tensor& weight, IntArrayRef expected,
                  const Tensor& res) {
  CF_CHECK(weight.sizes() == expected, op, ": ", name, " must have shape ", expected, ", got ",
                    weight.sizes());
  CF_CHECK(is_floating(weight.scalar_type()), op, ": ", name, " must be floating, got ",
                   weight.scalar_type());
  CF_CHECK(weight.device() == res.device(), op, ": ", name, " must be on res's device ", res.device(),
                    ", got ", weight.device());
}

void check_like(const char* op, const char* name, const Tensor& t, const Tensor& res) {
  CF_CHECK(t.sizes() == res.sizes(), op, ": ", name, " must have res's shape ", res.sizes(), ", got ",
                    t.sizes());
  CF_CHECK(t.scalar_type() == res.scalar_type(), op, ": ", name, " must have res's dtype ",
                   res.scalar_type(), ", got ", t.scalar_type());
  CF_CHECK(t.device() == res.device(), op, ": ", name, " must be on res's device ", res.device(), ", got ",
                    t.device());
}

// Checks res and the weights (proj_b only in the forward); returns the shape.
Shape check_weights(const char* op, const Tensor& res, const Tensor& sa_weight, const Tensor& ca_w1,
                    const Tensor& ca_b1, const Tensor& ca_w2, const Tensor& ca_b2,
                    const Tensor& proj_w) {
  CF_CHECK(res.dim() == 4, op, ": res must be 4-D (N, C, H, W), got ", res.dim(), "-D");
  CF_CHECK(is_floating(res.scalar_type()), op, ": res must be floating, got ", res.scalar_type());
  CF_CHECK(res.size(1) > 0 && res.size(2) > 0 && res.size(3) > 0, op,
                    ": res must have at least one channel and one pixel, got shape ", res.sizes());
  const int64_t channels = res.size(1);
  CF_CHECK(ca_w1.dim() == 4 && ca_w1.size(0) > 0, op, ": ca_w1 must have shape (C/r, C, 1, 1), got ",
                    ca_w1.sizes());
  const int64_t reduced = ca_w1.size(0);
  check_weight(op, "sa_weight", sa_weight, {1, 2, 3, 3}, res);
  check_weight(op, "ca_w1", ca_w1, {reduced, channels, 1, 1}, res);
  check_weight(op, "ca_b1", ca_b1, {reduced}, res);
  check_weight(op, "ca_w2", ca_w2, {channels, reduced, 1, 1}, res);
  check_weight(op, "ca_b2", ca_b2, {channels}, res);
  check_weight(op, "proj_w", proj_w, {channels, 2 * channels, 1, 1}, res);
  return {res.size(0), channels, reduced, res.size(2), res.size(3), false};
}

MemoryFormat layout(Shape& shape, const Tensor& res, bool allow_channels_last) {
  shape.channels_last = allow_channels_last && prefers_channels_last(res);
  return shape.channels_last ? MemoryFormat::ChannelsLast : MemoryFormat::Contiguous;
}

Weights accumulation_weights(const Tensor& res, const Tensor& sa_weight, const Tensor& ca_w1,
                             const Tensor& ca_b1, const Tensor& ca_w2, const Tensor& ca_b2,
                             const Tensor& proj_w, const Tensor& proj_b) {
  const auto dtype = accumulation_dtype(res.scalar_type());
  const auto prepared = [dtype](const Tensor& w) { return contiguous(cast(w, dtype)); };
  return {prepared(sa_weight), prepared(ca_w1), prepared(ca_b1), prepared(ca_w2),
          prepared(ca_b2),     prepared(proj_w), proj_b.defined() ? prepared(proj_b) : Tensor()};
}

}  // namespace

ForwardTensors prepare_forward(const Tensor& res, const Tensor& x, const Tensor& sa_weight,
                               const Tensor& ca_w1, const Tensor& ca_b1, const Tensor& ca_w2,
                               const Tensor& ca_b2, const Tensor& proj_w, const Tensor& proj_b,
                               bool allow_channels_last) {
  constexpr const char* op = "dual_attention_forward";
  ForwardTensors t;
  t.shape = check_weights(op, res, sa_weight, ca_w1, ca_b1, ca_w2, ca_b2, proj_w);
  check_like(op, "x", x, res);
  check_weight(op, "proj_b", proj_b, {t.shape.channels}, res);
  const MemoryFormat format = layout(t.shape, res, allow_channels_last);
  t.res = contiguous(res, format);
  t.x = contiguous(x, format);
  t.weights = accumulation_weights(res, sa_weight, ca_w1, ca_b1, ca_w2, ca_b2, proj_w, proj_b);
  t.out = empty_tensor(res.sizes().vec(), res.scalar_type(), res.device(), format);
  const ScalarType acc = accumulation_dtype(res.scalar_type());
  t.pool = empty_tensor({t.shape.batch, 2, t.shape.height, t.shape.width}, acc, res.device());
  t.argmax = empty_tensor({t.shape.batch, t.shape.height, t.shape.width}, ScalarType::Int, res.device());
  t.channel_mean = empty_tensor({t.shape.batch, t.shape.channels}, acc, res.device());
  return t;
}

BackwardTensors prepare_backward(const Tensor& grad_out, const Tensor& res, const Tensor& pool,
                                 const Tensor& argmax, const Tensor& channel_mean,
                                 const Tensor& sa_weight, const Tensor& ca_w1, const Tensor& ca_b1,
                                 const Tensor& ca_w2, const Tensor& ca_b2, const Tensor& proj_w,
                                 bool allow_channels_last) {
  constexpr const char* op = "dual_attention_backward";
  BackwardTensors t;
  t.shape = check_weights(op, res, sa_weight, ca_w1, ca_b1, ca_w2, ca_b2, proj_w);
  check_like(op, "grad_out", grad_out, res);
  const Shape& s = t.shape;
  const auto acc = accumulation_dtype(res.scalar_type());
  const auto check_saved = [&](const char* name, const Tensor& v, IntArrayRef shape, ScalarType dtype) {
    CF_CHECK(v.sizes() == shape && v.scalar_type() == dtype && v.device() == res.device(), op, ": ", name,
                      " must be the forward's (shape ", shape, ", dtype ", dtype, ", on ", res.device(), "), got shape ",
                      v.sizes(), ", dtype ", v.scalar_type(), ", on ", v.device());
  };
  check_saved("pool", pool, {s.batch, 2, s.height, s.width}, acc);
  check_saved("argmax", argmax, {s.batch, s.height, s.width}, ScalarType::Int);
  check_saved("channel_mean", channel_mean, {s.batch, s.channels}, acc);
  const MemoryFormat format = layout(t.shape, res, allow_channels_last);
  t.grad = contiguous(grad_out, format);
  t.res = contiguous(res, format);
  t.pool = contiguous(pool);
  t.argmax = contiguous(argmax);
  t.channel_mean = contiguous(channel_mean);
  t.weights = accumulation_weights(res, sa_weight, ca_w1, ca_b1, ca_w2, ca_b2, proj_w, Tensor());
  t.grad_res = empty_tensor(res.sizes().vec(), res.scalar_type(), res.device(), format);
  const auto zeros_like = [](const Tensor& w) { return zeros_tensor(w.sizes().vec(), w.scalar_type(), w.device()); };
  const Weights& w = t.weights;
  t.grads = {zeros_like(w.sa), zeros_like(w.w1), zeros_like(w.b1), zeros_like(w.w2), zeros_like(w.b2),
             zeros_like(w.proj), zeros_tensor({s.channels}, w.proj.scalar_type(), w.proj.device())};
  return t;
}

BackwardResult finish_backward(const BackwardTensors& t, const Tensor& sa_weight, const Tensor& ca_w1,
                               const Tensor& ca_b1, const Tensor& ca_w2, const Tensor& ca_b2,
                               const Tensor& proj_w) {
  const auto like = [](const Tensor& grad, const Tensor& weight) {
    return cast(reshape(grad, weight.sizes()), weight.scalar_type());
  };
  const Weights& g = t.grads;
  return {t.grad_res,
          like(g.sa, sa_weight),
          like(g.w1, ca_w1),
          like(g.b1, ca_b1),
          like(g.w2, ca_w2),
          like(g.b2, ca_b2),
          like(g.proj, proj_w),
          cast(g.proj_bias, proj_w.scalar_type())};
}

}  // namespace dual_attention
}  // namespace cycleisp_fast

CF_OP_SCHEMAS(m) {
  m.def(
      "dual_attention_forward(Tensor res, Tensor x, Tensor sa_weight, Tensor ca_w1, Tensor ca_b1, Tensor ca_w2, "
      "Tensor ca_b2, Tensor proj_w, Tensor proj_b) -> (Tensor out, Tensor pool, Tensor argmax, Tensor channel_mean)");
  m.def(
      "dual_attention_backward(Tensor grad_out, Tensor res, Tensor pool, Tensor argmax, Tensor channel_mean, "
      "Tensor sa_weight, Tensor ca_w1, Tensor ca_b1, Tensor ca_w2, Tensor ca_b2, Tensor proj_w) -> (Tensor, Tensor, "
      "Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
}
