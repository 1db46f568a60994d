// Hand-written x86 SIMD of the CPU noise kernels, chosen at run time (AVX-512F, AVX2, or none: the callers finish
// with portable loops), checked against the scalar code by the C++ unit test test_x86_simd.cpp:
// - Philox4x32-10 of 16 (AVX-512) or 8 (AVX2) consecutive counters at once, word-major: the same words as
//   noise_math.h's scalar philox4x32_10;
// - compaction: the positions of the kept elements of a run, 16 at a time (AVX-512 compress stores).
//
// Why by hand: GCC vectorises the scalar loop with 64-bit multiplies (vpmullq, 3 uops) and lane permutes; here each
// 32x32 -> 64-bit product of a round is one vpmuludq per half of the lanes (even lanes, and odd lanes shifted
// down), and the high and low halves are put back in place with one shift and one blend each.
#pragma once

#include <cstdint>

#include "../noise_math.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define CYCLEISP_HAVE_X86_SIMD 1
#else
#define CYCLEISP_HAVE_X86_SIMD 0
#endif

namespace cycleisp_fast {
namespace noise {
namespace cpu {

#if CYCLEISP_HAVE_X86_SIMD

// GCC 12's AVX-512 intrinsics initialise their undefined operands from themselves, which -Wuninitialized reports
// when they are inlined into target("avx512f") functions (a false positive).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

constexpr uint32_t kPhiloxM0 = 0xD2511F53u, kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u, kPhiloxW1 = 0xBB67AE85u;

__attribute__((target("avx512f"))) inline void mulhilo16(__m512i a, __m512i m, __m512i* hi, __m512i* lo) {
  const __m512i even = _mm512_mul_epu32(a, m);                        // products of lanes 0, 2, ... (64-bit)
  const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);  // products of lanes 1, 3, ...
  *lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
  *hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
}

// The words of counters (first + l, round, offset), l = 0 .. 15, into w0[l] .. w3[l].
__attribute__((target("avx512f"))) inline void philox16(const Stream& stream, int64_t first, uint32_t round,
                                                        uint32_t* w0, uint32_t* w1, uint32_t* w2, uint32_t* w3) {
  const uint64_t j = static_cast<uint64_t>(first);
  const __m512i start = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(j)));
  __m512i c0 = _mm512_add_epi32(start, _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
  const __mmask16 carry = _mm512_cmplt_epu32_mask(c0, start);  // the low word wrapped: carry into the high word
  const __m512i high = _mm512_set1_epi32(static_cast<int>(static_cast<uint32_t>(j >> 32)));
  __m512i c1 = _mm512_mask_add_epi32(high, carry, high, _mm512_set1_epi32(1));
  __m512i c2 = _mm512_set1_epi32(static_cast<int>(round));
  __m512i c3 = _mm512_set1_epi32(static_cast<int>(stream.offset));
  const __m512i m0 = _mm512_set1_epi32(static_cast<int>(kPhiloxM0)), m1 = _mm512_set1_epi32(static_cast<int>(kPhiloxM1));
  uint32_t k0 = stream.k0, k1 = stream.k1;
  for (int r = 0; r < 10; ++r) {
    __m512i hi0, lo0, hi1, lo1;
    mulhilo16(c0, m0, &hi0, &lo0);
    mulhilo16(c2, m1, &hi1, &lo1);
    const __m512i n0 = _mm512_xor_si512(_mm512_xor_si512(hi1, c1), _mm512_set1_epi32(static_cast<int>(k0)));
    const __m512i n2 = _mm512_xor_si512(_mm512_xor_si512(hi0, c3), _mm512_set1_epi32(static_cast<int>(k1)));
    c1 = lo1;
    c3 = lo0;
    c0 = n0;
    c2 = n2;
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
  _mm512_storeu_si512(w0, c0);
  _mm512_storeu_si512(w1, c1);
  _mm512_storeu_si512(w2, c2);
  _mm512_storeu_si512(w3, c3);
}

__attribute__((target("avx2"))) inline void mulhilo8(__m256i a, __m256i m, __m256i* hi, __m256i* lo) {
  const __m256i even = _mm256_mul_epu32(a, m);
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
  *lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
  *hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
}

// The words of counters (first + l, round, offset), l = 0 .. 7, into w0[l] .. w3[l].
__attribute__((target("avx2"))) inline void philox8(const Stream& stream, int64_t first, uint32_t round, uint32_t* w0,
                                                    uint32_t* w1, uint32_t* w2, uint32_t* w3) {
  const uint64_t j = static_cast<uint64_t>(first);
  const __m256i start = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(j)));
  __m256i c0 = _mm256_add_epi32(start, _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  const __m256i sign = _mm256_set1_epi32(static_cast<int>(0x80000000u));
  // unsigned c0 < start, by signed comparison of both with the sign bit flipped: -1 where the low word wrapped
  const __m256i carry = _mm256_cmpgt_epi32(_mm256_xor_si256(start, sign), _mm256_xor_si256(c0, sign));
  __m256i c1 = _mm256_sub_epi32(_mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(j >> 32))), carry);
  __m256i c2 = _mm256_set1_epi32(static_cast<int>(round));
  __m256i c3 = _mm256_set1_epi32(static_cast<int>(stream.offset));
  const __m256i m0 = _mm256_set1_epi32(static_cast<int>(kPhiloxM0)), m1 = _mm256_set1_epi32(static_cast<int>(kPhiloxM1));
  uint32_t k0 = stream.k0, k1 = stream.k1;
  for (int r = 0; r < 10; ++r) {
    __m256i hi0, lo0, hi1, lo1;
    mulhilo8(c0, m0, &hi0, &lo0);
    mulhilo8(c2, m1, &hi1, &lo1);
    const __m256i n0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1), _mm256_set1_epi32(static_cast<int>(k0)));
    const __m256i n2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), _mm256_set1_epi32(static_cast<int>(k1)));
    c1 = lo1;
    c3 = lo0;
    c0 = n0;
    c2 = n2;
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(w0), c0);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(w1), c1);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(w2), c2);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(w3), c3);
}

