// Physics-based RAW noise (ELD, Wei et al. 2020/2021; LED 2023; PMN 2022), per element, shared verbatim by the CPU
// and CUDA kernels; the Triton kernel and the plain-PyTorch reference implement the same streams and formulas
// (triton_kernels/physical_noise.py, cycleisp_fast/reference/physical_noise.py).
//
// For element i = ((n C + c) H + h) W + w of x (N, C, H, W), with the per-image parameters of image n
// (gain K, scale s, read scale sigma, read shape lambda, row scale sigma_r, quantisation step q) and bias b[n, c]:
//
//   signal = s x                                             (x in [0, 1] -> DN above black; s = saturation / ratio)
//   shot   = K Poisson(max(signal, 0) / K)   if p           (photo-electrons counted exactly, times the gain)
//          = signal                          otherwise (and where K == 0 or x is NaN)
//   read   = sigma z_i                       if g           (Gaussian read noise)
//          = sigma Q_lambda(u_i)             if t           (Tukey-lambda read noise)
//   row    = sigma_r z_row(n, row)           if r           (one Gaussian offset per full-resolution sensor row)
//   quant  = q (v_i - 1/2)                   if q           (uniform ADC rounding error)
//   bias   = b[n, c]                         if c           (colour bias / black-level error)
//   y      = ((((shot + read) + row) + quant) + bias) / s   (back to the units of x), then the clip.
//
// Streams (Philox4x32-10 keyed by the seed, as noise_math.h; `offset` selects the stream):
//   z_i      round 0, the tile layout of noise_math.h (the same normals as noise_sample's for that seed/offset);
//   Poisson  rounds >= 1 at counter index i, exactly as noise_math.h;
//   u_i      round kTukeyRound, v_i round kQuantRound, each in the tile layout of the Gaussian stream (element i
//            takes word r / 256 of counter 256 t + r % 256, t = i / 1024, r = i % 1024): one Philox call serves four
//            elements; 23-bit open uniforms for float32 compute, 32-bit for float64;
//   z_row    round kRowRound at counter index n * rows + row: the cos branch of Box-Muller of its words (0, 1).
// Rows: with no row phases (a mosaic or planar image) row = h and rows = H: every channel of a row shares the
// offset. With row phases (a packed Bayer image, one phase per plane: the plane's row in the 2x2 block) row =
// 2 h + phase[c] and rows = 2 H, so the packed planes of one sensor row share its offset.
#pragma once

#include <cmath>
#include <cstdint>

#include "noise_math.h"

