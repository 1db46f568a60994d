// Unit tests of csrc/ops/noise_math.h, the counter-based sampling math the noise CPU and CUDA kernels share.
// Plain C++ (no torch): Philox4x32-10 against the Random123 known answers, the stream and tile layout, the
// open uniforms at their extreme words, the branch-free logs and sincos against libm (exhaustively over the
// float32 uniforms), log(k!) against lgamma, Poisson inversion against an independently computed CDF, the
// moments and histograms of Poisson draws (inversion and PTRS), and the two noise models' special cases.
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <vector>

#include "ops/noise_math.h"
#include "tests/expect.h"

namespace noise = cycleisp_fast::noise;


static void expect_words(const noise::Words& got, uint32_t e0, uint32_t e1, uint32_t e2, uint32_t e3,
                         const char* what) {
  EXPECT(got.w[0] == e0 && got.w[1] == e1 && got.w[2] == e2 && got.w[3] == e3,
         "%s: %08x %08x %08x %08x, expected %08x %08x %08x %08x", what, got.w[0], got.w[1], got.w[2], got.w[3], e0,
         e1, e2, e3);
}

// ---- Philox and streams --------------------------------------------------------------------------------

static void test_philox_known_answers() {
  // Random123 kat_vectors, philox4x32 with 10 rounds: counter (c0..c3), key (k0, k1).
  expect_words(noise::philox4x32_10(0, 0, 0, 0, 0, 0), 0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u,
               "philox zeros");
  const uint32_t f = 0xffffffffu;
  expect_words(noise::philox4x32_10(f, f, f, f, f, f), 0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu,
               "philox ones");
  expect_words(noise::philox4x32_10(0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u, 0xa4093822u, 0x299f31d0u),
               0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u, "philox pi digits");
}

static void test_streams() {
  // key = (seed lo32, seed hi32), offset = its low 32 bits
  const noise::Stream s = noise::make_stream(static_cast<int64_t>(0x0123456789abcdefull), 0xfedcba98ll);
  EXPECT(s.k0 == 0x89abcdefu && s.k1 == 0x01234567u && s.offset == 0xfedcba98u, "make_stream: %08x %08x %08x",
         s.k0, s.k1, s.offset);
  const noise::Stream top = noise::make_stream(std::numeric_limits<int64_t>::max(), 0);
  EXPECT(top.k0 == 0xffffffffu && top.k1 == 0x7fffffffu && top.offset == 0u, "make_stream of 2^63 - 1");
  const noise::Stream small = noise::make_stream(7, 3);
  EXPECT(small.k0 == 7u && small.k1 == 0u && small.offset == 3u, "make_stream of small seed and offset");
  // draw(j, round) = Philox of counter (lo32(j), hi32(j), round, offset) under (k0, k1)
  const int64_t j = static_cast<int64_t>(0x00000abc12345678ull);
  const noise::Words expected = noise::philox4x32_10(0x12345678u, 0x00000abcu, 5u, s.offset, s.k0, s.k1);
  expect_words(s.draw(j, 5), expected.w[0], expected.w[1], expected.w[2], expected.w[3], "Stream::draw layout");
  const noise::Words other_offset = noise::Stream{s.k0, s.k1, s.offset + 1}.draw(j, 5);
  EXPECT(other_offset.w[0] != expected.w[0], "another offset gives another stream");
}

// ---- uniforms ------------------------------------------------------------------------------------------

