// Schema of cycleisp_fast::winograd_conv3x3 and its host-side argument checks.
#include "winograd.h"

#include <algorithm>

namespace cycleisp_fast {
namespace winograd {

ConvTensors prepare(const Tensor& x, const Tensor& weight, const std::optional<Tensor>& bias) {
  constexpr const char* op = "winograd_conv3x3";
  CF_CHECK(x.dim() == 4, op, ": x must be 4-D (N, C, H, W), got ", x.dim(), "-D");
  CF_CHECK(x.scalar_type() == ScalarType::Float, op, ": x must be float32, got ", x.scalar_type());
  CF_CHECK(weight.dim() == 3 && weight.size(0) == kPoints && weight.size(1) == x.size(1), op,
           ": weight must be the transformed weight (36, C, K) with C = ", x.size(1), " input channels, got ",
           weight.sizes());
  CF_CHECK(weight.scalar_type() == ScalarType::Float && weight.device() == x.device(), op,
           ": weight must be float32 on x's device ", x.device(), ", got ", weight.scalar_type(), " on ",
           weight.device());
  ConvTensors t;
  t.shape.batch = x.size(0);
  t.shape.in_channels = x.size(1);
  t.shape.height = x.size(2);
  t.shape.width = x.size(3);
  t.shape.out_channels = weight.size(2);
  t.shape.tiles_h = (t.shape.height + kOutputTile - 1) / kOutputTile;
  t.shape.tiles_w = (t.shape.width + kOutputTile - 1) / kOutputTile;
  if (bias.has_value()) {
    CF_CHECK(bias->dim() == 1 && bias->size(0) == t.shape.out_channels, op, ": bias must be (K,) with K = ",
             t.shape.out_channels, ", got ", bias->sizes());
    CF_CHECK(bias->scalar_type() == ScalarType::Float && bias->device() == x.device(), op,
             ": bias must be float32 on x's device ", x.device(), ", got ", bias->scalar_type(), " on ",
             bias->device());
    t.bias = contiguous(*bias);
  }
  t.x = contiguous(x, MemoryFormat::ChannelsLast);
  t.weight = contiguous(weight);
  t.out = empty_tensor({t.shape.batch, t.shape.out_channels, t.shape.height, t.shape.width}, ScalarType::Float,
                       x.device(), MemoryFormat::ChannelsLast);
  return t;
}

int64_t band_tiles(const ConvShape& shape, int64_t requested) {
  if (requested > 0) return std::min(requested, std::max<int64_t>(shape.tiles(), 1));
  constexpr int64_t kBandBytes = int64_t(768) << 10;
  const int64_t bytes_per_tile = kPoints * (shape.in_channels + shape.out_channels) * int64_t(sizeof(float));
  const int64_t tiles = std::max<int64_t>(32, kBandBytes / bytes_per_tile);
  return std::min(tiles, std::max<int64_t>(shape.tiles(), 1));
}

}  // namespace winograd
}  // namespace cycleisp_fast

CF_OP_SCHEMAS(m) { m.def("winograd_conv3x3(Tensor x, Tensor weight, Tensor? bias, int band_tiles=0) -> Tensor"); }
