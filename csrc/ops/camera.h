// Host-side checks of the camera ops (cycleisp_fast::camera_mosaic, cycleisp_fast::camera_demosaic), shared by
// the CPU and CUDA kernels: they return the contiguous inputs and the allocated output.
#pragma once

#include "stable.h"

namespace cycleisp_fast {
namespace camera {

struct CameraPlan {
  Tensor src;     // contiguous (N, 3, H, W) linear sRGB, or (N, 4, H/2, W/2) packed RAW
  Tensor matrix;  // contiguous (N, 3, 3)
  Tensor gains;   // contiguous (N, 3) inverse gains, or (N, 4) per packed plane
  Tensor dst;     // (N, 4, H/2, W/2) or (N, 3, H, W)
  int64_t N, H, W;    // batch and full-resolution grid
};

CameraPlan plan_mosaic(const Tensor& linear, const Tensor& rgb2cam, const Tensor& gains);
CameraPlan plan_demosaic(const Tensor& packed, const Tensor& gains, const Tensor& cam2rgb);

}  // namespace camera
}  // namespace cycleisp_fast
