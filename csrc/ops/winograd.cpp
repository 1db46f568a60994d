// Schema of cycleisp_fast::winograd_conv3x3 and its host-side argument checks.
#include "winograd.h"

#include <algorithm>

namespace cycleisp_fast {
namespace winograd {

namespace {

// The shape of a convolution of x (N, C, H, W) to `out_channels` channels, and its 4x4 output tiles.
ConvShape conv_shape(const Tensor& x, int64_t out_channels) {
  const int64_t height = x.size(2), width = x.size(3);
  return {x.size(0), x.size(1), height, width, out_channels, (height + kOutputTile - 1) / kOutputTile,
          (width + kOutputTile - 1) / kOutputTile};
}

// The (6, 3) float64 kernel transform G, contiguous.
Tensor checked_transform(const Tensor& transform, const char* op) {
  CF_CHECK(transform.dim() == 2 && transform.size(0) == kInputTile && transform.size(1) == 3 &&
               transform.scalar_type() == ScalarType::Double && transform.is_cpu(),
           op, ": transform must be the (6, 3) float64 kernel transform G on the CPU, got ", transform.sizes(), " ",
           transform.scalar_type());
  return contiguous(transform);
}

}  // namespace

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
  t.shape = conv_shape(x, weight.size(2));
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

WeightTransformTensors prepare_weight_transform(const Tensor& weight, const Tensor& transform, bool flip,
                                                const Tensor& out) {
  constexpr const char* op = "winograd_transform_weight";
  CF_CHECK(weight.dim() == 4 && weight.size(2) == 3 && weight.size(3) == 3 &&
               weight.scalar_type() == ScalarType::Float && weight.is_cpu(),
           op, ": weight must be (K, C, 3, 3) float32 on the CPU, got ", weight.sizes(), " ", weight.scalar_type(),
           " on ", weight.device());
  const int64_t K = weight.size(0), C = weight.size(1);
  const int64_t rows = flip ? K : C, cols = flip ? C : K;
  CF_CHECK(out.dim() == 3 && out.size(0) == kPoints && out.size(1) == rows && out.size(2) == cols &&
               out.scalar_type() == ScalarType::Float && out.is_cpu() && out.is_contiguous(),
           op, ": out must be contiguous float32 (36, ", rows, ", ", cols, ") on the CPU, got ", out.sizes(), " ",
           out.scalar_type());
  return {contiguous(weight), checked_transform(transform, op)};
}

WeightGradTensors prepare_weight_grad(const Tensor& x, const Tensor& grad, const Tensor& transform) {
  constexpr const char* op = "winograd_conv3x3_weight_grad";
  CF_CHECK(x.dim() == 4 && grad.dim() == 4, op, ": x and grad must be 4-D (N, C, H, W) and (N, K, H, W), got ",
           x.dim(), "-D and ", grad.dim(), "-D");
  CF_CHECK(x.scalar_type() == ScalarType::Float && grad.scalar_type() == ScalarType::Float, op,
           ": x and grad must be float32, got ", x.scalar_type(), " and ", grad.scalar_type());
  CF_CHECK(grad.device() == x.device(), op, ": grad must be on x's device ", x.device(), ", got ", grad.device());
  CF_CHECK(grad.size(0) == x.size(0) && grad.size(2) == x.size(2) && grad.size(3) == x.size(3), op,
           ": grad must be (N, K, H, W) with x's N, H, W ", x.sizes(), ", got ", grad.sizes());
  WeightGradTensors t;
  t.shape = conv_shape(x, grad.size(1));
  t.x = contiguous(x, MemoryFormat::ChannelsLast);
  t.grad = contiguous(grad, MemoryFormat::ChannelsLast);
  t.transform = checked_transform(transform, op);
  t.weight_grad = zeros_tensor({t.shape.out_channels, t.shape.in_channels, 3, 3}, ScalarType::Float, x.device());
  t.bias_grad = zeros_tensor({t.shape.out_channels}, ScalarType::Float, x.device());
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

CF_OP_SCHEMAS(m) {
  m.def("winograd_conv3x3(Tensor x, Tensor weight, Tensor? bias, int band_tiles=0) -> Tensor");
  m.def("winograd_conv3x3_weight_grad(Tensor x, Tensor grad, Tensor transform, int band_tiles=0) -> (Tensor, Tensor)");
  m.def("winograd_transform_weight(Tensor weight, Tensor transform, bool flip, Tensor(a!) out) -> ()");
}
