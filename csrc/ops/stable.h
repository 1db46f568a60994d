// The one door from the kernels to libtorch: the LibTorch stable ABI (torch/csrc/stable, torch/headeronly), so
// that one build of cycleisp_fast._C loads in every torch from the release TORCH_TARGET_VERSION names
// (csrc/build_flags.txt: 2.10, the first whose stable API has everything used here) to the newest. No kernel
// includes ATen, c10 or torch/library.h; what they need from torch is here:
//
//   Tensor, ScalarType, Half, BFloat16, Device       the stable types
//   CF_CHECK(cond, message...)                       argument checks (a RuntimeError in Python: the stable ABI
//                                                    carries no exception type; the Python API raises
//                                                    ValueError/TypeError before any kernel runs)
//   empty_tensor / zeros_tensor / cast               allocation and conversion through the dispatcher, beside
//                                                    torch::stable's contiguous, empty_like, reshape
//   CF_DISPATCH_FLOATING(dtype, name, body)          body with scalar_t = double, float, Half, BFloat16
//   opmath_t<T>                                      float for Half/BFloat16, else T
//   parallel_for / num_threads / thread_index        torch's intra-op thread pool
//   parallel_for_dynamic                             its chunks taken first come, first served
//
// Example (a kernel's host side):
//   Tensor twice_cpu(const Tensor& x) {
//     CF_CHECK(is_floating(x.scalar_type()), "twice: x must be floating, got ", x.scalar_type());
//     Tensor in = contiguous(x), out = empty_like(in);
//     CF_DISPATCH_FLOATING(in.scalar_type(), "twice_cpu", [&] {
//       parallel_for(0, in.numel(), 4096, [&](int64_t b, int64_t e) {
//         for (int64_t i = b; i < e; ++i) out.mutable_data_ptr<scalar_t>()[i] = in.const_data_ptr<scalar_t>()[i] * 2;
//       });
//     });
//     return out;
//   }
#pragma once

#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/MemoryFormat.h>
#include <torch/headeronly/core/ScalarType.h>
#include <torch/headeronly/util/BFloat16.h>
#include <torch/headeronly/util/Half.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace cycleisp_fast {

using Tensor = torch::stable::Tensor;
using Device = torch::stable::Device;
using ScalarType = torch::headeronly::ScalarType;
using MemoryFormat = torch::headeronly::MemoryFormat;
using Shape = std::vector<int64_t>;
using IntArrayRef = torch::headeronly::IntHeaderOnlyArrayRef;
using DoubleArrayRef = torch::headeronly::HeaderOnlyArrayRef<double>;
using Half = c10::Half;
using BFloat16 = c10::BFloat16;

// ---- Schemas -------------------------------------------------------------------------------------------------

// The schemas of an op's operators: `CF_OP_SCHEMAS(m) { m.def("..."); }`. Registered by the CPU module
// cycleisp_fast._C; the CUDA module cycleisp_fast._C_cuda (compiled with CYCLEISP_FAST_CUDA_MODULE, loaded only
// beside a CUDA build of torch) compiles the same host code for its kernels but must not register them twice.
#ifdef CYCLEISP_FAST_CUDA_MODULE
#define CF_OP_SCHEMAS(m) \
  [[maybe_unused]] static void C10_CONCATENATE(cf_schemas_of_the_cpu_module_, C10_UID)(torch::stable::detail::StableLibrary & m)
#else
#define CF_OP_SCHEMAS(m) STABLE_TORCH_LIBRARY_FRAGMENT(cycleisp_fast, m)
#endif

// ---- Messages and checks -----------------------------------------------------------------------------------

inline std::string device_name(const Device& device) {
  std::string name = device.is_cpu() ? "cpu" : device.is_cuda() ? "cuda" : "device";
  if (!device.is_cpu() && device.index() >= 0) name += ":" + std::to_string(device.index());
  return name;
}

// A message part: tensor shapes as (2, 3), devices by name, everything else as streamed.
template <typename T>
void put(std::ostringstream& out, const T& value) {
  if constexpr (std::is_same_v<T, torch::headeronly::IntHeaderOnlyArrayRef> || std::is_same_v<T, Shape>) {
    out << '(';
    for (size_t i = 0; i < value.size(); ++i) out << (i ? ", " : "") << value[i];
    out << (value.size() == 1 ? ",)" : ")");
  } else if constexpr (std::is_same_v<T, Device>) {
    out << device_name(value);
  } else {
    out << value;
  }
}

template <typename... Args>
[[noreturn]] void fail(const Args&... parts) {
  std::ostringstream out;
  (put(out, parts), ...);
  throw std::runtime_error(out.str());
}

// Throws the message (its parts concatenated) unless cond holds.
#define CF_CHECK(cond, ...)                             \
  do {                                                  \
    if (!(cond)) ::cycleisp_fast::fail(__VA_ARGS__);    \
  } while (false)

// ---- Dtypes --------------------------------------------------------------------------------------------------

inline bool is_floating(ScalarType t) {
  return t == ScalarType::Double || t == ScalarType::Float || t == ScalarType::Half || t == ScalarType::BFloat16;
}

// The compute type of a storage type: float for the 16-bit floats, else the type itself.
template <typename T>
using opmath_t = std::conditional_t<std::is_same_v<T, Half> || std::is_same_v<T, BFloat16>, float, T>;

