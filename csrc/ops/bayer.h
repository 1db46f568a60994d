// Host-side plan of a Bayer remap, shared by the CPU and CUDA kernels: argument checks, the
// contiguous source, the allocated destination, and the runtime-to-template dispatch of layouts.
#pragma once

#include <array>
#include <optional>
#include <type_traits>

#include "bayer_math.h"
#include "stable.h"

namespace cycleisp_fast {
namespace bayer {

struct RemapPlan {
  Layout src_layout;
  Layout dst_layout;
  int red_site;
  bool has_levels;
  std::array<double, 4> black;  // per canonical channel (R, Gr, Gb, B); 0 without levels
  std::array<double, 4> white;  // per canonical channel; 1 without levels
  int64_t N, H, W;              // batch and full-resolution grid
  Tensor src;               // contiguous source
  Tensor dst;               // allocated destination (contiguous)
};

// Checks the arguments of cycleisp_fast::bayer_remap and allocates its output.
RemapPlan plan_remap(const Tensor& src, std::string_view src_layout, std::string_view dst_layout,
                     std::string_view pattern, std::optional<DoubleArrayRef> black,
                     std::optional<DoubleArrayRef> white);

template <Layout L>
using LayoutTag = std::integral_constant<Layout, L>;

// Calls f(LayoutTag<S>{}, LayoutTag<D>{}) for the runtime pair (s, d), s != d.
template <typename F>
void dispatch_layout_pair(Layout s, Layout d, F&& f) {
  using L = Layout;
  if (s == L::kRgb && d == L::kCfa) return f(LayoutTag<L::kRgb>{}, LayoutTag<L::kCfa>{});
  if (s == L::kRgb && d == L::kPacked) return f(LayoutTag<L::kRgb>{}, LayoutTag<L::kPacked>{});
  if (s == L::kCfa && d == L::kRgb) return f(LayoutTag<L::kCfa>{}, LayoutTag<L::kRgb>{});
  if (s == L::kCfa && d == L::kPacked) return f(LayoutTag<L::kCfa>{}, LayoutTag<L::kPacked>{});
  if (s == L::kPacked && d == L::kRgb) return f(LayoutTag<L::kPacked>{}, LayoutTag<L::kRgb>{});
  return f(LayoutTag<L::kPacked>{}, LayoutTag<L::kCfa>{});
}

// Output element type: float32 for integer RAW input, else the input type.
template <typename in_t>
using remap_out_t = std::conditional_t<std::is_integral<in_t>::value, float, in_t>;

}  // namespace bayer
}  // namespace cycleisp_fast

// The dtypes bayer_remap accepts: floating types, and integer RAW samples.
#define CYCLEISP_DISPATCH_BAYER_TYPES(DTYPE, NAME, ...)                                                      \
  CF_DISPATCH_SWITCH(DTYPE, NAME,                                                                           \
                     CF_FLOATING_CASES(__VA_ARGS__) CF_DISPATCH_CASE(Byte, uint8_t, __VA_ARGS__)             \
                         CF_DISPATCH_CASE(Short, int16_t, __VA_ARGS__) CF_DISPATCH_CASE(UInt16, uint16_t, __VA_ARGS__) \
                             CF_DISPATCH_CASE(Int, int32_t, __VA_ARGS__))
