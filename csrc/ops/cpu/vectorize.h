// CPU kernels are compiled for the baseline x86-64 ISA (SSE2) so that one wheel runs everywhere; their hot
// loops are also cloned for AVX2 (CYCLEISP_CPU_CLONES) and, where measured faster, for AVX-512 too
// (CYCLEISP_CPU_CLONES_AVX512: the noise kernel's; AIN's backward runs 4x slower in its AVX-512 clone), and
// the loader picks the best clone the CPU supports (GCC function multiversioning). setup.py and CMake
// compile with -ffp-contract=off, so no clone fuses multiply-adds: results do not depend on the clone taken.
#pragma once

#include <cstdint>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define CYCLEISP_CPU_CLONES __attribute__((target_clones("avx2", "default")))
#define CYCLEISP_CPU_CLONES_AVX512 __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define CYCLEISP_CPU_CLONES
#define CYCLEISP_CPU_CLONES_AVX512
#endif

namespace cycleisp_fast {

constexpr int kLanes = 16;

// Sum over i in [0, n) of term(i), accumulated in kLanes independent lanes (so that the compiler vectorises it
// without reassociating one accumulator); `plus` adds two values.
template <typename V, typename Term, typename Plus>
__attribute__((always_inline)) inline V lane_sum(int64_t n, const Term& term, const Plus& plus) {
  V lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) lanes[j] = plus(lanes[j], term(i + j));
  }
  for (; i < n; ++i) lanes[0] = plus(lanes[0], term(i));
  V total = {};
  for (int j = 0; j < kLanes; ++j) total = plus(total, lanes[j]);
  return total;
}

template <typename acc_t, typename Term>
__attribute__((always_inline)) inline acc_t lane_sum(int64_t n, const Term& term) {
  return lane_sum<acc_t>(n, term, [](acc_t a, acc_t b) { return a + b; });
}

}  // namespace cycleisp_fast
