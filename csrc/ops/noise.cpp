// Schema of cycleisp_fast::noise_sample and its host-side argument checks.
#include "noise.h"

namespace cycleisp_fast {
namespace noise {

SampleTensors prepare_sample(const Tensor& x, const Tensor& shot, const Tensor& read, int64_t seed,
                             int64_t offset, int64_t model, std::optional<double> clip_min,
                             std::optional<double> clip_max) {
  constexpr const char* op = "noise_sample";
  CF_CHECK(is_floating(x.scalar_type()), op, ": x must be floating, got ", x.scalar_type());
  const ScalarType compute = accumulation_dtype(x.scalar_type());
  for (const auto& [name, t] : {std::pair<const char*, const Tensor&>{"shot", shot}, {"read", read}}) {
    CF_CHECK(t.dim() == 1 && t.numel() >= 1, op, ": ", name,
                      " must be a 1-D tensor of per-plane values, got shape ", t.sizes());
    CF_CHECK(t.scalar_type() == compute, op, ": ", name, " must have dtype ", compute, " (x is ",
                     x.scalar_type(), "), got ", t.scalar_type());
    CF_CHECK(t.device() == x.device(), op, ": ", name, " must be on x's device ", x.device(), ", got ",
                      t.device());
  }
  CF_CHECK(shot.numel() == read.numel(), op, ": shot and read must hold as many values, got ", shot.numel(),
                    " and ", read.numel());
  CF_CHECK(x.numel() % shot.numel() == 0, op, ": the number of (shot, read) values ", shot.numel(),
                    " must divide x.numel() = ", x.numel());
  CF_CHECK(seed >= 0, op, ": seed must be in [0, 2**63), got ", seed);
  CF_CHECK(offset >= 0 && offset <= 0xFFFFFFFFLL, op, ": offset must be in [0, 2**32), got ", offset);
  CF_CHECK(model >= 0 && model <= 2, op,
                    ": model must be 0 (heteroscedastic Gaussian), 1 (Poisson-Gaussian) or 2 (the Gaussian model's "
                    "d y / d variance, for its backward), got ",
                    model);
  SampleTensors t;
  t.x = contiguous(x);
  t.shot = contiguous(shot);
  t.read = contiguous(read);
  t.out = empty_like(t.x);
  t.plane_size = x.numel() / shot.numel();
  t.stream = make_stream(seed, offset);
  t.model = static_cast<Model>(model);
  t.has_min = clip_min.has_value();
  t.has_max = clip_max.has_value();
  t.clip_min = clip_min.value_or(0.0);
  t.clip_max = clip_max.value_or(0.0);
  return t;
}

}  // namespace noise
}  // namespace cycleisp_fast

CF_OP_SCHEMAS(m) {
  m.def(
      "noise_sample(Tensor x, Tensor shot, Tensor read, int seed, int offset, int model, float? clip_min, "
      "float? clip_max) -> Tensor");
}
