// Schema of cycleisp_fast::physical_noise and its host-side argument checks.
#include "physical_noise.h"


namespace cycleisp_fast {
namespace physical_noise {

PhysicalTensors prepare_physical(const Tensor& x, const Tensor& params, const Tensor& bias,
                                 IntArrayRef row_phase, int64_t seed, int64_t offset, int64_t components,
                                 std::optional<double> clip_min, std::optional<double> clip_max) {
  constexpr const char* op = "physical_noise";
  CF_CHECK(is_floating(x.scalar_type()), op, ": x must be floating, got ", x.scalar_type());
  CF_CHECK(x.dim() == 4, op, ": x must have shape (N, C, H, W), got ", x.sizes());
  const auto compute = x.scalar_type() == ScalarType::Double ? ScalarType::Double : ScalarType::Float;
  const int64_t n = x.size(0), c = x.size(1);
  CF_CHECK(params.dim() == 2 && params.size(0) == n && params.size(1) == kParams, op,
                    ": params must have shape (N, 6) = (", n, ", 6), got ", params.sizes());
  CF_CHECK(bias.dim() == 2 && bias.size(0) == n && bias.size(1) == c, op,
                    ": bias must have shape (N, C) = (", n, ", ", c, "), got ", bias.sizes());
  for (const auto& [name, t] : {std::pair<const char*, const Tensor&>{"params", params}, {"bias", bias}}) {
    CF_CHECK(t.scalar_type() == compute, op, ": ", name, " must have dtype ", compute, " (x is ",
                     x.scalar_type(), "), got ", t.scalar_type());
    CF_CHECK(t.device() == x.device(), op, ": ", name, " must be on x's device ", x.device(), ", got ",
                      t.device());
  }
  CF_CHECK(row_phase.empty() || (static_cast<int64_t>(row_phase.size()) == c && c <= 8), op,
                    ": row_phase must be empty (rows shared by the channels) or hold one phase per channel (C <= 8), "
                    "got ", row_phase.size(), " phases for C = ", c);
  for (const int64_t phase : row_phase) {
    CF_CHECK(phase == 0 || phase == 1, op, ": row phases must be 0 or 1, got ", row_phase);
  }
  CF_CHECK(components >= 0 && components <= kAllComponents, op, ": components must be a mask of bits in [0, ",
                    kAllComponents, "], got ", components);
  CF_CHECK(!((components & kGaussianRead) && (components & kTukeyRead)), op,
                    ": the read noise is Gaussian (g) or Tukey-lambda (t), not both");
  CF_CHECK(seed >= 0, op, ": seed must be in [0, 2**63), got ", seed);
  CF_CHECK(offset >= 0 && offset <= 0xFFFFFFFFLL, op, ": offset must be in [0, 2**32), got ", offset);
  PhysicalTensors t;
  t.x = contiguous(x);
  t.params = contiguous(params);
  t.bias = contiguous(bias);
  t.out = empty_like(t.x);
  t.n = n;
  t.c = c;
  t.h = x.size(2);
  t.w = x.size(3);
  t.packed_rows = !row_phase.empty();
  t.rows = t.packed_rows ? 2 * t.h : t.h;
  for (int64_t k = 0; k < 8; ++k) t.row_phase[k] = k < static_cast<int64_t>(row_phase.size()) ? row_phase[k] : 0;
  t.stream = noise::make_stream(seed, offset);
  t.components = components;
  t.has_min = clip_min.has_value();
  t.has_max = clip_max.has_value();
  t.clip_min = clip_min.value_or(0.0);
  t.clip_max = clip_max.value_or(0.0);
  return t;
}

}  // namespace physical_noise
}  // namespace cycleisp_fast

CF_OP_SCHEMAS(m) {
  m.def(
      "physical_noise(Tensor x, Tensor params, Tensor bias, int[] row_phase, int seed, int offset, int components, "
      "float? clip_min, float? clip_max) -> Tensor");
}
