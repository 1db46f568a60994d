// Vectorised building blocks of the CPU noise kernels (see noise_blocks.h).
#include "noise_blocks.h"

#include "x86_simd.h"

#include "vectorize.h"

#include <algorithm>
#include <cmath>

namespace cycleisp_fast {
namespace noise {
namespace cpu {
namespace {

constexpr int kInversionLanes = 8;

CYCLEISP_HOST_DEVICE bool in_ptrs_range(double rate) { return (rate >= kInversionLimit) & (rate < INFINITY); }

// The candidates k of one PTRS attempt of every element from the words (wu, wv), with us (see
// ptrs_candidate), and squeezed[i] where the squeeze accepts k at a rate PTRS handles. Lanes outside PTRS's
// range compute on a stand-in rate. `flatten` inlines the math, which GCC's size heuristics would otherwise
// call (and so not vectorise).
CYCLEISP_CPU_CLONES_AVX512 __attribute__((flatten)) void ptrs_candidates(const double* __restrict__ rate,
                                                                  const uint32_t* __restrict__ wu,
                                                                  const uint32_t* __restrict__ wv, int64_t n,
                                                                  double* __restrict__ k, double* __restrict__ us,
                                                                  uint8_t* __restrict__ squeezed) {
  for (int64_t i = 0; i < n; ++i) {
    const bool ptrs = in_ptrs_range(rate[i]);
    const PtrsSetup s = ptrs_setup(ptrs ? rate[i] : kInversionLimit);
    k[i] = ptrs_candidate(s, uniform_open(wu[i], 0.0), &us[i]);
    squeezed[i] = ptrs & ptrs_squeeze(s, us[i], uniform_open(wv[i], 0.0));
  }
}

// The full acceptance test of candidates (k, us) with their second words wv, at rates PTRS handles.
CYCLEISP_CPU_CLONES_AVX512 __attribute__((flatten)) void ptrs_tests(const double* __restrict__ rate,
                                                             const double* __restrict__ k,
                                                             const double* __restrict__ us,
                                                             const uint32_t* __restrict__ wv, int64_t n,
                                                             uint8_t* __restrict__ accepted) {
  for (int64_t i = 0; i < n; ++i) {
    accepted[i] = ptrs_accepts(ptrs_setup(rate[i]), k[i], us[i], uniform_open(wv[i], 0.0));
  }
}

// The classes of a run's elements after PTRS's first squeeze: those its full test must decide (`tested`), the
// small rates of inversion (`small`), and the rest: the rest needs no more work unless degenerate (0, inf).
CYCLEISP_CPU_CLONES_AVX512 void classify(const double* __restrict__ rate, const uint8_t* __restrict__ squeezed,
                                         int64_t n, uint8_t* __restrict__ tested, uint8_t* __restrict__ small,
                                         double* __restrict__ count) {
  for (int64_t i = 0; i < n; ++i) {
    const bool ptrs = in_ptrs_range(rate[i]);
    tested[i] = ptrs & !squeezed[i];
    small[i] = (rate[i] > 0.0) & (rate[i] < kInversionLimit);
    // rate <= 0 or NaN: 0, infinity: infinity (where the model is degenerate, the count is unused)
    count[i] = ptrs ? count[i] : (rate[i] == INFINITY ? INFINITY : 0.0);
  }
}

// Positions i < n where keep[i] != 0, in order, into out; returns their number.
int64_t compact(const uint8_t* keep, int64_t n, int32_t* out) {
  int64_t m = 0;
  int64_t i = compact_simd(keep, n, out, &m);
  for (; i < n; ++i) {  // branch-free: the slot is overwritten unless kept
    out[m] = static_cast<int32_t>(i);
    m += keep[i] != 0;
  }
  return m;
}

// The state of poisson_inversion for a run of lanes.
struct InversionState {
  double k[kInversionLanes], p[kInversionLanes], cdf[kInversionLanes];
  uint8_t done[kInversionLanes];
};

// One step of poisson_inversion's loop in every lane (the same operations, masked where the lane is done):
// whether any lane goes on.
CYCLEISP_CPU_CLONES_AVX512 bool inversion_step(const double* __restrict__ rate, const double* __restrict__ u,
                                               InversionState* __restrict__ s) {
  uint8_t going = 0;
  for (int l = 0; l < kInversionLanes; ++l) {
    const double k = s->k[l] + 1.0;
    const double p = s->p[l] * (rate[l] / k);
    const double next = s->cdf[l] + p;
    const bool active = !s->done[l];
    const bool stalled = next == s->cdf[l];  // the remaining mass is below float64 resolution: stop
    s->k[l] = active ? k : s->k[l];
    s->p[l] = active ? p : s->p[l];
    s->cdf[l] = (active & !stalled) ? next : s->cdf[l];
    s->done[l] = s->done[l] | stalled | !(u[l] > next);
    going |= !s->done[l];
  }
  return going;
}

// poisson_inversion(rate[i], u[i]) for n rates in (0, kInversionLimit): kInversionLanes lanes at a time step
// together, branch-free, until all are done (the draws are exactly the scalar loop's).
void inversion_counts(const double* rate, const double* u, int64_t n, double* count) {
  for (int64_t begin = 0; begin < n; begin += kInversionLanes) {
    const int64_t lanes = std::min<int64_t>(kInversionLanes, n - begin);
    double r[kInversionLanes], v[kInversionLanes];
    InversionState s;
    for (int l = 0; l < kInversionLanes; ++l) {  // spare lanes: rate 1 and u tiny, done at once
      r[l] = l < lanes ? rate[begin + l] : 1.0;
      v[l] = l < lanes ? u[begin + l] : 0.0;
      s.k[l] = 0.0;
      s.p[l] = std::exp(-r[l]);
      s.cdf[l] = s.p[l];
      s.done[l] = !(v[l] > s.cdf[l]);
    }
    while (inversion_step(r, v, &s)) {
    }
    for (int64_t l = 0; l < lanes; ++l) count[begin + l] = s.k[l];
  }
}

}  // namespace

// The Philox words of counters first .. first + count - 1 at `round`, word-major, by GCC's vectorisation of the
// scalar generator (for the tail philox_simd leaves, and CPUs without AVX2).
CYCLEISP_CPU_CLONES_AVX512 void philox_block_scalar(Stream stream, int64_t first, uint32_t round, int64_t count,
                                                    uint32_t* __restrict__ w0, uint32_t* __restrict__ w1,
                                                    uint32_t* __restrict__ w2, uint32_t* __restrict__ w3) {
  for (int64_t l = 0; l < count; ++l) {
    const Words r = stream.draw(first + l, round);
    w0[l] = r.w[0];
    w1[l] = r.w[1];
    w2[l] = r.w[2];
    w3[l] = r.w[3];
  }
}

void philox_block(Stream stream, int64_t first, uint32_t round, int64_t count, uint32_t* w0, uint32_t* w1,
                  uint32_t* w2, uint32_t* w3) {
  const int64_t done = philox_simd(stream, first, round, count, w0, w1, w2, w3);
  philox_block_scalar(stream, first + done, round, count - done, w0 + done, w1 + done, w2 + done, w3 + done);
}

// The 1024 standard normals of one tile of the Gaussian stream, z[word * 256 + lane].
template <typename acc_t>
CYCLEISP_CPU_CLONES_AVX512 void tile_normals(const uint32_t* __restrict__ w0, const uint32_t* __restrict__ w1,
                                      const uint32_t* __restrict__ w2, const uint32_t* __restrict__ w3,
                                      acc_t* __restrict__ z) {
  for (int64_t l = 0; l < kTileCounters; ++l) {
    const auto a = box_muller(w0[l], w1[l], acc_t(0));
    const auto b = box_muller(w2[l], w3[l], acc_t(0));
    z[l] = a.first;
    z[kTileCounters + l] = a.second;
    z[2 * kTileCounters + l] = b.first;
    z[3 * kTileCounters + l] = b.second;
  }
}

// The Poisson counts of the float64 rates of elements first .. first + n - 1 (n <= kTile), drawn as
// poisson_draw of noise_math.h draws them (rounds >= 1 at counter index first + i). Vectorised passes take PTRS's first attempt up to its squeeze for every
// element, its full test for those the squeeze leaves, and its second attempt for those rejected (each pass
// over the gathered elements only); the scalar algorithm of noise_math.h takes the rest (small rates, two
// rejections). Every element gets the draw the scalar algorithm alone would give it.
void poisson_counts(const Stream& stream, int64_t first, const double* rate, int64_t n, double* count) {
  uint32_t w[4][kTile];
  double us[kTile];
  uint8_t squeezed[kTile], tested_mask[kTile], small_mask[kTile];
  philox_block(stream, first, 1, n, w[0], w[1], w[2], w[3]);
  ptrs_candidates(rate, w[0], w[1], n, count, us, squeezed);  // attempt 0: words 0, 1 of round 1
  classify(rate, squeezed, n, tested_mask, small_mask, count);

  // Attempt 0 past the squeeze: its full test, over the tested elements gathered.
  int32_t tested[kTile];
  const int64_t m = compact(tested_mask, n, tested);
  double t_rate[kTile], t_k[kTile], t_us[kTile];
  uint32_t t_v[kTile];
  uint8_t t_accepted[kTile];
  for (int64_t j = 0; j < m; ++j) {
    t_rate[j] = rate[tested[j]];
    t_k[j] = count[tested[j]];
    t_us[j] = us[tested[j]];
    t_v[j] = w[1][tested[j]];
  }
  ptrs_tests(t_rate, t_k, t_us, t_v, m, t_accepted);

  // Attempt 1 (words 2, 3 of round 1) for those it rejected; the scalar algorithm from attempt 2 for the rest.
  uint8_t rejected_mask[kTile];
  for (int64_t j = 0; j < m; ++j) rejected_mask[j] = !t_accepted[j];
  int32_t rejected[kTile];
  const int64_t r = compact(rejected_mask, m, rejected);
  int64_t element[kTile];
  double s_rate[kTile], s_k[kTile], s_us[kTile];
  uint32_t s_u[kTile], s_v[kTile];
  uint8_t s_accepted[kTile];
  for (int64_t j = 0; j < r; ++j) {
    element[j] = tested[rejected[j]];
    s_rate[j] = t_rate[rejected[j]];
    s_u[j] = w[2][element[j]];
    s_v[j] = w[3][element[j]];
  }
  ptrs_candidates(s_rate, s_u, s_v, r, s_k, s_us, s_accepted);
  ptrs_tests(s_rate, s_k, s_us, s_v, r, s_accepted);
  for (int64_t j = 0; j < r; ++j) {
    const int64_t i = element[j];
    count[i] = s_accepted[j] ? s_k[j]
                             : poisson_ptrs(stream, first + i, ptrs_setup(rate[i]), 2, stream.draw(first + i, 2));
  }

  // Rates in (0, kInversionLimit): inversion, in vectorised lanes.
  int32_t small[kTile];
  const int64_t q = compact(small_mask, n, small);
  double i_rate[kTile], i_u[kTile], i_k[kTile];
  for (int64_t j = 0; j < q; ++j) {
    i_rate[j] = rate[small[j]];
    i_u[j] = uniform52(w[0][small[j]], w[1][small[j]]);
  }
  inversion_counts(i_rate, i_u, q, i_k);
  for (int64_t j = 0; j < q; ++j) count[small[j]] = i_k[j];
}

template void tile_normals<float>(const uint32_t*, const uint32_t*, const uint32_t*, const uint32_t*, float*);
template void tile_normals<double>(const uint32_t*, const uint32_t*, const uint32_t*, const uint32_t*, double*);

}  // namespace cpu
}  // namespace noise
}  // namespace cycleisp_fast
