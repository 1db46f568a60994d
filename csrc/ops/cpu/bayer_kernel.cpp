// CPU kernel of cycleisp_fast::bayer_remap: rows in parallel, block columns in a vectorisable loop over
// the shared per-element math of bayer_math.h.

#include "../bayer.h"

namespace cycleisp_fast {
namespace bayer {
namespace {

template <Layout S, Layout D, bool kLevels, typename in_t, typename out_t, typename acc_t>
void remap_rows(const RemapPlan& plan, const acc_t* black, const acc_t* white) {
  const in_t* src = plan.src.const_data_ptr<in_t>();
  out_t* dst = plan.dst.mutable_data_ptr<out_t>();
  const int64_t H = plan.H, W = plan.W, block_columns = W / 2;
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(W, 1));
  parallel_for(0, plan.N * H, grain, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const auto job = make_row_job<S, D>(src, dst, black, white, row / H, row % H, H, W, plan.red_site);
      for (int64_t bx = 0; bx < block_columns; ++bx) {
        remap_block_column<S, D, kLevels>(job, bx);
      }
    }
  });
}

Tensor bayer_remap_cpu(const Tensor& src, std::string_view src_layout, std::string_view dst_layout,
                           std::string_view pattern, std::optional<DoubleArrayRef> black,
                           std::optional<DoubleArrayRef> white) {
  RemapPlan plan = plan_remap(src, src_layout, dst_layout, pattern, black, white);
  if (plan.dst.numel() == 0) return plan.dst;
  CYCLEISP_DISPATCH_BAYER_TYPES(plan.src.scalar_type(), "bayer_remap_cpu", [&] {
    using in_t = scalar_t;
    using out_t = remap_out_t<in_t>;
    using acc_t = opmath_t<out_t>;
    acc_t black_acc[4], white_acc[4];
    for (int c = 0; c < 4; ++c) {
      black_acc[c] = static_cast<acc_t>(plan.black[c]);
      white_acc[c] = static_cast<acc_t>(plan.white[c]);
    }
    dispatch_layout_pair(plan.src_layout, plan.dst_layout, [&](auto s, auto d) {
      if (plan.has_levels) {
        remap_rows<decltype(s)::value, decltype(d)::value, true, in_t, out_t, acc_t>(plan, black_acc, white_acc);
      } else {
        remap_rows<decltype(s)::value, decltype(d)::value, false, in_t, out_t, acc_t>(plan, black_acc, white_acc);
      }
    });
  });
  return plan.dst;
}

}  // namespace
}  // namespace bayer
}  // namespace cycleisp_fast

STABLE_TORCH_LIBRARY_IMPL(cycleisp_fast, CPU, m) { m.impl("bayer_remap", TORCH_BOX(&cycleisp_fast::bayer::bayer_remap_cpu)); }
