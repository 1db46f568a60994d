// Host side of cycleisp_fast::winograd_conv3x3: a 3x3, stride-1, padding-1 convolution of a float32
// channels_last image by Winograd's minimal filtering F(4x4, 3x3) (Lavin & Gray 2016), on the CPU.
//
// Each 4x4 block of outputs comes from a 6x6 input tile: V = B^T d B per input channel, then for each of the 36
// positions p one matrix product M[p] = V[p] (tiles x C) @ U[p] (C x K), then y = A^T M A per output channel.
// U = G g G^T is the transformed weight, computed once from the 3x3 kernels (cycleisp_fast/ops/winograd.py,
// in float64). The interpolation points are 0, 1, -1, 1/2, -2 and infinity: their transforms have exact binary
// coefficients and gave the smallest float32 error of the sets tried (two thirds of that of Lavin's
// 0, +-1, +-2; 3-8x direct convolution's rounding). 9 multiplies per output become 36/16 = 2.25.
//
// The tiles go through in bands (transform, one batched matrix product through torch's bmm, inverse
// transform), each band's buffers small enough to stay in the caches; the buffers are allocated once per call.
#pragma once

#include <optional>

#include "stable.h"

namespace cycleisp_fast {
namespace winograd {

constexpr int kOutputTile = 4;                      // m: outputs per tile side
constexpr int kInputTile = kOutputTile + 3 - 1;     // m + r - 1 = 6: inputs per tile side
constexpr int kPoints = kInputTile * kInputTile;    // 36 products per tile
constexpr int kTaps = 9;                            // 3 x 3 kernel taps

struct ConvShape {
  int64_t batch, in_channels, height, width, out_channels;
  int64_t tiles_h, tiles_w;
  int64_t tiles() const { return batch * tiles_h * tiles_w; }
};

// The checked inputs (x channels_last, weight (36, C, K) and bias (K,) contiguous) and the allocated output
// (N, K, H, W) in channels_last.
struct ConvTensors {
  ConvShape shape;
  Tensor x, weight, bias, out;
};
ConvTensors prepare(const Tensor& x, const Tensor& weight, const std::optional<Tensor>& bias);

// The checked inputs of the weight gradient (x (N, C, H, W) and grad (N, K, H, W), both channels_last; the
// (6, 3) float64 kernel transform G) and its outputs: the weight gradient (K, C, 3, 3) and the bias gradient (K,),
// float32.
struct WeightGradTensors {
  ConvShape shape;
  Tensor x, grad, transform, weight_grad, bias_grad;
};
WeightGradTensors prepare_weight_grad(const Tensor& x, const Tensor& grad, const Tensor& transform);

// The checked inputs of the weight transform: weight (K, C, 3, 3) float32 and transform G (6, 3) float64,
// contiguous; `out` must be contiguous float32, (36, C, K), or (36, K, C) when flipped.
struct WeightTransformTensors {
  Tensor weight, transform;
};
WeightTransformTensors prepare_weight_transform(const Tensor& weight, const Tensor& transform, bool flip,
                                                const Tensor& out);

// The tiles per band: about 768 KiB of transformed input and products (they stay in a core's L2), at least 32
// tiles, or `requested` when positive (tests use small bands to run several on small images).
int64_t band_tiles(const ConvShape& shape, int64_t requested);

}  // namespace winograd
}  // namespace cycleisp_fast
