// CPU random kernels: uniform and normal draws from Philox4x32-10 with the mapping documented in
// engine/rng.h (element i depends only on seed, offset and i, so any thread split and the CUDA
// twin give the same tensor). Tested by tests/test_rng.cpp.
#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <numbers>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "engine/backend.h"
#include "kernels/cpu/philox.h"

namespace xgan::cpu {
namespace {

// Below this many blocks a thread team costs more than the draws.
constexpr int64_t kParallelBlocks = 2048;

void check_target(const Tensor& t, const char* what) {
  if (!t.defined()) throw std::runtime_error(std::string(what) + ": undefined tensor");
  if (!t.device().is_cpu()) throw std::runtime_error(std::string(what) + ": cpu kernel given " + t.str());
  if (t.dtype() != DType::f32 && t.dtype() != DType::f64)
    throw std::runtime_error(std::string(what) + ": needs a float32 or float64 tensor, got " + t.str());
}

// low + (high - low) * u in double, rounded to T. Rounding can carry a value just under `high` up
// to `high` itself; such values become the largest T below `high`, so the interval stays [low, high).
template <class T>
T map_uniform(double u, double low, double high) {
  const T v = static_cast<T>(low + (high - low) * u);
  if (static_cast<double>(v) >= high && low < high)
    return std::nextafter(static_cast<T>(high), -std::numeric_limits<T>::infinity());
  return v;
}

// Box-Muller on one word pair: u1 in (0, 1] so the log is finite, u2 in [0, 1).
inline double box_muller(uint32_t wa, uint32_t wb) {
  const double u1 = static_cast<double>(static_cast<uint64_t>(wa) + 1) * 0x1p-32;
  const double u2 = static_cast<double>(wb) * 0x1p-32;
  constexpr double kTwoPi = 2.0 * std::numbers::pi;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(kTwoPi * u2);
}

// Runs body(block words, first element, element count) for every block of `n` elements,
// `per_block` elements a block.
template <class Body>
void for_each_block(int64_t n, int per_block, uint64_t seed, uint64_t offset, Body body) {
  const int64_t nblocks = (n + per_block - 1) / per_block;
#pragma omp parallel for schedule(static) if (nblocks >= kParallelBlocks)
  for (int64_t b = 0; b < nblocks; ++b) {
    const auto w = philox_block_at(seed, offset + static_cast<uint64_t>(b));
    const int64_t i0 = b * per_block;
    body(w, i0, static_cast<int>(std::min<int64_t>(per_block, n - i0)));
  }
}

}  // namespace

void random_uniform(Tensor& t, uint64_t seed, uint64_t offset, double low, double high) {
  check_target(t, "random_uniform");
  if (!std::isfinite(low) || !std::isfinite(high) || low > high)
    throw std::runtime_error("random_uniform: needs finite low <= high, got [" + std::to_string(low) + ", " +
                             std::to_string(high) + ")");
  const int64_t n = t.numel();
  if (t.dtype() == DType::f32) {
    float* out = t.data<float>();
    for_each_block(n, 4, seed, offset, [&](const std::array<uint32_t, 4>& w, int64_t i0, int m) {
      for (int j = 0; j < m; ++j) out[i0 + j] = map_uniform<float>((w[j] >> 8) * 0x1p-24, low, high);
    });
  } else {
    double* out = t.data<double>();
    for_each_block(n, 2, seed, offset, [&](const std::array<uint32_t, 4>& w, int64_t i0, int m) {
      for (int j = 0; j < m; ++j) {
        const double u =
            (static_cast<double>(w[2 * j] >> 5) * 0x1p26 + static_cast<double>(w[2 * j + 1] >> 6)) * 0x1p-53;
        out[i0 + j] = map_uniform<double>(u, low, high);
      }
    });
  }
}

void random_normal(Tensor& t, uint64_t seed, uint64_t offset, double mean, double stddev) {
  check_target(t, "random_normal");
  if (!std::isfinite(mean) || !std::isfinite(stddev) || stddev < 0)
    throw std::runtime_error("random_normal: needs finite mean and stddev >= 0, got mean " +
                             std::to_string(mean) + ", stddev " + std::to_string(stddev));
  const int64_t n = t.numel();
  // mean + stddev * z is formed in double and rounded once to the tensor's dtype.
  auto draw = [&](auto* out) {
    for_each_block(n, 2, seed, offset, [&](const std::array<uint32_t, 4>& w, int64_t i0, int m) {
      using T = std::remove_reference_t<decltype(*out)>;
      for (int j = 0; j < m; ++j)
        out[i0 + j] = static_cast<T>(mean + stddev * box_muller(w[2 * j], w[2 * j + 1]));
    });
  };
  if (t.dtype() == DType::f32)
    draw(t.data<float>());
  else
    draw(t.data<double>());
}

}  // namespace xgan::cpu
