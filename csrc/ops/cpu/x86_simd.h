// Hand-written x86 SIMD of the CPU noise kernels, chosen at run time (AVX-512F, AVX2, or none: the callers finish
// with portable loops), checked against the scalar code by the C++ unit test test_x86_simd.cpp:
// - Philox4x32-10 of 16 (AVX-512) or 8 (AVX2) consecutive counters at once, word-major: the same words as
//   noise_math.h's scalar philox4x32_10;
// - compaction: the positions of the kept elements of a run, 16 at a time (AVX-512 register compress + store).
//
// Why by hand: GCC vectorises the scalar loop with 64-bit multiplies (vpmullq, 3 uops) and lane permutes; here each
// 32x32 -> 64-bit product of a round is one vpmuludq (AVX-512: counters one per 64-bit lane; AVX2: even lanes, and
// odd lanes shifted down, with the halves put back in place by one shift and one blend each).
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

// Ten Philox rounds of 8 counters, one per 64-bit lane: the counter words in the low halves, the high halves
// don't-care (vpmuludq reads only the low halves). Each product is one vpmuludq, its high word moves down by a
// swap of the 32-bit halves (vpshufd, off the multiplier's port), and each new word is one three-way xor.
__attribute__((target("avx512f"))) inline void philox_rounds8(__m512i* c0, __m512i* c1, __m512i* c2, __m512i* c3,
                                                              uint32_t k0, uint32_t k1) {
  const __m512i m0 = _mm512_set1_epi64(kPhiloxM0), m1 = _mm512_set1_epi64(kPhiloxM1);
  for (int r = 0; r < 10; ++r) {
    const __m512i p0 = _mm512_mul_epu32(*c0, m0);  // lo0 in the low half, hi0 in the high half
    const __m512i p1 = _mm512_mul_epu32(*c2, m1);
    const __m512i n0 = _mm512_ternarylogic_epi64(_mm512_shuffle_epi32(p1, _MM_PERM_CDAB), *c1,
                                                 _mm512_set1_epi32(static_cast<int>(k0)), 0x96);  // hi1 ^ c1 ^ k0
    const __m512i n2 = _mm512_ternarylogic_epi64(_mm512_shuffle_epi32(p0, _MM_PERM_CDAB), *c3,
                                                 _mm512_set1_epi32(static_cast<int>(k1)), 0x96);  // hi0 ^ c3 ^ k1
    *c1 = p1;
    *c3 = p0;
    *c0 = n0;
    *c2 = n2;
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
}

// The words of counters (first + l, round, offset), l = 0 .. 15, into w0[l] .. w3[l]: two sets of 8 in flight.
__attribute__((target("avx512f"))) inline void philox16(const Stream& stream, int64_t first, uint32_t round,
                                                        uint32_t* w0, uint32_t* w1, uint32_t* w2, uint32_t* w3) {
  const __m512i j_low = _mm512_add_epi64(_mm512_set1_epi64(first), _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7));
  const __m512i j_high = _mm512_add_epi64(j_low, _mm512_set1_epi64(8));
  __m512i a0 = j_low, a1 = _mm512_srli_epi64(j_low, 32), b0 = j_high, b1 = _mm512_srli_epi64(j_high, 32);
  const __m512i c2 = _mm512_set1_epi32(static_cast<int>(round)), c3 = _mm512_set1_epi32(static_cast<int>(stream.offset));
  __m512i a2 = c2, a3 = c3, b2 = c2, b3 = c3;
  philox_rounds8(&a0, &a1, &a2, &a3, stream.k0, stream.k1);
  philox_rounds8(&b0, &b1, &b2, &b3, stream.k0, stream.k1);
  // the low halves of the 16 lanes of (low, high), in order
  const __m512i low_halves = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  _mm512_storeu_si512(w0, _mm512_permutex2var_epi32(a0, low_halves, b0));
  _mm512_storeu_si512(w1, _mm512_permutex2var_epi32(a1, low_halves, b1));
  _mm512_storeu_si512(w2, _mm512_permutex2var_epi32(a2, low_halves, b2));
  _mm512_storeu_si512(w3, _mm512_permutex2var_epi32(a3, low_halves, b3));
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
// many elements it looked at (0 without AVX-512; the caller finishes the rest) and adds the kept to *kept. out must
// hold *kept + n elements: entries past the kept ones, below that bound, may be overwritten.
__attribute__((target("avx512f"))) inline int64_t compact16(const uint8_t* keep, int64_t n, int32_t* out, int64_t* kept) {
  __m512i index = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i step = _mm512_set1_epi32(16);
  int64_t m = *kept, i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(keep + i));
    const auto mask = static_cast<__mmask16>(~_mm_movemask_epi8(_mm_cmpeq_epi8(bytes, _mm_setzero_si128())));
    // compress in a register, then a whole store (m + 16 <= *kept + i + 16 <= *kept + n): Zen 4 microcodes the
    // compressing store to memory (~100x slower)
    _mm512_storeu_si512(out + m, _mm512_maskz_compress_epi32(mask, index));
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