namespace cycleisp_fast {
namespace physical_noise {

using noise::Stream;
using noise::Words;

constexpr uint32_t kTukeyRound = 0xFFFFFFFDu;  // above every Poisson round (<= 2^17)
constexpr uint32_t kQuantRound = 0xFFFFFFFEu;
constexpr uint32_t kRowRound = 0xFFFFFFFFu;

// The word of element i in the tile layout of `round` (the CPU kernel draws whole tiles instead).
CYCLEISP_HOST_DEVICE uint32_t tile_word_at(const Stream& stream, int64_t i, uint32_t round) {
  const noise::GaussianSite site = noise::gaussian_site(i);
  const Words words = stream.draw(site.counter_index, round);
  return site.word == 0 ? words.w[0] : site.word == 1 ? words.w[1] : site.word == 2 ? words.w[2] : words.w[3];
}

// Noise components (LED's letters).
enum Component : int64_t {
  kShot = 1,          // p: Poisson shot noise
  kGaussianRead = 2,  // g
  kTukeyRead = 4,     // t
  kRow = 8,           // r
  kQuantization = 16, // q
  kColorBias = 32,    // c
};
constexpr int64_t kAllComponents = 63;

// The per-image parameters, in the order of the op's `params` columns.
enum Param : int { kGain = 0, kScale = 1, kReadScale = 2, kReadShape = 3, kRowScale = 4, kQuantStep = 5, kParams = 6 };

// Below it |lambda| is taken as 0: the Tukey quantile is its logistic limit (error < 1e-10 relative).
constexpr double kLogisticLimit = 1e-12;

// ---- expm1 without branches or calls (float32), so that CPU loops over it vectorise ---------------------

// expm1(x) for |x| <= 87 within 2 ulp: x = k ln 2 + r with |r| <= ln 2 / 2, expm1(x) = 2^k expm1(r) + (2^k - 1),
// expm1(r) by its Taylor series to r^7 (relative error < 6e-9). k = 0 (|x| < ln 2 / 2) gives the series alone,
// so small arguments keep their relative accuracy.
CYCLEISP_HOST_DEVICE float expm1_float(float x) {
  x = x < -87.0f ? -87.0f : (x > 87.0f ? 87.0f : x);
  const float t = x * 1.44269504f;
  const int k = static_cast<int>(t + (t >= 0.0f ? 0.5f : -0.5f));  // round half away from zero
  const float kf = static_cast<float>(k);
  const float r = (x - kf * 0.693145752f) - kf * 1.42860677e-06f;  // ln 2 = hi + lo, k * hi exact
  const float p =
      r * (1.0f + r * (0.5f + r * (1.66666667e-01f +
                                    r * (4.16666667e-02f + r * (8.33333333e-03f + r * (1.38888889e-03f + r * 1.98412698e-04f))))));
  const float two_k = noise::bits_float(static_cast<uint32_t>(k + 127) << 23);
  return two_k * p + (two_k - 1.0f);
}

// ---- Tukey lambda -----------------------------------------------------------------------------------------

// The Tukey-lambda quantile Q(u) = (u^lambda - (1 - u)^lambda) / lambda, written as (expm1(lambda log u) -
// expm1(lambda log(1 - u))) / lambda so that it stays accurate as lambda -> 0, where it tends to the logistic
// log(u / (1 - u)) (taken for |lambda| < kLogisticLimit); u is the open uniform of word w, and 1 - u is exact too.
struct LogUniforms {
  float a, b;  // log u, log(1 - u)
};
struct LogUniformsD {
  double a, b;
};

CYCLEISP_HOST_DEVICE LogUniforms log_uniforms(uint32_t w, float) {
  const uint32_t m = w >> 9;
  const float u = (static_cast<float>(m) + 0.5f) * 1.1920928955078125e-07f;
  const float v = (static_cast<float>(0x800000u - m) - 0.5f) * 1.1920928955078125e-07f;  // 1 - u
  return {noise::log_positive(u), noise::log_positive(v)};
}

CYCLEISP_HOST_DEVICE LogUniformsD log_uniforms(uint32_t w, double) {
  const double u = (static_cast<double>(w) + 0.5) * 2.3283064365386963e-10;
  const double v = (4294967296.0 - static_cast<double>(w) - 0.5) * 2.3283064365386963e-10;  // 1 - u
  return {noise::log_positive(u), noise::log_positive(v)};
}

CYCLEISP_HOST_DEVICE float tukey_general(uint32_t w, float lambda) {
  const LogUniforms l = log_uniforms(w, 0.0f);
  return (expm1_float(lambda * l.a) - expm1_float(lambda * l.b)) / lambda;
}

CYCLEISP_HOST_DEVICE double tukey_general(uint32_t w, double lambda) {
  const LogUniformsD l = log_uniforms(w, 0.0);
  return (std::expm1(lambda * l.a) - std::expm1(lambda * l.b)) / lambda;
}

template <typename acc_t>
CYCLEISP_HOST_DEVICE acc_t logistic_quantile(uint32_t w) {
  const auto l = log_uniforms(w, acc_t(0));
  return l.a - l.b;
}

template <typename acc_t>
CYCLEISP_HOST_DEVICE bool tukey_is_logistic(acc_t lambda) {
  return std::fabs(lambda) < static_cast<acc_t>(kLogisticLimit);
}

// (The CPU kernel calls the two branches in separate loops: the select on a loop-invariant shape blocks GCC's
// vectoriser.)
template <typename acc_t>
CYCLEISP_HOST_DEVICE acc_t tukey_lambda_quantile(uint32_t w, acc_t lambda) {
  return tukey_is_logistic(lambda) ? logistic_quantile<acc_t>(w) : tukey_general(w, lambda);
}

// ---- the row offsets and the sum -------------------------------------------------------------------------

// The standard normal of sensor row `row_index` (= n * rows + row).
template <typename acc_t>
CYCLEISP_HOST_DEVICE acc_t row_normal(const Stream& stream, int64_t row_index) {
  const Words words = stream.draw(row_index, kRowRound);
  return noise::box_muller(words.w[0], words.w[1], acc_t(0)).first;
}

// The uniform's offset from 1/2 for the quantisation noise: in (-1/2, 1/2), exact.
CYCLEISP_HOST_DEVICE float centred_uniform(uint32_t w, float) { return noise::uniform_open(w, 0.0f) - 0.5f; }
CYCLEISP_HOST_DEVICE double centred_uniform(uint32_t w, double) { return noise::uniform_open(w, 0.0) - 0.5; }

// The shot part in DN: K times the Poisson count of the electrons s x / K (the count drawn by the caller from
// poisson_rate below, in float64), or the signal itself where there is no shot noise (p off, K == 0, NaN x).
template <typename acc_t>
CYCLEISP_HOST_DEVICE bool shot_degenerate(acc_t signal, acc_t gain) {
  return gain == acc_t(0) || signal != signal;
}

template <typename acc_t>
CYCLEISP_HOST_DEVICE double poisson_rate(acc_t signal, acc_t gain) {
  return static_cast<double>(signal) / static_cast<double>(gain);
}

template <typename acc_t>
CYCLEISP_HOST_DEVICE acc_t shot_from_count(acc_t signal, acc_t gain, double count) {
  return shot_degenerate(signal, gain) ? signal : static_cast<acc_t>(static_cast<double>(gain) * count);
}

// y in the units of x from the parts in DN (absent parts are 0).
template <typename acc_t>
CYCLEISP_HOST_DEVICE acc_t combine(acc_t shot, acc_t read, acc_t row, acc_t quant, acc_t bias, acc_t scale) {
  return ((((shot + read) + row) + quant) + bias) / scale;
}

}  // namespace physical_noise
}  // namespace cycleisp_fast
