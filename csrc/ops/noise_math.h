// Counter-based noise sampling shared verbatim by the CPU and CUDA kernels; the Triton kernel and the
// plain-PyTorch reference implement the same streams and formulas (triton_kernels/noise.py,
// cycleisp_fast/reference/noise.py).
//
// Random words: Philox4x32-10 (Salmon et al. 2011, the generator of cuRAND, ATen's CUDA RNG and Triton's
// tl.philox), key = (seed & 0xffffffff, seed >> 32), counter = (c0, c1, c2, c3) = (lo32(j), hi32(j), round,
// offset). `offset` selects an independent stream; `round` 0 is the Gaussian stream, rounds >= 1 the
// Poisson draws. One call gives four 32-bit words.
//
// Gaussian stream (round 0), "tile" layout: element i lies in tile t = i / 1024 at r = i % 1024; its
// counter index is j = 256 t + r % 256 and its word is r / 256. Words (0, 1) and (2, 3) of a counter are
// Box-Muller pairs: u1 from the first word gives the radius sqrt(-2 ln u1), u2 from the second the
// angle 2 pi u2; the first word's element gets radius * cos, the second's radius * sin. So a tile of 1024
// elements is four contiguous runs of 256 that need 256 Philox calls, and every Philox word is used.
//
// Poisson draws (rounds >= 1): element i uses counter index j = i. Rates below kInversionLimit use
// inversion with one 52-bit uniform built from words (0, 1) of round 1. Larger rates use Hormann's PTRS
// (transformed rejection with squeeze, 1993): attempt a takes words (2 (a % 2), 2 (a % 2) + 1) of round
// 1 + a / 2 as (U, V). All Poisson arithmetic is float64 whatever the tensor dtype, so the integer draws
// are exact for every rate that float64 represents (the tests check rates 1e-3 ... 1e7).
//
// Uniforms (open intervals, never 0 or 1):
//   float32 compute: u = ((w >> 9) + 0.5) * 2^-23 (exact in float32);  float64 compute: u = (w + 0.5) * 2^-32;
//   Poisson attempts: u = (w + 0.5) * 2^-32 (float64);  inversion: u = ((w0 * 2^32 + w1) >> 12 + 0.5) * 2^-52 (exact in float64).
// With float32 compute the Box-Muller radius is at most sqrt(48 ln 2) = 5.77, so |z| <= 5.77 (a normal
// exceeds it with probability 8e-9); float64 compute reaches 6.76.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "host_device.h"

namespace cycleisp_fast {
namespace noise {

constexpr int64_t kTile = 1024;           // elements per tile of the Gaussian stream
constexpr int64_t kTileCounters = 256;    // Philox counters per tile (4 words each)
constexpr double kInversionLimit = 10.0;  // rates below it are drawn by inversion, the rest by PTRS
constexpr uint32_t kMaxPoissonRounds = 1u << 16;  // PTRS gives up after 2^17 attempts (probability ~0)

// kHeteroscedasticSensitivity is the backward of the Gaussian model: d y / d variance = z / (2 sigma).
enum class Model : int { kHeteroscedasticGaussian = 0, kPoissonGaussian = 1, kHeteroscedasticSensitivity = 2 };

struct Words {
  uint32_t w[4];
};

// Philox4x32-10 of counter (c0, c1, c2, c3) under key (k0, k1).
CYCLEISP_HOST_DEVICE Words philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                                         uint32_t k1) {
#if defined(__CUDACC__)
#pragma unroll
#else
#pragma GCC unroll 10
#endif
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0;
    const uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2;
    const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
    const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
    c1 = static_cast<uint32_t>(p1);
    c3 = static_cast<uint32_t>(p0);
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return {{c0, c1, c2, c3}};
}

// The key and stream of one op call.
struct Stream {
  uint32_t k0, k1, offset;