static void test_uniforms_open() {
  const uint32_t lo = 0u, hi = 0xffffffffu;
  const float f_lo = noise::uniform_open(lo, 0.0f), f_hi = noise::uniform_open(hi, 0.0f);
  EXPECT(f_lo > 0.0f && f_lo == std::ldexp(1.0f, -24), "float uniform of word 0: %.9g", f_lo);
  EXPECT(f_hi < 1.0f && f_hi == 1.0f - std::ldexp(1.0f, -24), "float uniform of word ~0: %.9g", f_hi);
  const double d_lo = noise::uniform_open(lo, 0.0), d_hi = noise::uniform_open(hi, 0.0);
  EXPECT(d_lo > 0.0 && d_lo == std::ldexp(1.0, -33), "double uniform of word 0: %.17g", d_lo);
  EXPECT(d_hi < 1.0 && d_hi == 1.0 - std::ldexp(1.0, -33), "double uniform of word ~0: %.17g", d_hi);
  const double u_lo = noise::uniform52(lo, lo), u_hi = noise::uniform52(hi, hi);
  EXPECT(u_lo > 0.0 && u_lo == std::ldexp(1.0, -53), "uniform52 of words (0, 0): %.17g", u_lo);
  EXPECT(u_hi < 1.0, "uniform52 of words (~0, ~0) must be < 1: %.17g (1 - u = %g)", u_hi, 1.0 - u_hi);
  // the 53 bits are the top 53 of w0 w1: (1 << 11) in w1 is the least significant one
  EXPECT(noise::uniform52(0u, 1u << 12) == 1.5 * std::ldexp(1.0, -52), "uniform52 bit order");
  EXPECT(noise::uniform52(0u, (1u << 12) - 1) == std::ldexp(1.0, -53), "uniform52 drops the low 12 bits");
  EXPECT(noise::uniform52(0x80000000u, 0u) == 0.5 + std::ldexp(1.0, -53), "uniform52 is exact above 1/2");
}

// ---- log and sincos ------------------------------------------------------------------------------------

// The largest error seen and where; a NaN error sticks.
struct Worst {
  double error = 0.0, at = 0.0;
  void add(double e, double x) {
    if (!(e <= error) && !std::isnan(error)) error = e, at = x;
  }
};

// |got - ref| in units of the last place of a float (digits = 24) or double (53) of magnitude |ref|.
static double ulp_error(long double got, long double ref, int digits) {
  if (ref == 0) return got == 0 ? 0.0 : INFINITY;
  if (!std::isfinite(static_cast<double>(ref))) return got == ref ? 0.0 : NAN;
  const double unit = std::ldexp(1.0, std::ilogb(static_cast<double>(ref)) - (digits - 1));
  return static_cast<double>(std::fabs(got - ref)) / unit;
}

static void test_log_positive_float_exhaustive() {
  Worst worst;
  for (uint32_t k = 0; k < (1u << 23); ++k) {
    const float u = noise::uniform_open(k << 9, 0.0f);
    worst.add(ulp_error(noise::log_positive(u), std::log(static_cast<double>(u)), 24), u);
  }
  EXPECT(worst.error <= 2.6, "float log_positive: %.3f ulp at u = %.9g", worst.error, worst.at);
  std::printf("float log_positive over all 2^23 float uniforms: max %.3f ulp\n", worst.error);
}

static void test_log_positive_double() {
  Worst worst;
  auto check = [&](double v) {
    worst.add(ulp_error(noise::log_positive(v), std::log(static_cast<long double>(v)), 53), v);
  };
  const int n = 200000;
  const double lo = std::log(1e-300), hi = std::log(1e300);
  for (int i = 0; i <= n; ++i) check(std::exp(lo + (hi - lo) * i / n));
  // near 1 (no cancellation allowed) and at the reduction's boundaries sqrt(1/2), sqrt(2) and powers of 2
  for (int i = -2000; i <= 2000; ++i) check(1.0 + i * std::ldexp(1.0, -52));
  // (positive normal doubles only: 50 neighbours each side, none below DBL_MIN or above DBL_MAX)
  for (double edge : {std::sqrt(0.5), std::sqrt(2.0), 0.5, 2.0, 0x1p-1022, 0x1.fffffffffffffp+1023}) {
    double down = edge, up = edge;
    for (int i = 0; i <= 50; ++i) {
      if (std::isnormal(down)) check(down);
      if (std::isnormal(up) && up != edge) check(up);
      down = std::nextafter(down, 0.0), up = std::nextafter(up, INFINITY);
    }
  }
  for (uint32_t w = 0; w < 4096; ++w) check(noise::uniform_open(w, 0.0));  // the smallest double uniforms
  EXPECT(noise::log_positive(1.0) == 0.0, "log_positive(1.0) = %.17g", noise::log_positive(1.0));
  EXPECT(worst.error <= 3.0, "double log_positive: %.3f ulp at v = %.17g", worst.error, worst.at);
  std::printf("double log_positive on 1e-300..1e300 and edges: max %.3f ulp\n", worst.error);
}

