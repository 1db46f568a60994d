// CPU kernels are compiled for the baseline x86-64 ISA (SSE2) so that one wheel runs everywhere; their hot
// loops are also cloned for AVX2 and for AVX-512 (x86-64-v4), and the loader picks the best clone the CPU
// supports (GCC function multiversioning). setup.py and CMake compile with -ffp-contract=off, so the
// AVX-512 clone does not fuse multiply-adds either: results do not depend on the clone taken.
#pragma once

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define CYCLEISP_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define CYCLEISP_CPU_CLONES
#endif
