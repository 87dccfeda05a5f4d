// CUDA random kernels: the same Philox4x32-10 blocks (kernels/cpu/philox.h, constexpr, so the
// device calls the very same code) and the same mapping to uniforms and Box-Muller normals as
// kernels/cpu/random.cpp (documented in engine/rng.h). One thread per Philox block. Uniforms are
// bit-identical to the CPU's; normals go through the device's double log/cos, which may differ
// from glibc's in the last bit of a double (invisible after rounding to float32 nearly always).
#include <cmath>

#include "engine/backend.h"
#include "kernels/cpu/philox.h"
#include "kernels/cuda/common.cuh"

namespace xgan::cuda {
namespace {

__device__ __forceinline__ uint4 philox_words(uint64_t seed, uint64_t block) {
  const auto w = ::xgan::cpu::philox_block_at(seed, block);
  return make_uint4(w[0], w[1], w[2], w[3]);
}
__device__ __forceinline__ uint32_t word(const uint4& w, int j) {
  return j == 0 ? w.x : j == 1 ? w.y : j == 2 ? w.z : w.w;
}

// low + (high - low) u rounded to T, kept below high (kernels/cpu/random.cpp map_uniform).
template <class T>
__device__ T map_uniform(double u, double low, double high) {
  const T v = static_cast<T>(low + (high - low) * u);
  if (static_cast<double>(v) >= high && low < high) {
    if constexpr (std::is_same_v<T, float>)
      return nextafterf(static_cast<float>(high), -INFINITY);
    else
      return nextafter(high, -INFINITY);
  }
  return v;
}

__global__ void uniform_f32_kernel(float* out, int64_t n, uint64_t seed, uint64_t offset, double low,
                                   double high) {
  XGAN_GRID_STRIDE(b, (n + 3) / 4) {
    const uint4 w = philox_words(seed, offset + static_cast<uint64_t>(b));
    for (int j = 0; j < 4 && b * 4 + j < n; ++j)
      out[b * 4 + j] = map_uniform<float>((word(w, j) >> 8) * 0x1p-24, low, high);
  }
}

__global__ void uniform_f64_kernel(double* out, int64_t n, uint64_t seed, uint64_t offset, double low,
                                   double high) {
  XGAN_GRID_STRIDE(b, (n + 1) / 2) {
    const uint4 w = philox_words(seed, offset + static_cast<uint64_t>(b));
    for (int j = 0; j < 2 && b * 2 + j < n; ++j) {
      const double u =
          (static_cast<double>(word(w, 2 * j) >> 5) * 0x1p26 + static_cast<double>(word(w, 2 * j + 1) >> 6)) *
          0x1p-53;
      out[b * 2 + j] = map_uniform<double>(u, low, high);
    }
  }
}

template <class T>
__global__ void normal_kernel(T* out, int64_t n, uint64_t seed, uint64_t offset, double mean, double stddev) {
  constexpr double kTwoPi = 6.283185307179586476925286766559;
  XGAN_GRID_STRIDE(b, (n + 1) / 2) {
    const uint4 w = philox_words(seed, offset + static_cast<uint64_t>(b));
    for (int j = 0; j < 2 && b * 2 + j < n; ++j) {
      const double u1 = static_cast<double>(static_cast<uint64_t>(word(w, 2 * j)) + 1) * 0x1p-32;
      const double u2 = static_cast<double>(word(w, 2 * j + 1)) * 0x1p-32;
      const double z = sqrt(-2.0 * log(u1)) * cos(kTwoPi * u2);
      out[b * 2 + j] = static_cast<T>(mean + stddev * z);
    }
  }
}

void check_target(const Tensor& t, const char* what) {
  if (!t.defined()) fail(what, "undefined tensor");
  if (!t.device().is_cuda()) fail(what, "cuda kernel given " + t.str());
  if (t.dtype() != DType::f32 && t.dtype() != DType::f64)
    fail(what, "needs a float32 or float64 tensor, got " + t.str());
}

}  // namespace

void random_uniform(Tensor& t, uint64_t seed, uint64_t offset, double low, double high) {
  check_target(t, "random_uniform");
  if (!std::isfinite(low) || !std::isfinite(high) || low > high)
    fail("random_uniform",
         "needs finite low <= high, got [" + std::to_string(low) + ", " + std::to_string(high) + ")");
  const int64_t n = t.numel();
  if (n == 0) return;
  if (t.dtype() == DType::f32)
    uniform_f32_kernel<<<grid_for((n + 3) / 4), kBlock, 0, stream()>>>(t.data<float>(), n, seed, offset, low,
                                                                       high);
  else
    uniform_f64_kernel<<<grid_for((n + 1) / 2), kBlock, 0, stream()>>>(t.data<double>(), n, seed, offset, low,
                                                                       high);
  XGAN_LAUNCH_CHECK();
}

void random_normal(Tensor& t, uint64_t seed, uint64_t offset, double mean, double stddev) {
  check_target(t, "random_normal");
  if (!std::isfinite(mean) || !std::isfinite(stddev) || stddev < 0)
    fail("random_normal", "needs finite mean and stddev >= 0, got mean " + std::to_string(mean) +
                              ", stddev " + std::to_string(stddev));
  const int64_t n = t.numel();
  if (n == 0) return;
  if (t.dtype() == DType::f32)
    normal_kernel<float>
        <<<grid_for((n + 1) / 2), kBlock, 0, stream()>>>(t.data<float>(), n, seed, offset, mean, stddev);
  else
    normal_kernel<double>
        <<<grid_for((n + 1) / 2), kBlock, 0, stream()>>>(t.data<double>(), n, seed, offset, mean, stddev);
  XGAN_LAUNCH_CHECK();
}

}  // namespace xgan::cuda
