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

// The PTRS passes' 0/1 flags, as wide as a double: GCC vectorises a loop by its narrowest element, so byte flags
// made the vector loop take 64 elements at a time and left gathered runs of fewer (most of them) to its scalar
// remainder. With 64-bit flags and 32-bit words it takes 16.
using Flag = int64_t;
constexpr int64_t kVectorElements = 16;

// n rounded up to whole vector iterations: the passes over gathered elements run on padded lengths (kTile is a
// multiple, so padding stays in the kTile-sized buffers).
int64_t padded(int64_t n) { return (n + kVectorElements - 1) / kVectorElements * kVectorElements; }
static_assert(kTile % kVectorElements == 0, "the padded runs must fit the kTile-sized buffers");

// The padding lanes of the PTRS passes: a rate in PTRS's range, a candidate, its uniforms' words.
constexpr double kPadRate = kInversionLimit, kPadB = 9.0, kPadCount = kInversionLimit, kPadUs = 0.25;
constexpr uint32_t kPadWord = 0x80000000u;

CYCLEISP_HOST_DEVICE bool in_ptrs_range(double rate) { return (rate >= kInversionLimit) & (rate < INFINITY); }

// The candidates k of one PTRS attempt of every element from the words (wu, wv), with us (see ptrs_candidate),
// PTRS's constant b (for ptrs_tests: a square root fewer there), and squeezed[i] where the squeeze accepts k at a
// rate PTRS handles. Lanes outside PTRS's range compute on a stand-in rate. `flatten` inlines the math, which
// GCC's size heuristics would otherwise call (and so not vectorise).
CYCLEISP_CPU_CLONES_AVX512 __attribute__((flatten)) void ptrs_candidates(const double* __restrict__ rate,
                                                                  const uint32_t* __restrict__ wu,
                                                                  const uint32_t* __restrict__ wv, int64_t n,
                                                                  double* __restrict__ k, double* __restrict__ us,
                                                                  double* __restrict__ b,
                                                                  Flag* __restrict__ squeezed) {
  for (int64_t i = 0; i < n; ++i) {
    const bool ptrs = in_ptrs_range(rate[i]);
    const PtrsSetup s = ptrs_setup(ptrs ? rate[i] : kInversionLimit);
    b[i] = s.b;
    k[i] = ptrs_candidate(s, uniform_open(wu[i], 0.0), &us[i]);
    squeezed[i] = ptrs & ptrs_squeeze(s, us[i], uniform_open(wv[i], 0.0));
  }
}

// PTRS's test past the squeeze of candidates (k, us) with their second words wv, at rates PTRS handles (b from
// ptrs_candidates).
CYCLEISP_CPU_CLONES_AVX512 __attribute__((flatten)) void ptrs_tests(const double* __restrict__ rate,
                                                             const double* __restrict__ b,
                                                             const double* __restrict__ k,
                                                             const double* __restrict__ us,
                                                             const uint32_t* __restrict__ wv, int64_t n,
                                                             Flag* __restrict__ accepted) {
  for (int64_t i = 0; i < n; ++i) {
    accepted[i] = ptrs_accepts_past_squeeze(ptrs_setup(rate[i], b[i]), k[i], us[i], uniform_open(wv[i], 0.0));
  }
}

// The classes of a run's elements after PTRS's first squeeze: those its full test must decide (`tested`), the
// small rates of inversion (`small`), and the rest: the rest needs no more work unless degenerate (0, inf).
CYCLEISP_CPU_CLONES_AVX512 void classify(const double* __restrict__ rate, const Flag* __restrict__ squeezed,
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
  Flag done[kInversionLanes];
};