static void test_sincos_two_pi_exhaustive() {
  const double two_pi = 6.283185307179586476925286766559;
  Worst worst;
  auto check = [&](float u) {
    const noise::SinCos sc = noise::sincos_two_pi(u);
    const double angle = two_pi * static_cast<double>(u);
    worst.add(std::fmax(std::fabs(sc.sin - std::sin(angle)), std::fabs(sc.cos - std::cos(angle))), u);
  };
  for (uint32_t k = 0; k < (1u << 23); ++k) check(noise::uniform_open(k << 9, 0.0f));
  for (float u : {0.0f, 0.125f, 0.25f, 0.5f, 0.75f, 1.0f}) check(u);  // the closed interval's exact points
  EXPECT(worst.error <= 2e-7, "sincos_two_pi: error %.3g at u = %.9g", worst.error, worst.at);
  std::printf("sincos_two_pi over all 2^23 float uniforms: max abs error %.3g\n", worst.error);
}

// ---- Gaussian stream -----------------------------------------------------------------------------------

static void test_gaussian_site_layout() {
  for (int64_t i = 0; i < 5000; ++i) {
    const noise::GaussianSite site = noise::gaussian_site(i);
    EXPECT(site.counter_index == 256 * (i / 1024) + i % 256 && site.word == static_cast<int>((i % 1024) / 256),
           "gaussian_site(%" PRId64 ") = (%" PRId64 ", %d)", i, site.counter_index, site.word);
  }
  const int64_t big = (int64_t{1} << 40) + 3 * 256 + 17;  // tile 2^30, word 3, r 17
  const noise::GaussianSite site = noise::gaussian_site(big);
  EXPECT(site.counter_index == (int64_t{1} << 38) + 17 && site.word == 3, "gaussian_site of 2^40 + 785");
  // words 0/1 (and 2/3) of a counter are one Box-Muller pair: elements i and i + 256 share the radius
  const noise::Stream s{0x01234567u, 0x89abcdefu, 11u};
  for (int64_t i = 0; i < 3 * 1024; ++i) {
    if ((i % 1024) / 256 % 2 != 0) continue;
    const noise::Words words = s.draw(noise::gaussian_site(i).counter_index, 0);
    const int pair = noise::gaussian_site(i).word;
    const float zf0 = noise::standard_normal_at<float>(s, i), zf1 = noise::standard_normal_at<float>(s, i + 256);
    const double r2f = -2.0 * std::log(static_cast<double>(noise::uniform_open(words.w[pair], 0.0f)));
    EXPECT_NEAR(double(zf0) * zf0 + double(zf1) * zf1, r2f, 1e-5 * (1 + r2f), "float pair radius");
    const double zd0 = noise::standard_normal_at<double>(s, i), zd1 = noise::standard_normal_at<double>(s, i + 256);
    const double r2d = -2.0 * std::log(noise::uniform_open(words.w[pair], 0.0));
    EXPECT_NEAR(zd0 * zd0 + zd1 * zd1, r2d, 1e-13 * (1 + r2d), "double pair radius");
    // first word's element gets radius cos(2 pi u2), the second's radius sin
    const double angle = 6.283185307179586 * noise::uniform_open(words.w[pair + 1], 0.0);
    EXPECT_NEAR(zd0, std::sqrt(r2d) * std::cos(angle), 1e-12, "double first = radius cos");
    EXPECT_NEAR(zd1, std::sqrt(r2d) * std::sin(angle), 1e-12, "double second = radius sin");
  }
}