  CYCLEISP_HOST_DEVICE Words draw(int64_t counter_index, uint32_t round) const {
    const uint64_t j = static_cast<uint64_t>(counter_index);
    return philox4x32_10(static_cast<uint32_t>(j), static_cast<uint32_t>(j >> 32), round, offset, k0, k1);
  }
};

CYCLEISP_HOST_DEVICE Stream make_stream(int64_t seed, int64_t offset) {
  const uint64_t s = static_cast<uint64_t>(seed);
  return {static_cast<uint32_t>(s), static_cast<uint32_t>(s >> 32), static_cast<uint32_t>(offset)};
}

// ---- uniforms -----------------------------------------------------------------------------------------

CYCLEISP_HOST_DEVICE float uniform_open(uint32_t w, float) {
  return (static_cast<float>(w >> 9) + 0.5f) * 1.1920928955078125e-07f;  // 2^-23; the sum is exact in float
}

CYCLEISP_HOST_DEVICE double uniform_open(uint32_t w, double) {
  return (static_cast<double>(w) + 0.5) * 2.3283064365386963e-10;  // 2^-32
}

CYCLEISP_HOST_DEVICE double uniform52(uint32_t w0, uint32_t w1) {
  const uint64_t bits = ((static_cast<uint64_t>(w0) << 32) | w1) >> 12;
  return (static_cast<double>(bits) + 0.5) * 2.220446049250313e-16;  // 2^-52; the sum is exact in float64
}

// ---- float32 log and sincos without branches or calls, so that CPU loops over them vectorise -----------

CYCLEISP_HOST_DEVICE uint32_t float_bits(float v) {
  uint32_t b;
  std::memcpy(&b, &v, sizeof b);
  return b;
}

CYCLEISP_HOST_DEVICE float bits_float(uint32_t b) {
  float v;
  std::memcpy(&v, &b, sizeof v);
  return v;
}

// Natural log of a positive normal float (the uniforms above), within 2.6 ulp (absolute error < 4e-8): v = 2^e m with m in
// [sqrt(1/2), sqrt(2)), log m = 2 atanh(f), f = (m - 1) / (m + 1), |f| <= 0.172, by its odd series.
CYCLEISP_HOST_DEVICE float log_positive(float v) {
  const uint32_t bits = float_bits(v);
  float m = bits_float((bits & 0x007FFFFFu) | 0x3F800000u);
  float e = static_cast<float>(static_cast<int32_t>(bits >> 23) - 127);
  const bool high = m > 1.41421356f;
  m = high ? m * 0.5f : m;
  e = high ? e + 1.0f : e;
  const float f = (m - 1.0f) / (m + 1.0f);
  const float f2 = f * f;
  const float series = 1.0f + f2 * (0.33333333f + f2 * (0.2f + f2 * (0.14285715f + f2 * 0.11111111f)));
  // ln 2 split in a part exact in float (times e < 2^8) and the rest.
  return e * 0.693145752f + (e * 1.42860677e-06f + 2.0f * f * series);
}

CYCLEISP_HOST_DEVICE uint64_t double_bits(double v) {
  uint64_t b;
  std::memcpy(&b, &v, sizeof b);
  return b;
}

CYCLEISP_HOST_DEVICE double bits_double(uint64_t b) {
  double v;
  std::memcpy(&v, &b, sizeof v);
  return v;
}

// Natural log of a positive normal double within 3 ulp, by the same reduction with the series to f^21.
CYCLEISP_HOST_DEVICE double log_positive(double v) {
  const uint64_t bits = double_bits(v);
  double m = bits_double((bits & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull);
  // The biased exponent as a double without an int64 conversion (AVX2 has none): 2^52 + field - 2^52 - 1023.
  double e = bits_double(0x4330000000000000ull | (bits >> 52)) - 4503599627371519.0;
  const bool high = m > 1.4142135623730951;
  m = high ? m * 0.5 : m;
  e = high ? e + 1.0 : e;
  const double f = (m - 1.0) / (m + 1.0);
  const double f2 = f * f;
  double series = 1.0 / 21.0;
  series = 1.0 / 19.0 + f2 * series;
  series = 1.0 / 17.0 + f2 * series;
  series = 1.0 / 15.0 + f2 * series;
  series = 1.0 / 13.0 + f2 * series;
  series = 1.0 / 11.0 + f2 * series;
  series = 1.0 / 9.0 + f2 * series;
  series = 1.0 / 7.0 + f2 * series;
  series = 1.0 / 5.0 + f2 * series;
  series = 1.0 / 3.0 + f2 * series;
  // ln 2 = hi + lo with hi's low 32 bits zero, so e * hi is exact.
  return e * 6.93147180369123816490e-01 + (e * 1.90821492927058770002e-10 + 2.0 * f * (1.0 + f2 * series));
}

// (sin, cos) of 2 pi u for u in [0, 1]: u = q / 4 + g with q = round(4 u), |g| <= 1/8 exact, and
// 2 pi u = q pi / 2 + theta with |theta| <= pi / 4, where Taylor series to theta^11 / theta^10 suffice.
struct SinCos {
  float sin, cos;
};

CYCLEISP_HOST_DEVICE SinCos sincos_two_pi(float u) {
  const int quadrant_index = static_cast<int>(4.0f * u + 0.5f);  // truncation = floor: the value is >= 0
  const float theta = (u - 0.25f * static_cast<float>(quadrant_index)) * 6.28318531f;
  const float t2 = theta * theta;
  const float s =
      theta * (1.0f + t2 * (-1.6666667e-01f + t2 * (8.3333333e-03f + t2 * (-1.9841270e-04f +
                                                                           t2 * (2.7557319e-06f + t2 * -2.5052108e-08f)))));
  const float c = 1.0f + t2 * (-0.5f + t2 * (4.1666667e-02f + t2 * (-1.3888889e-03f +
                                                                    t2 * (2.4801587e-05f + t2 * -2.7557319e-07f))));
  const int quadrant = quadrant_index & 3;
  const float sin_q = quadrant == 0 ? s : quadrant == 1 ? c : quadrant == 2 ? -s : -c;
  const float cos_q = quadrant == 0 ? c : quadrant == 1 ? -s : quadrant == 2 ? -c : s;
  return {sin_q, cos_q};
}

// ---- Box-Muller ----------------------------------------------------------------------------------------

// The two standard normals of one Box-Muller pair of words: {radius * cos, radius * sin}.
struct NormalPair {
  float first, second;
};
struct NormalPairD {
  double first, second;
};

CYCLEISP_HOST_DEVICE NormalPair box_muller(uint32_t w_radius, uint32_t w_angle, float) {
  const float radius = std::sqrt(-2.0f * log_positive(uniform_open(w_radius, 0.0f)));
  const SinCos sc = sincos_two_pi(uniform_open(w_angle, 0.0f));
  return {radius * sc.cos, radius * sc.sin};
}

CYCLEISP_HOST_DEVICE NormalPairD box_muller(uint32_t w_radius, uint32_t w_angle, double) {
  const double radius = std::sqrt(-2.0 * log_positive(uniform_open(w_radius, 0.0)));
#if defined(__CUDA_ARCH__)
  double sin_a, cos_a;  // sincospi needs no large-argument reduction (no local memory); within an ulp of the host's
  sincospi(2.0 * uniform_open(w_angle, 0.0), &sin_a, &cos_a);
#else
  const double angle = 6.283185307179586 * uniform_open(w_angle, 0.0);
  const double sin_a = std::sin(angle), cos_a = std::cos(angle);
#endif
  return {radius * cos_a, radius * sin_a};
}

// Where element i of the Gaussian stream lies: its counter index and its word (0..3).
struct GaussianSite {
  int64_t counter_index;
  int word;
};

CYCLEISP_HOST_DEVICE GaussianSite gaussian_site(int64_t i) {
  const int64_t r = i % kTile;
  return {(i / kTile) * kTileCounters + r % kTileCounters, static_cast<int>(r / kTileCounters)};
}

// The standard normal of element i alone (the kernels compute whole tiles; this is for tails and tests).
template <typename acc_t>
CYCLEISP_HOST_DEVICE acc_t standard_normal_at(const Stream& stream, int64_t i) {
  const GaussianSite site = gaussian_site(i);
  const Words words = stream.draw(site.counter_index, 0);
  const int pair = site.word & 2;
  const auto z = box_muller(words.w[pair], words.w[pair + 1], acc_t(0));
  return (site.word & 1) ? z.second : z.first;
}

// ---- Poisson -------------------------------------------------------------------------------------------

// log(k!) for integer k >= 0: the log of the exact product below 10, Stirling's series with three
// correction terms above (error < 1 / (1680 k^7) <= 6e-11). Branch-free, so that loops over it vectorise.
CYCLEISP_HOST_DEVICE double log_factorial(double k) {
  const bool small = k < 10.0;
  double factorial = 1.0;
  for (int j = 2; j < 10; ++j) factorial *= (j <= k) ? static_cast<double>(j) : 1.0;
  const double large_k = small ? 10.0 : k;
  const double log_arg = log_positive(small ? factorial : large_k);
  const double inv = 1.0 / large_k;
  const double inv2 = inv * inv;
  const double stirling = (large_k + 0.5) * log_arg - large_k + 0.91893853320467274 +
                          inv * (1.0 / 12.0 - inv2 * (1.0 / 360.0 - inv2 * (1.0 / 1260.0)));
  return small ? log_arg : stirling;
}

// A Poisson(rate) draw for rate < kInversionLimit: the smallest k with u <= P(K <= k).
CYCLEISP_HOST_DEVICE double poisson_inversion(double rate, double u) {
  double k = 0.0;
  double p = std::exp(-rate);
  double cdf = p;
  while (u > cdf) {
    k += 1.0;
    p *= rate / k;
    const double next = cdf + p;
    if (next == cdf) break;  // the remaining mass is below float64 resolution
    cdf = next;
  }
  return k;
}

// Constants of PTRS for one rate (Hormann 1993, Table 1).
struct PtrsSetup {
  double rate, a, b, inv_alpha, v_r;
};

// b, the first constant, from which the others follow.
CYCLEISP_HOST_DEVICE double ptrs_b(double rate) { return 0.931 + 2.53 * std::sqrt(rate); }

CYCLEISP_HOST_DEVICE PtrsSetup ptrs_setup(double rate, double b) {
  return {rate, -0.059 + 0.02483 * b, b, 1.1239 + 1.1328 / (b - 3.4), 0.9277 - 3.6224 / (b - 2.0)};
}

CYCLEISP_HOST_DEVICE PtrsSetup ptrs_setup(double rate) { return ptrs_setup(rate, ptrs_b(rate)); }

// The candidate k of one attempt from its first uniform u; `us` = 0.5 - |u - 0.5|.
CYCLEISP_HOST_DEVICE double ptrs_candidate(const PtrsSetup& s, double u, double* us) {
  const double centred = u - 0.5;
  *us = 0.5 - std::fabs(centred);
  return std::floor((2.0 * s.a / *us + s.b) * centred + s.rate + 0.43);
}

// The squeeze, which accepts most attempts without a logarithm.
CYCLEISP_HOST_DEVICE bool ptrs_squeeze(const PtrsSetup& s, double us, double v) { return (us >= 0.07) & (v <= s.v_r); }

// PTRS's test of the candidate k of uniforms (us, v) past the squeeze (us = 0.5 - |u - 0.5|, from ptrs_candidate).
// Every test is evaluated (& and |, no early return), so that loops over it vectorise.
CYCLEISP_HOST_DEVICE bool ptrs_accepts_past_squeeze(const PtrsSetup& s, double k, double us, double v) {
  const bool hopeless = (k < 0.0) | ((us < 0.013) & (v > us));
  const double lhs = log_positive(v * s.inv_alpha / (s.a / (us * us) + s.b));
  const double rhs = -s.rate + k * log_positive(s.rate) - log_factorial(k > 0.0 ? k : 0.0);
  return !hopeless & (lhs <= rhs);
}

// Whether PTRS accepts the candidate k of uniforms (us, v): the squeeze, else the test past it.
CYCLEISP_HOST_DEVICE bool ptrs_accepts(const PtrsSetup& s, double k, double us, double v) {
  return ptrs_squeeze(s, us, v) | ptrs_accepts_past_squeeze(s, k, us, v);
}

// The uniforms (u, v) of PTRS attempt `attempt` among the words of its round.
// (Selects rather than indexing by `attempt`, which would put the words in GPU local memory.)
CYCLEISP_HOST_DEVICE double ptrs_u(const Words& round_words, uint32_t attempt) {
  return uniform_open((attempt & 1) ? round_words.w[2] : round_words.w[0], 0.0);
}
CYCLEISP_HOST_DEVICE double ptrs_v(const Words& round_words, uint32_t attempt) {
  return uniform_open((attempt & 1) ? round_words.w[3] : round_words.w[1], 0.0);
}

// PTRS attempts `first_attempt`, first_attempt + 1, ... for element i until one is accepted; `words` are the
// words of the round holding first_attempt. After 2 kMaxPoissonRounds attempts the last candidate stands.
CYCLEISP_HOST_DEVICE double poisson_ptrs(const Stream& stream, int64_t i, const PtrsSetup& s, uint32_t first_attempt,
                                         Words words) {
  double k = 0.0;
  for (uint32_t attempt = first_attempt; attempt < 2 * kMaxPoissonRounds; ++attempt) {
    if (attempt != first_attempt && (attempt & 1) == 0) words = stream.draw(i, 1 + attempt / 2);
    double us;
    k = ptrs_candidate(s, ptrs_u(words, attempt), &us);
    if (ptrs_accepts(s, k, us, ptrs_v(words, attempt))) break;
  }
  return k;
}

// A Poisson(rate) draw for element i given the words of its round 1 (`first`); rate <= 0 (or NaN) gives 0,
// an infinite rate infinity.
CYCLEISP_HOST_DEVICE double poisson_draw(const Stream& stream, int64_t i, double rate, const Words& first) {
  if (!(rate > 0.0)) return 0.0;
  if (rate == INFINITY) return rate;
  if (rate < kInversionLimit) return poisson_inversion(rate, uniform52(first.w[0], first.w[1]));
  return poisson_ptrs(stream, i, ptrs_setup(rate), 0, first);
}

// ---- the two noise models, given the element's standard normal z ---------------------------------------

// y = x + sqrt(max(shot x + read, 0)) z: the variance is clamped at 0 for x < -read / shot.
template <typename acc_t>
CYCLEISP_HOST_DEVICE acc_t heteroscedastic_gaussian(acc_t x, acc_t shot, acc_t read, acc_t z) {
  const acc_t variance = shot * x + read;
  return x + std::sqrt(variance > acc_t(0) ? variance : acc_t(0)) * z;
}

// d y / d variance of the heteroscedastic model, z / (2 sqrt(shot x + read)), 0 where the variance is <= 0:
// the backward multiplies it by the incoming gradient (times shot for x, x for shot, 1 for read).
template <typename acc_t>
CYCLEISP_HOST_DEVICE acc_t heteroscedastic_sensitivity(acc_t x, acc_t shot, acc_t read, acc_t z) {
  const acc_t variance = shot * x + read;
  const bool positive = variance > acc_t(0);
  return positive ? z / (acc_t(2) * std::sqrt(positive ? variance : acc_t(1))) : acc_t(0);
}

// The Poisson rate of the Poisson-Gaussian model, in float64.
template <typename acc_t>
CYCLEISP_HOST_DEVICE double poisson_rate(acc_t x, acc_t shot) {
  return static_cast<double>(x) / static_cast<double>(shot);
}

// Where the Poisson-Gaussian model is its Gaussian limit x + sqrt(read) z: shot == 0, or x is NaN.
template <typename acc_t>
CYCLEISP_HOST_DEVICE bool poisson_degenerate(acc_t x, acc_t shot) {
  return shot == acc_t(0) || x != x;
}

// y = shot * k + sqrt(read) z for the Poisson count k of the rate max(x, 0) / shot.
template <typename acc_t>
CYCLEISP_HOST_DEVICE acc_t poisson_gaussian_from_count(acc_t x, acc_t shot, acc_t read, acc_t z, double k) {
  const acc_t gaussian = std::sqrt(read) * z;
  if (poisson_degenerate(x, shot)) return x + gaussian;
  return static_cast<acc_t>(static_cast<double>(shot) * k) + gaussian;
}

// The Poisson-Gaussian model for element i, given the words of its Poisson round 1.
template <typename acc_t>
CYCLEISP_HOST_DEVICE acc_t poisson_gaussian(const Stream& stream, int64_t i, const Words& first, acc_t x, acc_t shot,
                                            acc_t read, acc_t z) {
  const double k = poisson_degenerate(x, shot) ? 0.0 : poisson_draw(stream, i, poisson_rate(x, shot), first);
  return poisson_gaussian_from_count(x, shot, read, z, k);
}

template <typename acc_t>
CYCLEISP_HOST_DEVICE acc_t clip(acc_t y, bool has_min, acc_t min_value, bool has_max, acc_t max_value) {
  y = (has_min && y < min_value) ? min_value : y;
  return (has_max && y > max_value) ? max_value : y;
}

}  // namespace noise
}  // namespace cycleisp_fast
