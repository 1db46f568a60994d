// CPU kernels are compiled for the baseline x86-64 ISA (SSE2) so that one wheel runs everywhere; their hot
// loops are also cloned for AVX2, and the loader picks the clone the CPU supports (GCC function
// multiversioning). FMA is deliberately not enabled, so results do not depend on the clone taken.
#pragma once

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define CYCLEISP_CPU_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CYCLEISP_CPU_CLONES
#endif
