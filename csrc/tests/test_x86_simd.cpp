// The x86 SIMD of the CPU noise kernels (csrc/ops/cpu/x86_simd.h) against scalar code: Philox against the generator
// of noise_math.h, word for word (counters that start anywhere, cross 2^32 and reach the top of the range, every
// round kind); compaction against a plain loop, on random and extreme masks.
#include <cstdint>
#include <cstdio>
#include <initializer_list>

#include "expect.h"
#include "ops/cpu/x86_simd.h"

using cycleisp_fast::noise::make_stream;
using cycleisp_fast::noise::Stream;
using cycleisp_fast::noise::Words;

int main() {
#if CYCLEISP_HAVE_X86_SIMD
  const int lanes = cycleisp_fast::noise::cpu::philox_simd_lanes();
  std::printf("SIMD width on this CPU: %d lanes\n", lanes);
  const int64_t firsts[] = {0, 7, 1000003, (int64_t{1} << 32) - 5, (int64_t{1} << 32) - 16, (int64_t{5} << 40) + 11};
  const uint32_t rounds[] = {0u, 1u, 7u, 0xFFFFFFFDu, 0xFFFFFFFFu};
  const Stream streams[] = {make_stream(0, 0), make_stream(1234567890123LL, 42), make_stream(INT64_MAX, 0xFFFFFFFFLL)};
  for (const Stream& stream : streams) {
    for (const int64_t first : firsts) {
      for (const uint32_t round : rounds) {
        uint32_t w[4][40];
        const int64_t done = cycleisp_fast::noise::cpu::philox_simd(stream, first, round, 37, w[0], w[1], w[2], w[3]);
        EXPECT(done == (lanes ? 37 / lanes * lanes : 0), "philox_simd wrote %lld of 37 counters", (long long)done);
        for (int64_t l = 0; l < done; ++l) {
          const Words expected = stream.draw(first + l, round);
          for (int k = 0; k < 4; ++k) {
            EXPECT(w[k][l] == expected.w[k], "counter %lld round %u word %d: %u vs %u", (long long)(first + l), round, k,
                   w[k][l], expected.w[k]);
          }
        }
      }
    }
  }
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx2")) {  // the AVX2 path also where AVX-512 takes over above
    uint32_t w[4][8];
    const Stream stream = make_stream(99, 3);
    cycleisp_fast::noise::cpu::philox8(stream, (int64_t{1} << 32) - 3, 5, w[0], w[1], w[2], w[3]);
    for (int l = 0; l < 8; ++l) {
      const Words expected = stream.draw((int64_t{1} << 32) - 3 + l, 5);
      for (int k = 0; k < 4; ++k) EXPECT(w[k][l] == expected.w[k], "AVX2 lane %d word %d", l, k);
    }
  }
#endif
  for (const int density : {0, 1, 50, 99, 100}) {  // percent kept
    for (const int64_t n : {int64_t{0}, int64_t{15}, int64_t{16}, int64_t{17}, int64_t{1000}, int64_t{1024}}) {
      uint8_t keep[1024];
      uint32_t state = 12345u + static_cast<uint32_t>(density * 7 + n);
      for (int64_t i = 0; i < n; ++i) {
        state = state * 1664525u + 1013904223u;
        keep[i] = static_cast<uint8_t>((state >> 8) % 100 < static_cast<uint32_t>(density) ? 1 + (state & 7) : 0);
      }
      int32_t out[1024];
      int64_t kept = 0;
      const int64_t looked = cycleisp_fast::noise::cpu::compact_simd(keep, n, out, &kept);
      EXPECT(looked == (lanes == 16 ? n / 16 * 16 : 0), "compaction looked at %lld of %lld", (long long)looked,
             (long long)n);
      int64_t expected = 0;
      for (int64_t i = 0; i < looked; ++i) {
        if (keep[i]) {
          EXPECT(expected < kept && out[expected] == i, "density %d n %lld: position %lld", density, (long long)n,
                 (long long)i);
          ++expected;
        }
      }
      EXPECT(expected == kept, "density %d n %lld: kept %lld, expected %lld", density, (long long)n, (long long)kept,
             (long long)expected);
    }
  }
#else
  std::printf("no x86 SIMD on this platform\n");
#endif
  return finish("test_x86_simd");
}
