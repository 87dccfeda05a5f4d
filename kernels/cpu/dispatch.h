// Small helpers shared by the CPU kernels: dtype dispatch and broadcast index arithmetic.
#pragma once
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace xgan::cpu {

// Calls f(T{}) with T = float or double according to dt.
template <class F>
void dispatch_float(DType dt, const char* op, F&& f) {
  switch (dt) {
    case DType::f32:
      f(float{});
      return;
    case DType::f64:
      f(double{});
      return;
    default:
      throw std::runtime_error(std::string(op) + ": unsupported dtype " + dtype_name(dt));
  }
}

// Strides of `in` (row-major) aligned to `out`'s dims, 0 where `in` is broadcast.
inline std::vector<int64_t> broadcast_strides(const Shape& in, const Shape& out) {
  std::vector<int64_t> st(out.size(), 0);
  int64_t s = 1;
  for (size_t k = 0; k < in.size(); ++k) {
    size_t i = in.size() - 1 - k, o = out.size() - 1 - k;
    st[o] = in[i] == 1 ? 0 : s;
    s *= in[i];
  }
  return st;
}

// Sum of p[0..n) in double with eight interleaved accumulators, added up in a fixed order at the
// end: independent additions the compiler can vectorise (one running sum is a chain of dependent
// adds, four cycles each), and the same result for the same data on every run and thread count.
template <class T>
double sum_lanes(const T* p, int64_t n) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += static_cast<double>(p[i + k]);
  for (; i < n; ++i) acc[0] += static_cast<double>(p[i]);
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// Sum of (p[i] - c)^2 the same way (batch norm's variance around a known mean).
template <class T>
double sum_sq_dev_lanes(const T* p, int64_t n, double c) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) {
      const double d = static_cast<double>(p[i + k]) - c;
      acc[k] += d * d;
    }
  for (; i < n; ++i) {
    const double d = static_cast<double>(p[i]) - c;
    acc[0] += d * d;
  }
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

}  // namespace xgan::cpu