// The widest of the two this CPU runs: 16 (AVX-512F), 8 (AVX2) or 0 (neither).
inline int philox_simd_lanes() {
  static const int lanes = __builtin_cpu_supports("avx512f") ? 16 : __builtin_cpu_supports("avx2") ? 8 : 0;
  return lanes;
}

// The words of counters first .. first + count - 1 at `round` for the largest multiple of the SIMD width;
// returns how many it wrote (the caller finishes the rest).
inline int64_t philox_simd(const Stream& stream, int64_t first, uint32_t round, int64_t count, uint32_t* w0,
                           uint32_t* w1, uint32_t* w2, uint32_t* w3) {
  const int lanes = philox_simd_lanes();
  int64_t done = 0;
  if (lanes == 16) {
    for (; done + 16 <= count; done += 16) philox16(stream, first + done, round, w0 + done, w1 + done, w2 + done, w3 + done);
  } else if (lanes == 8) {
    for (; done + 8 <= count; done += 8) philox8(stream, first + done, round, w0 + done, w1 + done, w2 + done, w3 + done);
  }
  return done;
}

// The positions i of keep[i] != 0 among the first multiple of 16 of n, in order, appended to out: returns how
// many elements it looked at (0 without AVX-512; the caller finishes the rest) and adds the kept to *kept.
__attribute__((target("avx512f"))) inline int64_t compact16(const uint8_t* keep, int64_t n, int32_t* out, int64_t* kept) {
  __m512i index = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i step = _mm512_set1_epi32(16);
  int64_t m = *kept, i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(keep + i));
    const auto mask = static_cast<__mmask16>(~_mm_movemask_epi8(_mm_cmpeq_epi8(bytes, _mm_setzero_si128())));
    _mm512_mask_compressstoreu_epi32(out + m, mask, index);
    m += __builtin_popcount(mask);
    index = _mm512_add_epi32(index, step);
  }
  *kept = m;
  return i;
}

inline int64_t compact_simd(const uint8_t* keep, int64_t n, int32_t* out, int64_t* kept) {
  return philox_simd_lanes() == 16 ? compact16(keep, n, out, kept) : 0;
}

#pragma GCC diagnostic pop

#else

inline int64_t philox_simd(const Stream&, int64_t, uint32_t, int64_t, uint32_t*, uint32_t*, uint32_t*, uint32_t*) {
  return 0;
}

inline int64_t compact_simd(const uint8_t*, int64_t, int32_t*, int64_t*) { return 0; }

#endif

}  // namespace cpu
}  // namespace noise
}  // namespace cycleisp_fast