// ---- Poisson -------------------------------------------------------------------------------------------

static void test_log_factorial() {
  Worst worst;
  for (int k = 0; k <= 1000; ++k) worst.add(std::fabs(noise::log_factorial(k) - std::lgamma(k + 1.0)), k);
  EXPECT(worst.error <= 1e-10, "log_factorial: error %.3g at k = %g", worst.error, worst.at);
  EXPECT(noise::log_factorial(0) == 0.0 && noise::log_factorial(1) == 0.0, "log 0! = log 1! = 0");
  // large k: log(k!) ~ 1.5e8 at 1e7, where 1e-10 is below float64 resolution, so the bound is relative
  Worst worst_rel;
  for (double k : {1234.0, 99999.0, 1e6, 3141592.0, 1e7}) {
    const double ref = std::lgamma(k + 1.0);
    worst_rel.add(std::fabs(noise::log_factorial(k) - ref) / ref, k);
  }
  EXPECT(worst_rel.error <= 1e-13, "log_factorial: relative error %.3g at k = %g", worst_rel.error, worst_rel.at);
  std::printf("log_factorial: max abs error %.3g (k <= 1000), max rel error %.3g (k up to 1e7)\n", worst.error,
              worst_rel.error);
}

static void test_poisson_inversion_exact_cdf() {
  for (double rate : {0.01, 1.0, 9.9}) {
    // P(K <= k) by terms exp(k log rate - rate - lgamma(k + 1)), summed in long double
    std::vector<long double> cdf;
    long double sum = 0;
    for (int k = 0; k < 200; ++k) {
      sum += std::exp(static_cast<long double>(k * std::log(rate) - rate - std::lgamma(k + 1.0)));
      cdf.push_back(sum);
    }
    std::vector<double> us;
    for (int j = 0; j < 4000; ++j) us.push_back((j + 0.5) / 4000);
    for (double u : {0x1p-54, 1e-12, 1e-6, 1 - 1e-6, 1 - 1e-10}) us.push_back(u);
    int checked = 0;
    for (double u : us) {
      int expected = 0;
      while (expected < 199 && u > cdf[expected]) ++expected;
      // skip u within rounding of a CDF step, where float64 sums may disagree
      const bool ambiguous = std::fabs(static_cast<long double>(u) - cdf[expected]) < 1e-12L ||
                             (expected > 0 && std::fabs(static_cast<long double>(u) - cdf[expected - 1]) < 1e-12L);
      if (ambiguous) continue;
      ++checked;
      const double k = noise::poisson_inversion(rate, u);
      EXPECT(k == expected, "poisson_inversion(%g, %.17g) = %g, expected %d", rate, u, k, expected);
    }
    EXPECT(checked > 3900, "poisson_inversion(%g): only %d of %zu u checked", rate, checked, us.size());
  }
  // u = 1 stops where the CDF stops growing instead of looping
  const double k_one = noise::poisson_inversion(9.9, 1.0);
  EXPECT(k_one > 30 && k_one < 100, "poisson_inversion(9.9, 1.0) = %g", k_one);
}

