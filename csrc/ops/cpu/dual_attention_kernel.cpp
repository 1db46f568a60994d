// CPU kernels of cycleisp_fast::dual_attention_forward / dual_attention_backward, over the shared math of
// dual_attention_math.h. One task per (image, tile of kTile pixels); the 1x1 projection of a tile is two
// matrix products on (C x kTile) blocks that stay in cache, through the BLAS that torch links (MKL's
// sgemm_/dgemm_; a plain loop when none is there), so neither attention branch nor their concatenation is
// ever stored:
//
//   forward  pass 1  channel max / argmax / mean per pixel, per-tile channel sums         reads res once
//            per image  the CA MLP -> c (N, C) and W_b diag(c)
//            pass 2  out = W_a (s res) + (W_b diag(c)) res + b + x                       reads res, x
//   backward pass 1  dL/dlogit(p) (from W_a res), per-thread sums of (s g) res^T, g res^T, g   reads g, res
//            per image  dL/dc, the CA MLP's backward -> dL/dmean
//            pass 2  dL/dres = W_a^T (s g) + (W_b diag(c))^T g + pool and mean terms        reads g
//
// The BLAS is column-major: a row-major (rows x cols) block with leading dimension ld is, to it, the
// transposed matrix with the same ld. Half and bfloat16 are computed in float32 (converted on entry).

#include <algorithm>
#include <limits>
#include <tuple>
#include <vector>

#include "../dual_attention.h"
#include "vectorize.h"

extern "C" {
// Fortran BLAS, exported by the MKL (or OpenBLAS) that libtorch links; weak, so a torch without one still
// loads this extension and gets the plain loops below.
void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const float* alpha,
            const float* a, const int* lda, const float* b, const int* ldb, const float* beta, float* c,
            const int* ldc) __attribute__((weak));
void dgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const double* alpha,
            const double* a, const int* lda, const double* b, const int* ldb, const double* beta, double* c,
            const int* ldc) __attribute__((weak));
}

