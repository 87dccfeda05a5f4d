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

// Offset into a broadcast input for output linear index `idx`.
inline int64_t broadcast_offset(int64_t idx, const Shape& out, const std::vector<int64_t>& st) {
  int64_t off = 0;
  for (size_t k = out.size(); k-- > 0;) {
    int64_t d = out[k];
    off += (idx % d) * st[k];
    idx /= d;
  }
  return off;
}

}  // namespace xgan::cpu