// One step of poisson_inversion's loop in every lane (the same operations, masked where the lane is done):
// whether any lane goes on.
CYCLEISP_CPU_CLONES_AVX512 bool inversion_step(const double* __restrict__ rate, const double* __restrict__ u,
                                               InversionState* __restrict__ s) {
  Flag going = 0;
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

// The Philox words of counters first + element[l], l < n, at `round`, word-major (GCC's vectorisation of the
// scalar generator: these runs are short).
CYCLEISP_CPU_CLONES_AVX512 void philox_at(Stream stream, int64_t first, const int32_t* __restrict__ element,
                                          uint32_t round, int64_t n, uint32_t* __restrict__ w0,
                                          uint32_t* __restrict__ w1, uint32_t* __restrict__ w2,
                                          uint32_t* __restrict__ w3) {
  for (int64_t l = 0; l < n; ++l) {
    const Words r = stream.draw(first + element[l], round);
    w0[l] = r.w[0];
    w1[l] = r.w[1];
    w2[l] = r.w[2];
    w3[l] = r.w[3];
  }
}

// PTRS attempts before this one run vectorised over the elements still rejected; the scalar algorithm of
// noise_math.h finishes from it (about 1 element in 10^5 of the benchmark's rates reaches attempt 6).
constexpr uint32_t kVectorAttempts = 6;
static_assert(kVectorAttempts % 2 == 0, "the scalar finish starts at the first attempt of a round");

// The elements of a run that PTRS has not accepted yet, gathered: their positions in the run, their rates and
// the words (u, v) of their next attempt where that attempt is the second of its round.
struct Pending {
  int64_t n = 0;
  int32_t element[kTile];
  double rate[kTile];
  uint32_t u[kTile], v[kTile];
};

// PTRS attempts 1, 2, ... of the pending elements, each attempt one vectorised pass over those its predecessor
// rejected (attempt a takes words 2 (a % 2), 2 (a % 2) + 1 of round 1 + a / 2; a new round's words are drawn for
// the pending elements only); count[element] gets the accepted candidates.
void later_attempts(const Stream& stream, int64_t first, Pending& p, double* count) {
  uint32_t rw[4][kTile];  // the words of the round of an even attempt
  double k[kTile], us[kTile], b[kTile];
  Flag squeezed[kTile], accepted[kTile];
  for (uint32_t attempt = 1; p.n > 0; ++attempt) {
    if (attempt == kVectorAttempts) {
      for (int64_t j = 0; j < p.n; ++j) {
        const int64_t i = p.element[j];
        count[i] = poisson_ptrs(stream, first + i, ptrs_setup(p.rate[j]), attempt,
                                stream.draw(first + i, 1 + attempt / 2));
      }
      return;
    }
    const int64_t lanes = padded(p.n);
    for (int64_t j = p.n; j < lanes; ++j) {
      p.element[j] = 0;
      p.rate[j] = kPadRate;
      p.u[j] = p.v[j] = kPadWord;
    }
    const bool new_round = attempt % 2 == 0;
    if (new_round) philox_at(stream, first, p.element, 1 + attempt / 2, lanes, rw[0], rw[1], rw[2], rw[3]);
    const uint32_t* u = new_round ? rw[0] : p.u;
    const uint32_t* v = new_round ? rw[1] : p.v;
    ptrs_candidates(p.rate, u, v, lanes, k, us, b, squeezed);
    ptrs_tests(p.rate, b, k, us, v, lanes, accepted);
    int64_t kept = 0;  // compaction in place: kept <= j
    for (int64_t j = 0; j < p.n; ++j) {
      const int32_t i = p.element[j];
      const double rate = p.rate[j];
      count[i] = k[j];
      p.element[kept] = i;
      p.rate[kept] = rate;
      p.u[kept] = new_round ? rw[2][j] : 0u;  // the next attempt's words, where it is the second of this round
      p.v[kept] = new_round ? rw[3][j] : 0u;
      kept += !(squeezed[j] | accepted[j]);
    }
    p.n = kept;
  }
}

// The Poisson counts of the float64 rates of elements first .. first + n - 1 (n <= kTile), drawn as
// poisson_draw of noise_math.h draws them (rounds >= 1 at counter index first + i). Vectorised passes take PTRS's
// first attempt up to its squeeze for every element, its full test for those the squeeze leaves, and each later
// attempt for those rejected so far (each pass over the gathered elements only); inversion takes the small
// rates, eight lanes in step. Every element gets the draw the scalar algorithm alone would give it.
void poisson_counts(const Stream& stream, int64_t first, const double* rate, int64_t n, double* count) {
  uint32_t w[4][kTile];
  double us[kTile], b[kTile];
  Flag squeezed[kTile];
  uint8_t tested_mask[kTile], small_mask[kTile];
  philox_block(stream, first, 1, n, w[0], w[1], w[2], w[3]);
  ptrs_candidates(rate, w[0], w[1], n, count, us, b, squeezed);  // attempt 0: words 0, 1 of round 1
  classify(rate, squeezed, n, tested_mask, small_mask, count);

  // Attempt 0 past the squeeze: its full test, over the tested elements gathered.
  int32_t tested[kTile];
  const int64_t m = compact(tested_mask, n, tested);
  double t_rate[kTile], t_b[kTile], t_k[kTile], t_us[kTile];
  uint32_t t_v[kTile];
  Flag t_accepted[kTile];
  for (int64_t j = 0; j < m; ++j) {
    t_rate[j] = rate[tested[j]];
    t_b[j] = b[tested[j]];
    t_k[j] = count[tested[j]];
    t_us[j] = us[tested[j]];
    t_v[j] = w[1][tested[j]];
  }
  for (int64_t j = m; j < padded(m); ++j) {
    t_rate[j] = kPadRate;
    t_b[j] = kPadB;
    t_k[j] = kPadCount;
    t_us[j] = kPadUs;
    t_v[j] = kPadWord;
  }
  ptrs_tests(t_rate, t_b, t_k, t_us, t_v, padded(m), t_accepted);

  // Those it rejected go on from attempt 1 (words 2, 3 of round 1).
  Pending pending;
  for (int64_t j = 0; j < m; ++j) {
    const int32_t i = tested[j];
    pending.element[pending.n] = i;
    pending.rate[pending.n] = t_rate[j];
    pending.u[pending.n] = w[2][i];
    pending.v[pending.n] = w[3][i];
    pending.n += !t_accepted[j];
  }
  later_attempts(stream, first, pending, count);

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