static void test_poisson_draw_moments() {
  const noise::Stream s{0x9e3779b9u, 0x7f4a7c15u, 42u};
  const int64_t n = 200000;
  for (double rate : {0.5, 10.0, 50.0, 1e4, 1e7}) {
    std::vector<double> k(n);
    bool integers = true;
    for (int64_t i = 0; i < n; ++i) {
      k[i] = noise::poisson_draw(s, i, rate, s.draw(i, 1));
      integers &= k[i] >= 0 && k[i] == std::floor(k[i]);
    }
    EXPECT(integers, "poisson_draw(%g): a draw is negative or not an integer", rate);
    double mean = 0, var = 0;
    for (double v : k) mean += v;
    mean /= n;
    for (double v : k) var += (v - mean) * (v - mean);
    var /= n - 1;
    // standard errors of a Poisson sample's mean and variance: sqrt(rate / n), sqrt((rate + 2 rate^2) / n)
    const double mean_sigma = std::sqrt(rate / n), var_sigma = std::sqrt((rate + 2 * rate * rate) / n);
    EXPECT(std::fabs(mean - rate) <= 5.5 * mean_sigma, "poisson_draw(%g): mean %.10g is %.2f sigma off", rate, mean,
           (mean - rate) / mean_sigma);
    EXPECT(std::fabs(var - rate) <= 5.5 * var_sigma, "poisson_draw(%g): variance %.10g is %.2f sigma off", rate, var,
           (var - rate) / var_sigma);
    std::printf("poisson_draw(%g): mean %+.2f sigma, variance %+.2f sigma\n", rate, (mean - rate) / mean_sigma,
                (var - rate) / var_sigma);
  }
}

// The histogram of 2e5 draws against the pmf (PTRS could match mean and variance with a wrong shape).
static void test_poisson_draw_histogram() {
  const noise::Stream s{0x243f6a88u, 0x85a308d3u, 7u};
  const int64_t n = 200000;
  for (double rate : {0.5, 9.9, 10.0, 50.0}) {
    std::vector<double> observed(400, 0.0), expected(400, 0.0);
    for (int64_t i = 0; i < n; ++i) {
      const double k = noise::poisson_draw(s, i, rate, s.draw(i, 1));
      observed[k < 399 ? static_cast<int>(k) : 399] += 1;
    }
    for (int k = 0; k < 399; ++k) expected[k] = n * std::exp(k * std::log(rate) - rate - std::lgamma(k + 1.0));
    // pool bins with fewer than 20 expected counts into their neighbours, then chi-square
    double chi2 = 0, o = 0, e = 0;
    int bins = 0;
    for (int k = 0; k < 400; ++k) {
      o += observed[k], e += expected[k];
      if (e >= 20 && k < 398) {
        chi2 += (o - e) * (o - e) / e, ++bins, o = 0, e = 0;
      }
    }
    if (e > 0) chi2 += (o - e) * (o - e) / e, ++bins;
    const double dof = bins - 1;
    EXPECT(chi2 <= dof + 5.5 * std::sqrt(2 * dof), "poisson_draw(%g) histogram: chi2 %.1f over %d bins", rate, chi2,
           bins);
  }
}

static void test_poisson_draw_special_rates() {
  const noise::Stream s{1u, 2u, 3u};
  const noise::Words first = s.draw(0, 1);
  EXPECT(noise::poisson_draw(s, 0, 0.0, first) == 0.0, "rate 0 gives 0");
  EXPECT(noise::poisson_draw(s, 0, -3.0, first) == 0.0, "a negative rate gives 0");
  EXPECT(noise::poisson_draw(s, 0, std::nan(""), first) == 0.0, "a NaN rate gives 0");
  EXPECT(noise::poisson_draw(s, 0, INFINITY, first) == INFINITY, "an infinite rate gives infinity");
  EXPECT(noise::poisson_draw(s, 0, 1e-300, first) == 0.0, "a tiny rate gives 0");
}

// ---- the noise models ----------------------------------------------------------------------------------

