// The vectorised Poisson counts of the CPU noise kernels (csrc/ops/cpu/noise_blocks.cpp) against the scalar
// algorithm of noise_math.h, draw by draw: runs of every length up to a tile, rates in every regime (inversion,
// PTRS, 0, negative, NaN, infinite), and rates just above the inversion limit, where PTRS rejects most often, in
// enough elements that the vectorised attempts run dry and the scalar finish takes over (checked by counting
// attempts with the scalar algorithm itself).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <vector>

#include "ops/cpu/noise_blocks.cpp"  // the blocks are one translation unit with no torch: test it whole
#include "tests/expect.h"

namespace noise = cycleisp_fast::noise;

// The attempts PTRS needs for element i at `rate` (>= the inversion limit), by the scalar algorithm.
static uint32_t ptrs_attempts(const noise::Stream& stream, int64_t i, double rate) {
  const noise::PtrsSetup s = noise::ptrs_setup(rate);
  noise::Words words = stream.draw(i, 1);
  for (uint32_t attempt = 0;; ++attempt) {
    if (attempt != 0 && (attempt & 1) == 0) words = stream.draw(i, 1 + attempt / 2);
    double us;
    const double k = noise::ptrs_candidate(s, noise::ptrs_u(words, attempt), &us);
    if (noise::ptrs_accepts(s, k, us, noise::ptrs_v(words, attempt))) return attempt + 1;
  }
}

// poisson_counts over runs of `length` from `first`, against poisson_draw element by element; returns how many
// elements needed more PTRS attempts than the vectorised passes take.
static int64_t check_runs(const noise::Stream& stream, int64_t first, const std::vector<double>& rates,
                          int64_t length, const char* what) {
  int64_t scalar_finishes = 0;
  double count[noise::kTile];
  for (int64_t begin = 0; begin < static_cast<int64_t>(rates.size()); begin += length) {
    const int64_t n = std::min<int64_t>(length, static_cast<int64_t>(rates.size()) - begin);
    noise::cpu::poisson_counts(stream, first + begin, rates.data() + begin, n, count);
    for (int64_t l = 0; l < n; ++l) {
      const int64_t i = first + begin + l;
      const double rate = rates[begin + l];
      const double expected = noise::poisson_draw(stream, i, rate, stream.draw(i, 1));
      const bool same = count[l] == expected || (std::isnan(count[l]) && std::isnan(expected));
      EXPECT(same, "%s: element %lld, rate %.17g: %.17g, expected %.17g", what, static_cast<long long>(i), rate,
             count[l], expected);
      if (rate >= noise::kInversionLimit && rate < INFINITY) {
        scalar_finishes += ptrs_attempts(stream, i, rate) > noise::cpu::kVectorAttempts;
      }
    }
  }
  return scalar_finishes;
}

int main() {
  const noise::Stream stream = noise::make_stream(0x123456789abLL, 7);

  // Every regime, runs of every kind of length (whole tiles, odd lengths, single elements).
  std::vector<double> mixed;
  uint64_t state = 88172645463325252ull;
  for (int i = 0; i < 20000; ++i) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    const double u = static_cast<double>(state >> 11) * 0x1.0p-53;
    mixed.push_back(std::pow(10.0, -3.0 + 11.0 * u));  // 1e-3 .. 1e8
  }
  const double specials[] = {0.0, -1.0, std::numeric_limits<double>::quiet_NaN(), INFINITY, 9.999999, 10.0, 1e12};
  for (int i = 0; i < 20000; i += 37) mixed[i] = specials[(i / 37) % 7];
  for (const int64_t length : {int64_t{1024}, int64_t{1000}, int64_t{33}, int64_t{16}, int64_t{1}}) {
    check_runs(stream, 5, mixed, length, "mixed rates");
  }

  // Rates at the inversion limit: a quarter of the first attempts are rejected, and about 1 element in 4000
  // needs more than the vectorised attempts; tiles that start past 2^32 check the counters' carry.
  std::vector<double> limit(300 * noise::kTile, 10.0);
  for (size_t i = 0; i < limit.size(); i += 3) limit[i] = 10.5;
  const int64_t finishes = check_runs(stream, (int64_t{1} << 32) - 4096, limit, noise::kTile, "rates near 10");
  std::printf("elements finished by the scalar algorithm: %lld\n", static_cast<long long>(finishes));
  EXPECT(finishes > 10, "the scalar finish ran for %lld elements only", static_cast<long long>(finishes));

  return finish("test_noise_blocks");
}
