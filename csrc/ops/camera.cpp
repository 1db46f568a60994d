// Schemas of the camera ops and their host-side argument checks.
#include "camera.h"


#include <vector>

namespace cycleisp_fast {
namespace camera {
namespace {

void check_params(const char* op, const Tensor& src, const Tensor& param, const char* name, int64_t n,
                  IntArrayRef shape) {
  std::vector<int64_t> expected{n};
  expected.insert(expected.end(), shape.begin(), shape.end());
  CF_CHECK(param.sizes().vec() == expected, op, ": ", name, " must have shape ", IntArrayRef(expected),
                    ", got ", param.sizes());
  CF_CHECK(param.scalar_type() == src.scalar_type() && param.device() == src.device(), op, ": ", name,
                    " must have the image's dtype and device (", src.scalar_type(), ", ", src.device(), "), got ",
                    param.scalar_type(), ", ", param.device());
}

}  // namespace

CameraPlan plan_mosaic(const Tensor& linear, const Tensor& rgb2cam, const Tensor& gains) {
  CF_CHECK(linear.dim() == 4 && linear.size(1) == 3, "camera_mosaic: linear must be (N, 3, H, W), got ",
                    linear.sizes());
  CF_CHECK(linear.size(2) % 2 == 0 && linear.size(3) % 2 == 0,
                    "camera_mosaic: linear height and width must be even, got ", linear.sizes());
  CF_CHECK(is_floating(linear.scalar_type()), "camera_mosaic: linear must be floating, got ",
                    linear.scalar_type());
  const int64_t n = linear.size(0);
  check_params("camera_mosaic", linear, rgb2cam, "rgb2cam", n, {3, 3});
  check_params("camera_mosaic", linear, gains, "gains", n, {3});
  CameraPlan plan{contiguous(linear), contiguous(rgb2cam), contiguous(gains), Tensor(), n, linear.size(2),
                  linear.size(3)};
  plan.dst = empty_tensor({n, 4, plan.H / 2, plan.W / 2}, linear.scalar_type(), linear.device());
  return plan;
}

CameraPlan plan_demosaic(const Tensor& packed, const Tensor& gains, const Tensor& cam2rgb) {
  CF_CHECK(packed.dim() == 4 && packed.size(1) == 4, "camera_demosaic: packed must be (N, 4, h, w), got ",
                    packed.sizes());
  CF_CHECK(is_floating(packed.scalar_type()), "camera_demosaic: packed must be floating, got ",
                    packed.scalar_type());
  const int64_t n = packed.size(0);
  check_params("camera_demosaic", packed, gains, "gains", n, {4});
  check_params("camera_demosaic", packed, cam2rgb, "cam2rgb", n, {3, 3});
  CameraPlan plan{contiguous(packed), contiguous(cam2rgb), contiguous(gains), Tensor(), n, packed.size(2) * 2,
                  packed.size(3) * 2};
  plan.dst = empty_tensor({n, 3, plan.H, plan.W}, packed.scalar_type(), packed.device());
  return plan;
}

}  // namespace camera
}  // namespace cycleisp_fast

CF_OP_SCHEMAS(m) {
  m.def("camera_mosaic(Tensor linear, Tensor rgb2cam, Tensor gains) -> Tensor");
  m.def("camera_demosaic(Tensor packed, Tensor gains, Tensor cam2rgb) -> Tensor");
}
