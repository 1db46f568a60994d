// Schema of cycleisp_fast::bayer_remap and its host-side argument checks.
#include "bayer.h"


#include <string>

namespace cycleisp_fast {
namespace bayer {
namespace {

Layout parse_layout(std::string_view name, const char* arg) {
  if (name == "rgb") return Layout::kRgb;
  if (name == "cfa") return Layout::kCfa;
  if (name == "packed") return Layout::kPacked;
  CF_CHECK(false, "bayer_remap: ", arg, " must be 'rgb', 'cfa' or 'packed', got '", std::string(name), "'");
}

int parse_red_site(std::string_view pattern) {
  if (pattern == "RGGB") return 0;
  if (pattern == "GRBG") return 1;
  if (pattern == "GBRG") return 2;
  if (pattern == "BGGR") return 3;
  CF_CHECK(false, "bayer_remap: pattern must be one of 'RGGB', 'BGGR', 'GRBG', 'GBRG', got '",
                    std::string(pattern), "'");
}

int64_t channels_of(Layout layout) {
  return layout == Layout::kRgb ? 3 : layout == Layout::kCfa ? 1 : 4;
}

const char* name_of(Layout layout) {
  return layout == Layout::kRgb ? "rgb" : layout == Layout::kCfa ? "cfa" : "packed";
}

}  // namespace

RemapPlan plan_remap(const Tensor& src, std::string_view src_layout, std::string_view dst_layout,
                     std::string_view pattern, std::optional<DoubleArrayRef> black,
                     std::optional<DoubleArrayRef> white) {
  RemapPlan plan;
  plan.src_layout = parse_layout(src_layout, "src_layout");
  plan.dst_layout = parse_layout(dst_layout, "dst_layout");
  CF_CHECK(plan.src_layout != plan.dst_layout, "bayer_remap: src_layout and dst_layout must differ, both are '",
                    std::string(src_layout), "'");
  plan.red_site = parse_red_site(pattern);
  CF_CHECK(src.dim() == 4, "bayer_remap: src must be 4-D (N, C, H, W), got ", src.dim(), "-D");
  const int64_t channels = channels_of(plan.src_layout);
  CF_CHECK(src.size(1) == channels, "bayer_remap: src in layout '", name_of(plan.src_layout), "' must have ",
                    channels, " channels, got ", src.size(1));
  plan.N = src.size(0);
  if (plan.src_layout == Layout::kPacked) {
    plan.H = src.size(2) * 2;
    plan.W = src.size(3) * 2;
  } else {
    plan.H = src.size(2);
    plan.W = src.size(3);
    CF_CHECK(plan.H % 2 == 0 && plan.W % 2 == 0, "bayer_remap: src height and width must be even, got ",
                      plan.H, "x", plan.W);
  }
  CF_CHECK(black.has_value() == white.has_value(),
                    "bayer_remap: black and white must be given together or not at all");
  plan.has_levels = black.has_value();
  plan.black = {0.0, 0.0, 0.0, 0.0};
  plan.white = {1.0, 1.0, 1.0, 1.0};
  if (plan.has_levels) {
    CF_CHECK(black->size() == 4 && white->size() == 4,
                      "bayer_remap: black and white must have 4 values (R, Gr, Gb, B), got ", black->size(), " and ",
                      white->size());
    for (int c = 0; c < 4; ++c) {
      plan.black[c] = (*black)[c];
      plan.white[c] = (*white)[c];
      CF_CHECK(plan.white[c] != plan.black[c], "bayer_remap: white must differ from black, channel ", c,
                        " has both equal to ", plan.black[c]);
    }
  }
  const auto dtype = src.scalar_type();
  CF_CHECK(is_floating(dtype) || dtype == ScalarType::Byte || dtype == ScalarType::Short ||
                       dtype == ScalarType::UInt16 || dtype == ScalarType::Int,
                   "bayer_remap: src must be a floating tensor or uint8/int16/uint16/int32 RAW samples, got ", dtype);
  const auto out_dtype = is_floating(dtype) ? dtype : ScalarType::Float;
  const int64_t out_channels = channels_of(plan.dst_layout);
  const bool packed_out = plan.dst_layout == Layout::kPacked;
  plan.src = contiguous(src);
  plan.dst = empty_tensor({plan.N, out_channels, packed_out ? plan.H / 2 : plan.H, packed_out ? plan.W / 2 : plan.W},
                          out_dtype, src.device());
  return plan;
}

}  // namespace bayer
}  // namespace cycleisp_fast

CF_OP_SCHEMAS(m) {
  m.def(
      "bayer_remap(Tensor src, str src_layout, str dst_layout, str pattern, float[]? black=None, "
      "float[]? white=None) -> Tensor");
}
