// Per-site math of the camera ops, shared by the CPU and CUDA kernels (and exercised by the CPU tests):
//   camera_mosaic:   linear sRGB -> colour matrix -> Brooks' highlight-safe inverse gains -> clip -> RGGB mosaic;
//   camera_demosaic: packed RGGB -> gains -> clip -> bilinear demosaic (reflect borders) -> colour matrix -> clip.
// Sites of the full-resolution grid are addressed by (y, x); the packed plane of a site is 2 * (y % 2) + (x % 2)
// (R, Gr, Gb, B) and its colour kPlaneColour[plane] (R = 0, G = 1, B = 2).
#pragma once

#include <cstdint>

#include "host_device.h"

namespace cycleisp_fast {
namespace camera {

constexpr double kHighlightInflection = 0.9;  // Brooks et al.: inverse gains fade out above this grey level

template <typename T>
CYCLEISP_HOST_DEVICE T clip01(T v) {
  return v < T(0) ? T(0) : (v > T(1) ? T(1) : v);
}

CYCLEISP_HOST_DEVICE int plane_colour(int plane) { return plane == 0 ? 0 : (plane == 3 ? 2 : 1); }

// The camera value of one mosaic site: m is the row-major 3x3 sRGB -> camera matrix, gains the inverse gains
// (R, G, B), colour the site's colour. Computes the three camera channels (the grey level needs them all).
template <typename T>
CYCLEISP_HOST_DEVICE T mosaic_site(T l0, T l1, T l2, const T* m, const T* gains, int colour) {
  const T c0 = m[0] * l0 + m[1] * l1 + m[2] * l2;
  const T c1 = m[3] * l0 + m[4] * l1 + m[5] * l2;
  const T c2 = m[6] * l0 + m[7] * l1 + m[8] * l2;
  const T grey = (c0 + c1 + c2) / T(3);
  T over = grey - T(kHighlightInflection);
  over = over < T(0) ? T(0) : over;  // NaN stays NaN, as torch.clamp_min
  const T ramp = over / T(1.0 - kHighlightInflection);
  const T mask = ramp * ramp;
  const T gain = gains[colour];
  const T blended = mask + (T(1) - mask) * gain;
  const T safe = (blended > gain || blended != blended) ? blended : gain;  // torch.maximum: NaN wins
  const T cam = colour == 0 ? c0 : (colour == 1 ? c1 : c2);
  return clip01(cam * safe);
}

// out = clip01(m @ rgb) for the row-major 3x3 matrix m.
template <typename T>
CYCLEISP_HOST_DEVICE void matrix_clip(const T* m, const T* rgb, T* out) {
  CYCLEISP_UNROLL
  for (int i = 0; i < 3; ++i) {
    out[i] = clip01(m[3 * i] * rgb[0] + m[3 * i + 1] * rgb[1] + m[3 * i + 2] * rgb[2]);
  }
}

// Reflect index into [0, n) for i in [-1, n] (n >= 2): -1 -> 1, n -> n - 2; keeps the CFA parity.
CYCLEISP_HOST_DEVICE int64_t reflect1(int64_t i, int64_t n) { return i < 0 ? 1 : (i >= n ? n - 2 : i); }

// Reads the gained, clipped RAW value at full-resolution site (y, x) of one image's packed planes
// (plane stride hw, row stride w).
template <typename T, typename in_t>
CYCLEISP_HOST_DEVICE T raw_at(const in_t* packed, const T* gains, int64_t hw, int64_t w, int64_t y, int64_t x) {
  const int plane = static_cast<int>(((y & 1) << 1) | (x & 1));
  return clip01(static_cast<T>(packed[plane * hw + (y >> 1) * w + (x >> 1)]) * gains[plane]);
}

// Linear sRGB of output pixel (y, x), H x W the full-resolution grid: bilinear demosaic then the 3x3 camera ->
// sRGB matrix m (row-major) and a clip to [0, 1]. out receives 3 values.
template <typename T, typename in_t>
CYCLEISP_HOST_DEVICE void demosaic_site(const in_t* packed, const T* gains, const T* m, int64_t H, int64_t W,
                                        int64_t y, int64_t x, T* out) {
  const int64_t hw = (H >> 1) * (W >> 1), w = W >> 1;
  const int64_t yu = reflect1(y - 1, H), yd = reflect1(y + 1, H), xl = reflect1(x - 1, W), xr = reflect1(x + 1, W);
  const T centre = raw_at<T>(packed, gains, hw, w, y, x);
  const T up = raw_at<T>(packed, gains, hw, w, yu, x), down = raw_at<T>(packed, gains, hw, w, yd, x);
  const T left = raw_at<T>(packed, gains, hw, w, y, xl), right = raw_at<T>(packed, gains, hw, w, y, xr);
  const int plane = static_cast<int>(((y & 1) << 1) | (x & 1));
  T rgb[3];
  if (plane == 0 || plane == 3) {  // R or B site: green from the 4 direct neighbours, the other from the diagonals
    const T diagonal = (raw_at<T>(packed, gains, hw, w, yu, xl) + raw_at<T>(packed, gains, hw, w, yu, xr) +
                        raw_at<T>(packed, gains, hw, w, yd, xl) + raw_at<T>(packed, gains, hw, w, yd, xr)) *
                       T(0.25);
    rgb[1] = (up + down + left + right) * T(0.25);
    rgb[plane == 0 ? 0 : 2] = centre;
    rgb[plane == 0 ? 2 : 0] = diagonal;
  } else {  // green site: red and blue from the row or the column neighbours
    const T horizontal = (left + right) * T(0.5), vertical = (up + down) * T(0.5);
    rgb[1] = centre;
    rgb[0] = plane == 1 ? horizontal : vertical;
    rgb[2] = plane == 1 ? vertical : horizontal;
  }
  matrix_clip(m, rgb, out);
}

}  // namespace camera
}  // namespace cycleisp_fast
