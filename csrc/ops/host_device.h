// Qualifiers for math that the CPU and CUDA kernels share: host + device functions under nvcc, plain
// inline functions in the C++ build.
#pragma once

#if defined(__CUDACC__)
#define CYCLEISP_HOST_DEVICE __host__ __device__ __forceinline__
#define CYCLEISP_UNROLL _Pragma("unroll")
#else
#define CYCLEISP_HOST_DEVICE inline
#define CYCLEISP_UNROLL _Pragma("GCC unroll 2")
#endif