// float64 stays float64; every other floating type computes (and keeps statistics) in float32.
inline ScalarType accumulation_dtype(ScalarType t) {
  return t == ScalarType::Double ? ScalarType::Double : ScalarType::Float;
}

// One case of a dtype switch: the body (a lambda) called with scalar_t bound to TYPE.
#define CF_DISPATCH_CASE(ENUM, TYPE, ...) \
  case ::cycleisp_fast::ScalarType::ENUM: {  \
    using scalar_t = TYPE;                   \
    return __VA_ARGS__();                    \
  }

// A switch over DTYPE with the given CF_DISPATCH_CASEs; any other dtype fails, naming NAME.
#define CF_DISPATCH_SWITCH(DTYPE, NAME, CASES)                                      \
  [&] {                                                                             \
    const ::cycleisp_fast::ScalarType cf_dtype = (DTYPE);                           \
    switch (cf_dtype) {                                                             \
      CASES                                                                         \
      default:                                                                      \
        ::cycleisp_fast::fail(NAME, ": unsupported dtype ", cf_dtype);              \
    }                                                                               \
  }()

#define CF_FLOATING_CASES(...)                                      \
  CF_DISPATCH_CASE(Double, double, __VA_ARGS__)                     \
  CF_DISPATCH_CASE(Float, float, __VA_ARGS__)                       \
  CF_DISPATCH_CASE(Half, ::cycleisp_fast::Half, __VA_ARGS__)        \
  CF_DISPATCH_CASE(BFloat16, ::cycleisp_fast::BFloat16, __VA_ARGS__)

// Runs the lambda body with scalar_t bound to the C++ type of DTYPE (double, float, Half, BFloat16).
#define CF_DISPATCH_FLOATING(DTYPE, NAME, ...) CF_DISPATCH_SWITCH(DTYPE, NAME, CF_FLOATING_CASES(__VA_ARGS__))

// Only double and float (kernels that convert 16-bit inputs to float32 first).
#define CF_DISPATCH_FLOAT_DOUBLE(DTYPE, NAME, ...) \
  CF_DISPATCH_SWITCH(DTYPE, NAME, CF_DISPATCH_CASE(Double, double, __VA_ARGS__) CF_DISPATCH_CASE(Float, float, __VA_ARGS__))

// ---- Allocation and conversion (through the dispatcher) ------------------------------------------------------

// torch::stable's contiguous(t[, format]), empty_like(t) (same layout as t), reshape(t, sizes), zero_(t) and
// the other stable ops are found by argument-dependent lookup; these add what they lack.
inline Tensor empty_tensor(const Shape& sizes, ScalarType dtype, const Device& device,
                           MemoryFormat format = MemoryFormat::Contiguous) {
  return torch::stable::empty(torch::headeronly::IntHeaderOnlyArrayRef(sizes), dtype, std::nullopt, device,
                              std::nullopt, format);
}

inline Tensor zeros_tensor(const Shape& sizes, ScalarType dtype, const Device& device) {
  Tensor t = empty_tensor(sizes, dtype, device);
  torch::stable::zero_(t);
  return t;
}

// t in dtype (t itself when it has it already).
inline Tensor cast(const Tensor& t, ScalarType dtype) {
  return t.scalar_type() == dtype ? t : torch::stable::to(t, dtype);
}

// Whether a 4-D tensor is dense in channels_last order (N, H, W, C), as torch's is_contiguous(channels_last).
inline bool is_channels_last(const Tensor& t) {
  if (t.dim() != 4) return false;
  int64_t expected = 1;
  for (const int64_t d : {1, 3, 2, 0}) {
    if (t.size(d) != 1 && t.stride(d) != expected) return false;
    expected *= t.size(d);
  }
  return true;
}

// Whether a kernel that reads both layouts should take t as channels_last: dense in that order and not also
// contiguous (shapes where both hold, such as C = 1 or H = W = 1, go the NCHW way).
inline bool prefers_channels_last(const Tensor& t) { return is_channels_last(t) && !t.is_contiguous(); }

// ---- CPU threads ---------------------------------------------------------------------------------------------

// f(begin, end) over [begin, end) in chunks of at least `grain` on torch's intra-op thread pool.
template <typename F>
void parallel_for(int64_t begin, int64_t end, int64_t grain, const F& f) {
  if (begin >= end) return;
  torch::stable::parallel_for(begin, end, grain, f);
}

inline int num_threads() { return static_cast<int>(torch::stable::get_num_threads()); }

// f(begin, end) over [0, n) in chunks of `chunk` that torch's threads take first come, first served: for work whose
// cost varies along the range (the noise kernels: a bright image's Poisson draws cost more than a dark one's),
// where parallel_for's equal shares leave threads waiting on the slowest.
template <typename F>
void parallel_for_dynamic(int64_t n, int64_t chunk, const F& f) {
  if (n <= 0) return;
  std::atomic<int64_t> next{0};
  const int64_t workers = std::min<int64_t>(num_threads(), (n + chunk - 1) / chunk);
  parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    for (int64_t begin = next.fetch_add(chunk); begin < n; begin = next.fetch_add(chunk)) {
      f(begin, std::min(n, begin + chunk));
    }
  });
}

// The index of the calling thread within torch's pool, in [0, num_threads()).
inline int thread_index() {
  uint32_t index = 0;
  STABLE_TORCH_ERROR_CODE_CHECK(torch_get_thread_idx(&index));
  return static_cast<int>(index);
}

}  // namespace cycleisp_fast
