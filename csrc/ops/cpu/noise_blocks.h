// Vectorised building blocks of the CPU noise kernels (noise_sample, physical_noise): Philox words of a run of
// counters, the normals of a tile of the Gaussian stream and the Poisson counts of a run of rates. Each gives
// exactly what the scalar math of noise_math.h gives (the CUDA kernels' values).
#pragma once

#include <cstdint>

#include "../noise_math.h"

namespace cycleisp_fast {
namespace noise {
namespace cpu {

// Tiles a thread of the noise kernels takes at a time (parallel_for_dynamic: a tile of Poisson draws costs
// ~15 us, the cost varies with the image's brightness).
constexpr int64_t kTilesPerTask = 16;

// The Philox words of counters first .. first + count - 1 at `round`, word-major.
void philox_block(Stream stream, int64_t first, uint32_t round, int64_t count, uint32_t* w0, uint32_t* w1,
                  uint32_t* w2, uint32_t* w3);

// The 1024 standard normals of one tile of the Gaussian stream from its 256 counters' words, z[word * 256 + lane]
// (float and double).
template <typename acc_t>
void tile_normals(const uint32_t* w0, const uint32_t* w1, const uint32_t* w2, const uint32_t* w3, acc_t* z);

// The Poisson counts of the float64 rates of elements first .. first + n - 1 (n <= kTile); rate <= 0 or NaN gives
// 0, an infinite rate infinity (poisson_draw of noise_math.h, element by element).
void poisson_counts(const Stream& stream, int64_t first, const double* rate, int64_t n, double* count);

}  // namespace cpu
}  // namespace noise
}  // namespace cycleisp_fast
