// CPU kernels of the camera ops: one image row per task, the per-site math of camera_math.h.

#include "../camera.h"
#include "../camera_math.h"
#include "vectorize.h"

namespace cycleisp_fast {
namespace camera {
namespace {

// Row y of image n: every site of the mosaic row, written to its packed plane.
template <typename scalar_t, typename acc_t>
CYCLEISP_CPU_CLONES void mosaic_row(const scalar_t* linear, scalar_t* packed, const acc_t* m, const acc_t* gains,
                                    int64_t H, int64_t W, int64_t y) {
  const int64_t hw_full = H * W, h = H / 2, w = W / 2;
  const scalar_t* r = linear + y * W;
  for (int64_t x = 0; x < W; ++x) {
    const int plane = static_cast<int>(((y & 1) << 1) | (x & 1));
    const acc_t value = mosaic_site<acc_t>(static_cast<acc_t>(r[x]), static_cast<acc_t>(r[hw_full + x]),
                                           static_cast<acc_t>(r[2 * hw_full + x]), m, gains, plane_colour(plane));
    packed[plane * h * w + (y >> 1) * w + (x >> 1)] = static_cast<scalar_t>(value);
  }
}

// Row y of image n's output. Interior block columns take a branch-free path with the same arithmetic as
// demosaic_site (the row's colours known, neighbours read directly); the two border columns take demosaic_site.
template <typename scalar_t, typename acc_t>
CYCLEISP_CPU_CLONES void demosaic_row(const scalar_t* packed, scalar_t* out, const acc_t* m, const acc_t* gains,
                                      int64_t H, int64_t W, int64_t y) {
  const int64_t hw_full = H * W, h = H / 2, w = W / 2;
  scalar_t* o = out + y * W;
  auto store = [&](int64_t x, const acc_t* rgb) {
    acc_t value[3];
    matrix_clip(m, rgb, value);
    for (int c = 0; c < 3; ++c) o[c * hw_full + x] = static_cast<scalar_t>(value[c]);
  };
  for (int64_t x : {int64_t(0), int64_t(1), W - 2, W - 1}) {
    if (x < 0 || x >= W || (x >= 2 && x < W - 2)) continue;
    acc_t rgb[3];
    demosaic_site<acc_t>(packed, gains, m, H, W, y, x, rgb);
    for (int c = 0; c < 3; ++c) o[c * hw_full + x] = static_cast<scalar_t>(rgb[c]);
  }
  const int64_t yu = reflect1(y - 1, H), yd = reflect1(y + 1, H);
  const bool odd = y & 1;
  // This row's two planes (a at even x, b at odd x) and the other parity's planes on the rows above and below.
  const int pa = odd ? 2 : 0, pb = odd ? 3 : 1, qa = odd ? 0 : 2, qb = odd ? 1 : 3;
  const scalar_t* a = packed + pa * h * w + (y >> 1) * w;
  const scalar_t* b = packed + pb * h * w + (y >> 1) * w;
  const scalar_t* ua = packed + qa * h * w + (yu >> 1) * w;
  const scalar_t* ub = packed + qb * h * w + (yu >> 1) * w;
  const scalar_t* da = packed + qa * h * w + (yd >> 1) * w;
  const scalar_t* db = packed + qb * h * w + (yd >> 1) * w;
  const acc_t ga = gains[pa], gb = gains[pb], gqa = gains[qa], gqb = gains[qb];
  auto v = [](const scalar_t* row, int64_t i, acc_t gain) { return clip01(static_cast<acc_t>(row[i]) * gain); };
  for (int64_t bx = 1; bx + 1 < w; ++bx) {
    acc_t rgb[3];
    {  // even x: R (even row) or Gb (odd row)
      const acc_t centre = v(a, bx, ga), left = v(b, bx - 1, gb), right = v(b, bx, gb);
      const acc_t up = v(ua, bx, gqa), down = v(da, bx, gqa);
      if (!odd) {
        const acc_t diagonal = (v(ub, bx - 1, gqb) + v(ub, bx, gqb) + v(db, bx - 1, gqb) + v(db, bx, gqb)) * acc_t(0.25);
        rgb[0] = centre;
        rgb[1] = (up + down + left + right) * acc_t(0.25);
        rgb[2] = diagonal;
      } else {
        rgb[0] = (up + down) * acc_t(0.5);
        rgb[1] = centre;
        rgb[2] = (left + right) * acc_t(0.5);
      }
      store(2 * bx, rgb);
    }
    {  // odd x: Gr (even row) or B (odd row)
      const acc_t centre = v(b, bx, gb), left = v(a, bx, ga), right = v(a, bx + 1, ga);
      const acc_t up = v(ub, bx, gqb), down = v(db, bx, gqb);
      if (!odd) {
        rgb[0] = (left + right) * acc_t(0.5);
        rgb[1] = centre;
        rgb[2] = (up + down) * acc_t(0.5);
      } else {
        const acc_t diagonal = (v(ua, bx, gqa) + v(ua, bx + 1, gqa) + v(da, bx, gqa) + v(da, bx + 1, gqa)) * acc_t(0.25);
        rgb[0] = diagonal;
        rgb[1] = (up + down + left + right) * acc_t(0.25);
        rgb[2] = centre;
      }
      store(2 * bx + 1, rgb);
    }
  }
}

// Per-image parameters as acc_t: matrix (9) then gains (count).
template <typename scalar_t, typename acc_t>
std::vector<acc_t> image_params(const CameraPlan& plan, int64_t n, int64_t gain_count) {
  std::vector<acc_t> params(9 + gain_count);
  const scalar_t* m = plan.matrix.const_data_ptr<scalar_t>() + n * 9;
  const scalar_t* g = plan.gains.const_data_ptr<scalar_t>() + n * gain_count;
  for (int i = 0; i < 9; ++i) params[i] = static_cast<acc_t>(m[i]);
  for (int64_t i = 0; i < gain_count; ++i) params[9 + i] = static_cast<acc_t>(g[i]);
  return params;
}

template <bool kMosaic>
Tensor run(CameraPlan plan) {
  if (plan.dst.numel() == 0) return plan.dst;
  CF_DISPATCH_FLOATING(plan.src.scalar_type(), "camera_cpu", [&] {
    using acc_t = opmath_t<scalar_t>;
    const int64_t gain_count = kMosaic ? 3 : 4;
    std::vector<std::vector<acc_t>> params;
    for (int64_t n = 0; n < plan.N; ++n) params.push_back(image_params<scalar_t, acc_t>(plan, n, gain_count));
    const scalar_t* src = plan.src.const_data_ptr<scalar_t>();
    scalar_t* dst = plan.dst.mutable_data_ptr<scalar_t>();
    const int64_t H = plan.H, W = plan.W, image = 3 * H * W;  // elements per image, both layouts
    const int64_t grain = std::max<int64_t>(1, 8192 / std::max<int64_t>(W, 1));
    parallel_for(0, plan.N * H, grain, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t n = row / H, y = row % H;
        const acc_t* p = params[n].data();
        if (kMosaic) {
          mosaic_row<scalar_t, acc_t>(src + n * image, dst + n * (H * W), p, p + 9, H, W, y);
        } else {
          demosaic_row<scalar_t, acc_t>(src + n * (H * W), dst + n * image, p, p + 9, H, W, y);
        }
      }
    });
  });
  return plan.dst;
}

Tensor camera_mosaic_cpu(const Tensor& linear, const Tensor& rgb2cam, const Tensor& gains) {
  return run<true>(plan_mosaic(linear, rgb2cam, gains));
}

Tensor camera_demosaic_cpu(const Tensor& packed, const Tensor& gains, const Tensor& cam2rgb) {
  return run<false>(plan_demosaic(packed, gains, cam2rgb));
}

}  // namespace
}  // namespace camera
}  // namespace cycleisp_fast

STABLE_TORCH_LIBRARY_IMPL(cycleisp_fast, CPU, m) {
  m.impl("camera_mosaic", TORCH_BOX(&cycleisp_fast::camera::camera_mosaic_cpu));
  m.impl("camera_demosaic", TORCH_BOX(&cycleisp_fast::camera::camera_demosaic_cpu));
}
