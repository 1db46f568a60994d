// CPU kernels are compiled for the baseline x86-64 ISA (SSE2) so that one wheel runs everywhere; their hot
// loops are also cloned for AVX2 (CYCLEISP_CPU_CLONES) and, where measured faster, for AVX-512 too
// (CYCLEISP_CPU_CLONES_AVX512: the noise kernel's; AIN's backward runs 4x slower in its AVX-512 clone), and
// the loader picks the best clone the CPU supports (GCC function multiversioning). setup.py and CMake
// compile with -ffp-contract=off, so no clone fuses multiply-adds: results do not depend on the clone taken.
#pragma once

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define CYCLEISP_CPU_CLONES __attribute__((target_clones("avx2", "default")))
#define CYCLEISP_CPU_CLONES_AVX512 __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define CYCLEISP_CPU_CLONES
#define CYCLEISP_CPU_CLONES_AVX512
#endif