namespace cycleisp_fast {
namespace dual_attention {
namespace {

// Pixels per task: the (C x kTile) blocks a task touches (res or g, its scaled copy, out) stay in L2 for C = 64;
// 1024 measured 8 % faster than 256 in the forward (fewer, larger BLAS calls).
constexpr int64_t kTile = 1024;

// C (m x n) = alpha op(A) op(B) + beta C, column-major, op = transpose when trans is 'T'.
template <typename T>
void plain_gemm(char transa, char transb, int m, int n, int k, T alpha, const T* a, int lda, const T* b, int ldb,
                T beta, T* c, int ldc) {
  for (int j = 0; j < n; ++j) {
    for (int i = 0; i < m; ++i) {
      T sum = T(0);
      for (int l = 0; l < k; ++l) {
        const T av = transa == 'T' ? a[l + i * lda] : a[i + l * lda];
        const T bv = transb == 'T' ? b[j + l * ldb] : b[l + j * ldb];
        sum += av * bv;
      }
      c[i + j * ldc] = alpha * sum + (beta == T(0) ? T(0) : beta * c[i + j * ldc]);
    }
  }
}

template <typename T>
void gemm(char transa, char transb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
          int64_t ldb, T beta, T* c, int64_t ldc) {
  const int mi = static_cast<int>(m), ni = static_cast<int>(n), ki = static_cast<int>(k);
  const int ldai = static_cast<int>(lda), ldbi = static_cast<int>(ldb), ldci = static_cast<int>(ldc);
  if constexpr (std::is_same_v<T, float>) {
    if (sgemm_ != nullptr) return sgemm_(&transa, &transb, &mi, &ni, &ki, &alpha, a, &ldai, b, &ldbi, &beta, c, &ldci);
  } else {
    if (dgemm_ != nullptr) return dgemm_(&transa, &transb, &mi, &ni, &ki, &alpha, a, &ldai, b, &ldbi, &beta, c, &ldci);
  }
  plain_gemm(transa, transb, mi, ni, ki, alpha, a, ldai, b, ldbi, beta, c, ldci);
}

struct Tile {
  int64_t image, begin, size;  // pixels [begin, begin + size) of image
};

// Runs body(tile, thread) over every (image, tile of kTile pixels), in parallel; thread < get_num_threads().
template <typename Body>
void for_each_tile(const Shape& shape, const Body& body) {
  const int64_t tiles = (shape.plane() + kTile - 1) / kTile;
  parallel_for(0, shape.batch * tiles, 1, [&](int64_t first, int64_t last) {
    const int thread = thread_index();
    for (int64_t task = first; task < last; ++task) {
      const int64_t begin = (task % tiles) * kTile;
      body(Tile{task / tiles, begin, std::min(kTile, shape.plane() - begin)}, thread);
    }
  });
}

// A (C x size) block of features: element (c, t) at data[c * ld + t] in NCHW (ld = H*W for a tensor, size for
// a packed scratch), at data[t * C + c] in channels_last (kNHWC; ld = C).
template <typename T>
struct Block {
  T* data;
  int64_t ld;
};

template <bool kNHWC>
inline int64_t element(int64_t c, int64_t t, int64_t ld) {
  return kNHWC ? t * ld + c : c * ld + t;
}

// Calls f(c, t) for every element of a (C x size) block, the unit-stride index innermost.
template <bool kNHWC, typename F>
__attribute__((always_inline)) inline void for_each_element(int64_t channels, int64_t size, const F& f) {
  if constexpr (kNHWC) {
    for (int64_t t = 0; t < size; ++t) {
      for (int64_t c = 0; c < channels; ++c) f(c, t);
    }
  } else {
    for (int64_t c = 0; c < channels; ++c) {
      for (int64_t t = 0; t < size; ++t) f(c, t);
    }
  }
}

// The tile of image `tile.image` of a dense (N, C, H, W) tensor in the layout.
template <bool kNHWC, typename T>
Block<T> tile_block(T* data, const Shape& s, const Tile& tile) {
  const int64_t image = tile.image * s.channels * s.plane();
  return kNHWC ? Block<T>{data + image + tile.begin * s.channels, s.channels}
               : Block<T>{data + image + tile.begin, s.plane()};
}

// A packed (C x size) scratch block in the layout.
template <bool kNHWC, typename T>
Block<T> scratch_block(T* data, int64_t channels, int64_t size) {
  return {data, kNHWC ? channels : size};
}

// d = op(m) b + beta d: m row-major (C x C, leading dimension ldm), op(m) = m or its transpose; b and d blocks
// of C x size. The BLAS is column-major: a row-major matrix is, to it, the transpose with the same ld.
template <bool kNHWC, typename T>
void project(bool transpose_m, int64_t channels, int64_t size, const T* m, int64_t ldm, Block<const T> b, T beta,
             Block<T> d) {
  if constexpr (kNHWC) {  // d (C x size, ld C) = op(m) b
    gemm<T>(transpose_m ? 'N' : 'T', 'N', channels, size, channels, T(1), m, ldm, b.data, b.ld, beta, d.data, d.ld);
  } else {  // d^T (size x C) = b^T op(m)^T
    gemm<T>('N', transpose_m ? 'T' : 'N', size, channels, channels, T(1), b.data, b.ld, m, ldm, beta, d.data, d.ld);
  }
}

// outer[i][j] += sum_t a[i][t] b[j][t], outer row-major (C x C); seen column-major: outer^T += b a^T.
template <bool kNHWC, typename T>
void add_outer_products(int64_t channels, int64_t size, Block<const T> a, Block<const T> b, T* outer) {
  if constexpr (kNHWC) {
    gemm<T>('N', 'T', channels, channels, size, T(1), b.data, b.ld, a.data, a.ld, T(1), outer, channels);
  } else {
    gemm<T>('T', 'N', channels, channels, size, T(1), b.data, b.ld, a.data, a.ld, T(1), outer, channels);
  }
}

// Whether value v at a later channel replaces the running max m: the first NaN wins, as in torch.max, else the
// first largest.
template <typename T>
__attribute__((always_inline)) inline bool replaces_max(T v, T m) {
  return v > m || (v != v && m == m);
}

// The channel max, its first argmax and the channel sum of one channels_last pixel, kLanes channels at a time:
// lane l keeps the first max of the channels l, l + kLanes, ... (visited in order), then the lanes are merged
// by (NaN first, larger, smaller channel) and the channels past the last whole block follow one by one.
template <typename T>
__attribute__((always_inline)) inline void pool_pixel(const T* __restrict__ px, int64_t channels, T& max,
                                                      int32_t& argmax, T& sum) {
  const int64_t whole = channels / kLanes * kLanes;
  T m = px[0], total = T(0);
  int32_t a = 0;
  int64_t c = 0;
  if (whole > 0) {
    T best[kLanes], sums[kLanes];
    int32_t where[kLanes];
    for (int l = 0; l < kLanes; ++l) {
      best[l] = sums[l] = px[l];
      where[l] = l;
    }
    for (c = kLanes; c < whole; c += kLanes) {
      for (int l = 0; l < kLanes; ++l) {
        const T v = px[c + l];
        const bool greater = replaces_max(v, best[l]);
        best[l] = greater ? v : best[l];
        where[l] = greater ? static_cast<int32_t>(c + l) : where[l];
        sums[l] += v;
      }
    }
    m = best[0];
    a = where[0];
    for (int l = 1; l < kLanes; ++l) {
      const T v = best[l];
      const bool m_nan = m != m, v_nan = v != v;
      const bool earlier = where[l] < a;
      const bool take = m_nan ? (v_nan && earlier) : (v_nan || v > m || (v == m && earlier));
      m = take ? v : m;
      a = take ? where[l] : a;
    }
    for (int l = 0; l < kLanes; ++l) total += sums[l];
  }
  for (; c < channels; ++c) {
    const T v = px[c];
    const bool greater = c > 0 && replaces_max(v, m);
    m = greater ? v : m;
    a = greater ? static_cast<int32_t>(c) : a;
    total += v;
  }
  max = m;
  argmax = a;
  sum = total;
}

// Channel max, its first argmax and the channel mean of every pixel of a tile, and each channel's sum over the
// tile (channel_sums, C values). NCHW runs along the pixels of each channel (vectorised, the channel sum in
// independent lanes); channels_last a pixel at a time, vectorised over its channels (pool_pixel).
template <bool kNHWC, typename T>
CYCLEISP_CPU_CLONES void pool_tile(Block<const T> res, int64_t channels, int64_t size, T* __restrict__ max,
                                   T* __restrict__ mean, int32_t* __restrict__ argmax, T* __restrict__ channel_sums) {
  const T* __restrict__ data = res.data;
  const T inverse = T(1) / static_cast<T>(channels);
  if constexpr (kNHWC) {
    for (int64_t c = 0; c < channels; ++c) channel_sums[c] = T(0);
    for (int64_t t = 0; t < size; ++t) {
      const T* __restrict__ px = data + t * res.ld;
      T sum;
      pool_pixel(px, channels, max[t], argmax[t], sum);
      mean[t] = sum * inverse;
      for (int64_t c = 0; c < channels; ++c) channel_sums[c] += px[c];
    }
    return;
  }
  for (int64_t t = 0; t < size; ++t) {
    max[t] = data[t];
    mean[t] = T(0);
    argmax[t] = 0;
  }
  for (int64_t c = 0; c < channels; ++c) {
    channel_sums[c] = lane_sum<T>(size, [&](int64_t t) { return data[c * res.ld + t]; });
  }
  for (int64_t c = 0; c < channels; ++c) {
    const T* __restrict__ row = data + c * res.ld;
    for (int64_t t = 0; t < size; ++t) {
      const T v = row[t];
      const bool greater = replaces_max(v, max[t]);
      max[t] = greater ? v : max[t];
      argmax[t] = greater ? static_cast<int32_t>(c) : argmax[t];
      mean[t] += v;
    }
  }
  for (int64_t t = 0; t < size; ++t) mean[t] *= inverse;
}

// s(p) = sigmoid(SA logit) for the pixels of a tile.
template <typename T>
void spatial_scale_tile(const T* pool, const T* sa, const Shape& shape, const Tile& tile, T* scale) {
  for (int64_t t = 0; t < tile.size; ++t) {
    const int64_t p = tile.begin + t;
    scale[t] = sigmoid(spatial_logit(pool, sa, shape.height, shape.width, p / shape.width, p % shape.width));
  }
}

// dst(c, t) = scale[t] src(c, t).
template <bool kNHWC, typename T>
CYCLEISP_CPU_CLONES void scale_pixels(Block<const T> src, const T* __restrict__ scale, int64_t channels, int64_t size,
                                      Block<T> dst) {
  const T* __restrict__ in = src.data;
  T* __restrict__ out = dst.data;
  for_each_element<kNHWC>(channels, size, [&](int64_t c, int64_t t) {
    out[element<kNHWC>(c, t, dst.ld)] = scale[t] * in[element<kNHWC>(c, t, src.ld)];
  });
}

// out(c, t) += bias[c] + x(c, t).
template <bool kNHWC, typename T>
CYCLEISP_CPU_CLONES void add_bias_residual(Block<T> out, Block<const T> x, const T* __restrict__ bias,
                                           int64_t channels, int64_t size) {
  T* __restrict__ o = out.data;
  const T* __restrict__ in = x.data;
  for_each_element<kNHWC>(channels, size, [&](int64_t c, int64_t t) {
    o[element<kNHWC>(c, t, out.ld)] += bias[c] + in[element<kNHWC>(c, t, x.ld)];
  });
}

// The CA MLP of every image: scale (N, C), hidden (N, R), and the per-image W_b diag(c) (N, C, C).
template <typename T>
struct ChannelAttention {
  std::vector<T> scale, hidden, scaled_proj;
};

template <typename T>
ChannelAttention<T> channel_attention(const Shape& s, const Weights& w, const T* channel_mean) {
  const int64_t C = s.channels, R = s.reduced;
  ChannelAttention<T> ca{std::vector<T>(s.batch * C), std::vector<T>(s.batch * R), std::vector<T>(s.batch * C * C)};
  const T* proj = w.proj.const_data_ptr<T>();
  for (int64_t n = 0; n < s.batch; ++n) {
    T* scale = ca.scale.data() + n * C;
    channel_attention_forward(channel_mean + n * C, w.w1.const_data_ptr<T>(), w.b1.const_data_ptr<T>(),
                              w.w2.const_data_ptr<T>(), w.b2.const_data_ptr<T>(), C, R, ca.hidden.data() + n * R, scale);
    for (int64_t i = 0; i < C; ++i) {
      for (int64_t j = 0; j < C; ++j) ca.scaled_proj[(n * C + i) * C + j] = proj[i * 2 * C + C + j] * scale[j];
    }
  }
  return ca;
}

template <typename T, bool kNHWC>
void forward_kernel(const ForwardTensors& t) {
  const Shape& s = t.shape;
  const int64_t C = s.channels, P = s.plane();
  const int64_t tiles = (P + kTile - 1) / kTile;
  const T* res = t.res.const_data_ptr<T>();
  const T* x = t.x.const_data_ptr<T>();
  T* pool = t.pool.mutable_data_ptr<T>();
  int32_t* argmax = t.argmax.mutable_data_ptr<int32_t>();
  std::vector<T> tile_sums(s.batch * tiles * C);
  for_each_tile(s, [&](const Tile& tile, int) {
    T* image_pool = pool + tile.image * 2 * P;
    pool_tile<kNHWC>(tile_block<kNHWC>(res, s, tile), C, tile.size, image_pool + tile.begin,
                     image_pool + P + tile.begin, argmax + tile.image * P + tile.begin,
                     tile_sums.data() + (tile.image * tiles + tile.begin / kTile) * C);
  });
  T* channel_mean = t.channel_mean.mutable_data_ptr<T>();
  for (int64_t n = 0; n < s.batch; ++n) {
    for (int64_t c = 0; c < C; ++c) {
      T sum = T(0);
      for (int64_t k = 0; k < tiles; ++k) sum += tile_sums[(n * tiles + k) * C + c];
      channel_mean[n * C + c] = sum / static_cast<T>(P);
    }
  }
  const ChannelAttention<T> ca = channel_attention<T>(s, t.weights, channel_mean);
  const T* proj = t.weights.proj.const_data_ptr<T>();
  const T* sa = t.weights.sa.const_data_ptr<T>();
  const T* bias = t.weights.proj_bias.const_data_ptr<T>();
  T* out = t.out.mutable_data_ptr<T>();
  std::vector<std::vector<T>> scratch(num_threads());
  for_each_tile(s, [&](const Tile& tile, int thread) {
    std::vector<T>& buffer = scratch[thread];
    buffer.resize(kTile + C * kTile);
    T* scale = buffer.data();
    const Block<T> scaled_res = scratch_block<kNHWC>(scale + kTile, C, tile.size);
    const Block<const T> res_tile = tile_block<kNHWC>(res, s, tile);
    const Block<T> out_tile = tile_block<kNHWC>(out, s, tile);
    spatial_scale_tile(pool + tile.image * 2 * P, sa, s, tile, scale);
    scale_pixels<kNHWC>(res_tile, scale, C, tile.size, scaled_res);
    // out = W_a (s res) + (W_b diag(c)) res + b + x; W_a is proj's left half (leading dimension 2C)
    project<kNHWC>(false, C, tile.size, proj, 2 * C, Block<const T>{scaled_res.data, scaled_res.ld}, T(0), out_tile);
    project<kNHWC>(false, C, tile.size, ca.scaled_proj.data() + tile.image * C * C, C, res_tile, T(1), out_tile);
    add_bias_residual<kNHWC>(out_tile, tile_block<kNHWC>(x, s, tile), bias, C, tile.size);
  });
}

// grad_logit[t] = (sum_c g(c, t) a(c, t)) s (1 - s): dL/ds(p) = g(p) . W_a res(p), through the sigmoid.
template <bool kNHWC, typename T>
CYCLEISP_CPU_CLONES void logit_grad_tile(Block<const T> g, Block<const T> projected, const T* __restrict__ scale,
                                         int64_t channels, int64_t size, T* __restrict__ grad_logit) {
  const T* __restrict__ gd = g.data;
  const T* __restrict__ ad = projected.data;
  for (int64_t t = 0; t < size; ++t) grad_logit[t] = T(0);
  for_each_element<kNHWC>(channels, size, [&](int64_t c, int64_t t) {
    grad_logit[t] += gd[element<kNHWC>(c, t, g.ld)] * ad[element<kNHWC>(c, t, projected.ld)];
  });
  for (int64_t t = 0; t < size; ++t) grad_logit[t] *= scale[t] * (T(1) - scale[t]);
}

// sums[c] += sum_t g(c, t).
template <bool kNHWC, typename T>
CYCLEISP_CPU_CLONES void add_channel_sums(Block<const T> g, int64_t channels, int64_t size, T* __restrict__ sums) {
  const T* __restrict__ gd = g.data;
  for_each_element<kNHWC>(channels, size, [&](int64_t c, int64_t t) { sums[c] += gd[element<kNHWC>(c, t, g.ld)]; });
}

// grad(c, t) += mean_grad[t] + channel_grad[c] + (argmax[t] == c) max_grad[t].
template <bool kNHWC, typename T>
CYCLEISP_CPU_CLONES void add_pool_grads(Block<T> grad, const T* __restrict__ max_grad, const T* __restrict__ mean_grad,
                                        const int32_t* __restrict__ argmax, const T* __restrict__ channel_grad,
                                        int64_t channels, int64_t size) {
  T* __restrict__ gd = grad.data;
  for_each_element<kNHWC>(channels, size, [&](int64_t c, int64_t t) {
    gd[element<kNHWC>(c, t, grad.ld)] += mean_grad[t] + channel_grad[c] + (argmax[t] == c ? max_grad[t] : T(0));
  });
}

// Per-thread partial sums of the backward's first pass.
template <typename T>
struct Partials {
  std::vector<T> scaled_outer;  // sum (s g) res^T   (C, C), row-major [i][j]
  std::vector<T> outer;         // sum g res^T per image (N, C, C)
  std::vector<T> bias;          // sum g   (C)
  std::vector<T> sa;            // the SA weight's gradient (18)
  std::vector<T> buffer;        // scratch: s, the pool gradients, two (C x kTile) blocks
};

template <typename T, bool kNHWC>
void backward_kernel(BackwardTensors& t) {
  const Shape& s = t.shape;
  const int64_t C = s.channels, R = s.reduced, P = s.plane();
  const T* g = t.grad.const_data_ptr<T>();
  const T* res = t.res.const_data_ptr<T>();
  const T* pool = t.pool.const_data_ptr<T>();
  const int32_t* argmax = t.argmax.const_data_ptr<int32_t>();
  const T* channel_mean = t.channel_mean.const_data_ptr<T>();
  const T* proj = t.weights.proj.const_data_ptr<T>();
  const T* sa = t.weights.sa.const_data_ptr<T>();
  const ChannelAttention<T> ca = channel_attention<T>(s, t.weights, channel_mean);
  std::vector<Partials<T>> partials(num_threads());
  for (Partials<T>& p : partials) {
    p.scaled_outer.assign(C * C, T(0));
    p.outer.assign(s.batch * C * C, T(0));
    p.bias.assign(C, T(0));
    p.sa.assign(kSpatialTaps, T(0));
    p.buffer.resize(3 * kTile + 2 * C * kTile);
  }
  std::vector<T> grad_logit(s.batch * P);
  // Pass 1: dL/dlogit and the sums the weight gradients need.
  for_each_tile(s, [&](const Tile& tile, int thread) {
    Partials<T>& part = partials[thread];
    T* scale = part.buffer.data();
    const Block<T> scaled_grad = scratch_block<kNHWC>(scale + 3 * kTile, C, tile.size);
    const Block<T> projected = scratch_block<kNHWC>(scaled_grad.data + C * kTile, C, tile.size);
    const Block<const T> g_tile = tile_block<kNHWC>(g, s, tile);
    const Block<const T> res_tile = tile_block<kNHWC>(res, s, tile);
    spatial_scale_tile(pool + tile.image * 2 * P, sa, s, tile, scale);
    scale_pixels<kNHWC>(g_tile, scale, C, tile.size, scaled_grad);
    project<kNHWC>(false, C, tile.size, proj, 2 * C, res_tile, T(0), projected);
    logit_grad_tile<kNHWC>(g_tile, Block<const T>{projected.data, projected.ld}, scale, C, tile.size,
                           grad_logit.data() + tile.image * P + tile.begin);
    add_outer_products<kNHWC>(C, tile.size, Block<const T>{scaled_grad.data, scaled_grad.ld}, res_tile,
                              part.scaled_outer.data());
    add_outer_products<kNHWC>(C, tile.size, g_tile, res_tile, part.outer.data() + tile.image * C * C);
    add_channel_sums<kNHWC>(g_tile, C, tile.size, part.bias.data());
  });
  // Per image: the projection's gradient, dL/dc and the CA MLP's backward.
  Weights& grads = t.grads;
  T* grad_proj = grads.proj.mutable_data_ptr<T>();
  T* grad_bias = grads.proj_bias.mutable_data_ptr<T>();
  for (const Partials<T>& part : partials) {
    for (int64_t i = 0; i < C; ++i) {
      grad_bias[i] += part.bias[i];
      for (int64_t j = 0; j < C; ++j) grad_proj[i * 2 * C + j] += part.scaled_outer[i * C + j];
    }
  }
  std::vector<T> channel_grad(s.batch * C), outer(C * C), grad_scale(C), grad_hidden(R);
  for (int64_t n = 0; n < s.batch; ++n) {
    std::fill(outer.begin(), outer.end(), T(0));
    for (const Partials<T>& part : partials) {
      for (int64_t k = 0; k < C * C; ++k) outer[k] += part.outer[n * C * C + k];
    }
    const T* scale = ca.scale.data() + n * C;
    std::fill(grad_scale.begin(), grad_scale.end(), T(0));
    for (int64_t i = 0; i < C; ++i) {
      for (int64_t j = 0; j < C; ++j) {
        grad_proj[i * 2 * C + C + j] += scale[j] * outer[i * C + j];
        grad_scale[j] += proj[i * 2 * C + C + j] * outer[i * C + j];
      }
    }
    channel_attention_backward(grad_scale.data(), scale, ca.hidden.data() + n * R, channel_mean + n * C,
                               t.weights.w1.const_data_ptr<T>(), t.weights.w2.const_data_ptr<T>(), C, R,
                               grad_hidden.data(), grads.w1.mutable_data_ptr<T>(), grads.b1.mutable_data_ptr<T>(),
                               grads.w2.mutable_data_ptr<T>(), grads.b2.mutable_data_ptr<T>(),
                               channel_grad.data() + n * C);
    for (int64_t c = 0; c < C; ++c) channel_grad[n * C + c] /= static_cast<T>(P);
  }
  // Pass 2: dL/dres, and the SA weight's gradient.
  T* grad_res = t.grad_res.mutable_data_ptr<T>();
  const T inverse_channels = T(1) / static_cast<T>(C);
  for_each_tile(s, [&](const Tile& tile, int thread) {
    Partials<T>& part = partials[thread];
    T* scale = part.buffer.data();
    T* max_grad = scale + kTile;
    T* mean_grad = max_grad + kTile;
    const Block<T> scaled_grad = scratch_block<kNHWC>(scale + 3 * kTile, C, tile.size);
    const Block<const T> g_tile = tile_block<kNHWC>(g, s, tile);
    const Block<T> grad_tile = tile_block<kNHWC>(grad_res, s, tile);
    const T* image_pool = pool + tile.image * 2 * P;
    const T* image_logit_grad = grad_logit.data() + tile.image * P;
    spatial_scale_tile(image_pool, sa, s, tile, scale);
    scale_pixels<kNHWC>(g_tile, scale, C, tile.size, scaled_grad);
    // dL/dres = W_a^T (s g) + (W_b diag(c))^T g + the pool and channel-mean terms
    project<kNHWC>(true, C, tile.size, proj, 2 * C, Block<const T>{scaled_grad.data, scaled_grad.ld}, T(0), grad_tile);
    project<kNHWC>(true, C, tile.size, ca.scaled_proj.data() + tile.image * C * C, C, g_tile, T(1), grad_tile);
    for (int64_t i = 0; i < tile.size; ++i) {
      const int64_t p = tile.begin + i, h = p / s.width, w = p % s.width;
      max_grad[i] = spatial_logit_transposed(image_logit_grad, sa, 0, s.height, s.width, h, w);
      mean_grad[i] = spatial_logit_transposed(image_logit_grad, sa, 1, s.height, s.width, h, w) * inverse_channels;
      const T grad = image_logit_grad[p];
      const T padded = grad * T(0);  // a zero-padded tap: 0, NaN for a non-finite dL/dlogit (as the reference conv)
      for (int k = 0; k < 2; ++k) {
        for (int dy = 0; dy < 3; ++dy) {
          const int64_t y = h + dy - 1;
          for (int dx = 0; dx < 3; ++dx) {
            const int64_t x = w + dx - 1;
            const bool inside = y >= 0 && y < s.height && x >= 0 && x < s.width;
            part.sa[k * 9 + dy * 3 + dx] += inside ? grad * image_pool[k * P + y * s.width + x] : padded;
          }
        }
      }
    }
    add_pool_grads<kNHWC>(grad_tile, max_grad, mean_grad, argmax + tile.image * P + tile.begin,
                          channel_grad.data() + tile.image * C, C, tile.size);
  });
  T* grad_sa = grads.sa.mutable_data_ptr<T>();
  for (const Partials<T>& part : partials) {
    for (int k = 0; k < kSpatialTaps; ++k) grad_sa[k] += part.sa[k];
  }
}

bool computed_in_float(const Tensor& res) {
  return res.scalar_type() == ScalarType::Half || res.scalar_type() == ScalarType::BFloat16;
}

void check_blas_sizes(const Shape& s) {
  constexpr int64_t limit = std::numeric_limits<int>::max();
  CF_CHECK(s.plane() <= limit && 2 * s.channels <= limit,
                    "dual_attention (CPU): H*W and 2C must fit a 32-bit BLAS index, got H*W = ", s.plane(), ", C = ",
                    s.channels);
}

std::tuple<Tensor, Tensor, Tensor, Tensor> dual_attention_forward_cpu(
    const Tensor& res, const Tensor& x, const Tensor& sa_weight, const Tensor& ca_w1,
    const Tensor& ca_b1, const Tensor& ca_w2, const Tensor& ca_b2, const Tensor& proj_w,
    const Tensor& proj_b) {
  if (computed_in_float(res)) {
    prepare_forward(res, x, sa_weight, ca_w1, ca_b1, ca_w2, ca_b2, proj_w, proj_b, true);  // checks, in res's dtype
    auto [out, pool, argmax, mean] = dual_attention_forward_cpu(cast(res, ScalarType::Float), cast(x, ScalarType::Float), sa_weight, ca_w1,
                                                                ca_b1, ca_w2, ca_b2, proj_w, proj_b);
    return {cast(out, res.scalar_type()), pool, argmax, mean};
  }
  const ForwardTensors t = prepare_forward(res, x, sa_weight, ca_w1, ca_b1, ca_w2, ca_b2, proj_w, proj_b, true);
  check_blas_sizes(t.shape);
  if (t.res.numel() > 0) {
    CF_DISPATCH_FLOAT_DOUBLE(t.res.scalar_type(), "dual_attention_forward_cpu", [&] {
      t.shape.channels_last ? forward_kernel<scalar_t, true>(t) : forward_kernel<scalar_t, false>(t);
    });
  }
  return {t.out, t.pool, t.argmax, t.channel_mean};
}

BackwardResult dual_attention_backward_cpu(const Tensor& grad_out, const Tensor& res, const Tensor& pool,
                                           const Tensor& argmax, const Tensor& channel_mean,
                                           const Tensor& sa_weight, const Tensor& ca_w1,
                                           const Tensor& ca_b1, const Tensor& ca_w2, const Tensor& ca_b2,
                                           const Tensor& proj_w) {
  if (computed_in_float(res)) {
    prepare_backward(grad_out, res, pool, argmax, channel_mean, sa_weight, ca_w1, ca_b1, ca_w2, ca_b2, proj_w, true);
    BackwardResult grads = dual_attention_backward_cpu(cast(grad_out, ScalarType::Float), cast(res, ScalarType::Float), pool, argmax,
                                                       channel_mean, sa_weight, ca_w1, ca_b1, ca_w2, ca_b2, proj_w);
    std::get<0>(grads) = cast(std::get<0>(grads), res.scalar_type());
    return grads;
  }
  BackwardTensors t =
      prepare_backward(grad_out, res, pool, argmax, channel_mean, sa_weight, ca_w1, ca_b1, ca_w2, ca_b2, proj_w, true);
  check_blas_sizes(t.shape);
  if (t.res.numel() > 0) {
    CF_DISPATCH_FLOAT_DOUBLE(t.res.scalar_type(), "dual_attention_backward_cpu", [&] {
      t.shape.channels_last ? backward_kernel<scalar_t, true>(t) : backward_kernel<scalar_t, false>(t);
    });
  } else {
    zero_(t.grad_res);
  }
  return finish_backward(t, sa_weight, ca_w1, ca_b1, ca_w2, ca_b2, proj_w);
}

}  // namespace
}  // namespace dual_attention
}  // namespace cycleisp_fast

STABLE_TORCH_LIBRARY_IMPL(cycleisp_fast, CPU, m) {
  m.impl("dual_attention_forward", TORCH_BOX(&cycleisp_fast::dual_attention::dual_attention_forward_cpu));
  m.impl("dual_attention_backward", TORCH_BOX(&cycleisp_fast::dual_attention::dual_attention_backward_cpu));
}