template <typename T>
static void test_models() {
  // heteroscedastic Gaussian: y = x + sqrt(max(shot x + read, 0)) z
  EXPECT_NEAR(noise::heteroscedastic_gaussian<T>(T(2), T(0.5), T(0.1), T(1.5)), 2 + std::sqrt(T(1.1)) * T(1.5),
              16 * std::numeric_limits<T>::epsilon(), "heteroscedastic_gaussian");
  EXPECT(noise::heteroscedastic_gaussian<T>(T(-1), T(1), T(0.1), T(3)) == T(-1),
         "negative variance clamps to 0 (y = x)");
  EXPECT(noise::heteroscedastic_gaussian<T>(T(0.25), T(0), T(0), T(-2)) == T(0.25), "zero variance: y = x");
  EXPECT(std::isnan(noise::heteroscedastic_gaussian<T>(T(NAN), T(1), T(0.1), T(1))), "NaN x stays NaN");
  // Poisson-Gaussian from a count: y = shot k + sqrt(read) z, or x + sqrt(read) z where degenerate
  EXPECT_NEAR(noise::poisson_gaussian_from_count<T>(T(5), T(0.5), T(0.04), T(-1), 7.0), T(0.5) * 7 - T(0.2),
              8 * std::numeric_limits<T>::epsilon(), "poisson_gaussian_from_count");
  EXPECT_NEAR(noise::poisson_gaussian_from_count<T>(T(5), T(0), T(0.04), T(-1), 7.0), T(5) - T(0.2),
              8 * std::numeric_limits<T>::epsilon(), "shot 0: y = x + sqrt(read) z");
  EXPECT(noise::poisson_gaussian_from_count<T>(T(5), T(0), T(0), T(3), 7.0) == T(5), "shot 0, read 0: y = x");
  EXPECT(std::isnan(noise::poisson_gaussian_from_count<T>(T(NAN), T(0.5), T(0.04), T(1), 0.0)), "NaN x stays NaN");
  EXPECT(noise::poisson_degenerate<T>(T(NAN), T(1)) && noise::poisson_degenerate<T>(T(1), T(0)) &&
             !noise::poisson_degenerate<T>(T(1), T(1)),
         "poisson_degenerate");
  // whole model: negative x has rate < 0, so count 0 and only the Gaussian part; shot 0 draws nothing
  const noise::Stream s{5u, 6u, 0u};
  EXPECT_NEAR(noise::poisson_gaussian<T>(s, 3, s.draw(3, 1), T(-2), T(0.5), T(0.09), T(1)), T(0.3),
              4 * std::numeric_limits<T>::epsilon(), "negative x: y = sqrt(read) z");
  EXPECT_NEAR(noise::poisson_gaussian<T>(s, 3, s.draw(3, 1), T(-2), T(0), T(0.09), T(1)), T(-1.7),
              4 * std::numeric_limits<T>::epsilon(), "shot 0: y = x + sqrt(read) z");
  const T y = noise::poisson_gaussian<T>(s, 3, s.draw(3, 1), T(4), T(0.5), T(0), T(1));
  EXPECT(y == T(0.5) * static_cast<T>(noise::poisson_draw(s, 3, 8.0, s.draw(3, 1))),
         "read 0: y = shot * Poisson(x / shot)");
  // clip: min, then max; NaN passes
  EXPECT(noise::clip<T>(T(-1), true, T(0), true, T(1)) == T(0), "clip min");
  EXPECT(noise::clip<T>(T(2), true, T(0), true, T(1)) == T(1), "clip max");
  EXPECT(noise::clip<T>(T(0.5), true, T(0), true, T(1)) == T(0.5), "clip inside");
  EXPECT(noise::clip<T>(T(-1), false, T(0), true, T(1)) == T(-1), "no min");
  EXPECT(noise::clip<T>(T(2), true, T(0), false, T(1)) == T(2), "no max");
  EXPECT(noise::clip<T>(T(-5), true, T(-2), false, T(0)) == T(-2), "min only");
  EXPECT(std::isnan(noise::clip<T>(T(NAN), true, T(0), true, T(1))), "clip keeps NaN");
}

int main() {
  test_philox_known_answers();
  test_streams();
  test_uniforms_open();
  test_log_positive_float_exhaustive();
  test_log_positive_double();
  test_sincos_two_pi_exhaustive();
  test_gaussian_site_layout();
  test_log_factorial();
  test_poisson_inversion_exact_cdf();
  test_poisson_draw_moments();
  test_poisson_draw_histogram();
  test_poisson_draw_special_rates();
  test_models<float>();
  test_models<double>();
  return finish("noise_math");
}
