// CPU concat, slice, matmul and softmax: the small dense ops of the metrics' feature extractors
// (Inception's branch concatenation, its fc layer, the classifiers' softmax).
// A tensor is viewed as [outer, size along dim, inner]; concat and slice copy contiguous runs of
// that view. Tested by tests/test_gradcheck.cpp and tests/test_golden.cpp.
#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "engine/primitives.h"
#include "kernels/cpu/dispatch.h"
#include "kernels/cpu/gemm.h"

namespace xgan {
namespace {

using cpu::ConstMap;
using cpu::parallel_product;
using cpu::RowMat;

void require(bool ok, const char* op, const std::string& what) {
  if (!ok) throw std::runtime_error(std::string(op) + ": " + what);
}

// [outer, along, inner] sizes of `s` around dim `d`.
struct DimView {
  int64_t outer = 1, along = 1, inner = 1;
};
DimView view_at(const Shape& s, int d) {
  DimView v;
  for (int i = 0; i < static_cast<int>(s.size()); ++i) {
    if (i < d) v.outer *= s[static_cast<size_t>(i)];
    if (i > d) v.inner *= s[static_cast<size_t>(i)];
  }
  v.along = s[static_cast<size_t>(d)];
  return v;
}

// Copies are memory-bound: threads only pay off when there are many bytes to move.
constexpr int64_t kParallelCopy = int64_t{1} << 16;

template <class T>
void concat(const std::vector<Tensor>& in, Tensor& out, int dim) {
  const DimView o = view_at(out.shape(), dim);
  T* od = out.data<T>();
  int64_t offset = 0;  // position along dim where the current input starts
  for (const Tensor& t : in) {
    const DimView v = view_at(t.shape(), dim);
    const int64_t run = v.along * v.inner;
    const T* src = t.data<T>();
#pragma omp parallel for schedule(static) if (v.outer * run >= kParallelCopy)
    for (int64_t i = 0; i < v.outer; ++i)
      std::copy_n(src + i * run, run, od + i * o.along * o.inner + offset * o.inner);
    offset += v.along;
  }
}

template <class T>
void slice(const Tensor& x, Tensor& out, int dim, int64_t start) {
  const DimView v = view_at(x.shape(), dim), o = view_at(out.shape(), dim);
  const int64_t run = o.along * o.inner;
  const T* src = x.data<T>();
  T* od = out.data<T>();
#pragma omp parallel for schedule(static) if (o.outer * run >= kParallelCopy)
  for (int64_t i = 0; i < o.outer; ++i)
    std::copy_n(src + i * v.along * v.inner + start * v.inner, run, od + i * run);
}

template <class T>
void matmul(const Tensor& a, const Tensor& b, Tensor& out, bool ta, bool tb) {
  const ConstMap<T> am(a.data<T>(), a.size(0), a.size(1)), bm(b.data<T>(), b.size(0), b.size(1));
  Eigen::Map<RowMat<T>> om(out.data<T>(), out.size(0), out.size(1));
  const int64_t k = ta ? a.size(0) : a.size(1);
  if (k == 0) {  // an empty inner dim: Eigen would leave dst untouched
    om.setZero();
    return;
  }
  if (!ta && !tb) parallel_product(om, am, bm);
  if (!ta && tb) parallel_product(om, am, bm.transpose());
  if (ta && !tb) parallel_product(om, am.transpose(), bm);
  if (ta && tb) parallel_product(om, am.transpose(), bm.transpose());
}

// Numerically stable: exp(x - max) never overflows, and the sum (>= 1, accumulated in double)
// never underflows to 0.
template <class T>
void softmax(const Tensor& x, Tensor& y, int dim) {
  const DimView v = view_at(x.shape(), dim);
  const T* xd = x.data<T>();
  T* yd = y.data<T>();
#pragma omp parallel for collapse(2) schedule(static) if (x.numel() >= kParallelCopy)
  for (int64_t o = 0; o < v.outer; ++o)
    for (int64_t i = 0; i < v.inner; ++i) {
      const T* src = xd + o * v.along * v.inner + i;
      T* dst = yd + o * v.along * v.inner + i;
      T m = src[0];
      for (int64_t j = 1; j < v.along; ++j) m = std::max(m, src[j * v.inner]);
      double total = 0;
      for (int64_t j = 0; j < v.along; ++j) {
        const T e = std::exp(src[j * v.inner] - m);
        dst[j * v.inner] = e;
        total += e;
      }
      const T r = static_cast<T>(1.0 / total);
      for (int64_t j = 0; j < v.along; ++j) dst[j * v.inner] *= r;
    }
}

}  // namespace

void Concat::eval_cpu(const std::vector<Tensor>& in, Tensor& out) {
  require(!in.empty(), "concat", "needs at least one input");
  int64_t along = 0;
  for (const Tensor& t : in) {
    require(t.dim() == out.dim() && dim < t.dim(), "concat",
            "input " + t.str() + " does not fit " + out.str());
    for (int d = 0; d < t.dim(); ++d)
      require(d == dim || t.size(d) == out.size(d), "concat",
              "input " + t.str() + " does not fit " + out.str());
    along += t.size(dim);
  }
  require(along == out.size(dim), "concat", "inputs do not add up to " + out.str());
  cpu::dispatch_float(out.dtype(), "concat", [&](auto t) { concat<decltype(t)>(in, out, dim); });
}

void Slice::eval_cpu(const std::vector<Tensor>& in, Tensor& out) {
  require(in.size() == 1, "slice", "expects one input");
  const Tensor& x = in[0];
  require(dim < x.dim() && out.dim() == x.dim() && start >= 0 && start + length <= x.size(dim) &&
              out.size(dim) == length,
          "slice",
          "range [" + std::to_string(start) + ", " + std::to_string(start + length) + ") of dim " +
              std::to_string(dim) + " does not fit " + x.str() + " -> " + out.str());
  cpu::dispatch_float(out.dtype(), "slice", [&](auto t) { slice<decltype(t)>(x, out, dim, start); });
}

void MatMul::eval_cpu(const std::vector<Tensor>& in, Tensor& out) {
  require(in.size() == 2, "matmul", "expects two inputs");
  const Tensor &a = in[0], &b = in[1];
  require(a.dim() == 2 && b.dim() == 2 && out.dim() == 2, "matmul", "expects 2-D operands");
  const int64_t m = trans_a ? a.size(1) : a.size(0), ka = trans_a ? a.size(0) : a.size(1);
  const int64_t kb = trans_b ? b.size(1) : b.size(0), n = trans_b ? b.size(0) : b.size(1);
  require(ka == kb && out.size(0) == m && out.size(1) == n, "matmul",
          a.str() + (trans_a ? "^T" : "") + " @ " + b.str() + (trans_b ? "^T" : "") + " does not give " +
              out.str());
  cpu::dispatch_float(out.dtype(), "matmul",
                      [&](auto t) { matmul<decltype(t)>(a, b, out, trans_a, trans_b); });
}

void Softmax::eval_cpu(const std::vector<Tensor>& in, Tensor& out) {
  require(in.size() == 1 && dim < in[0].dim(), "softmax",
          "expects one input with dim " + std::to_string(dim));
  if (in[0].numel() == 0) return;
  cpu::dispatch_float(out.dtype(), "softmax", [&](auto t) { softmax<decltype(t)>(in[0], out, dim); });
}

}  // namespace xgan
