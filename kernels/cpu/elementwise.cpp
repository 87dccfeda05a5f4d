// CPU forwards of the elementwise, shape and reduction ops, plus fill/cast/add_inplace.
// Binary ops have a fast path for equal shapes; anything else (scalars, per-channel operands)
// runs as rows of a merged broadcast (plan_rows). Loops are OpenMP-parallel above a size where threads pay
// off.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "engine/backend.h"
#include "engine/primitives.h"
#include "kernels/cpu/dispatch.h"

namespace xgan {
namespace {

constexpr int64_t kParallelMin = 1 << 14;  // below this, thread start-up costs more than the loop

// The broadcast of inputs to the output's shape, written as rows: adjacent dims are merged while
// every input is either contiguous across both or constant across both, so what is left is
// [outer..., inner] where each input's stride along `inner` is 1 or 0. The kernels then run tight
// (vectorisable) loops along rows and do the index arithmetic once per row, not per element:
// batch norm's per-channel [1, C, 1, 1] operands become rows of H*W with a constant.
struct RowPlan {
  std::vector<int64_t> outer;                 // sizes of the outer dims (may be empty)
  std::vector<std::vector<int64_t>> strides;  // per input: strides of the outer dims
  int64_t inner = 1;
  std::vector<int64_t> inner_stride;  // per input: 1 or 0
};

RowPlan plan_rows(const std::vector<Shape>& in, const Shape& out) {
  const size_t k = in.size();
  std::vector<std::vector<int64_t>> st(k);
  for (size_t i = 0; i < k; ++i) st[i] = cpu::broadcast_strides(in[i], out);
  // Dims from the innermost outwards, size-1 dims dropped (they index nothing).
  std::vector<int64_t> sz;
  std::vector<std::vector<int64_t>> ds(k);
  for (size_t d = out.size(); d-- > 0;) {
    if (out[d] == 1) continue;
    const bool mergeable = !sz.empty() && [&] {
      for (size_t i = 0; i < k; ++i)
        if (st[i][d] != ds[i].back() * sz.back()) return false;
      return true;
    }();
    if (mergeable) {
      sz.back() *= out[d];
    } else {
      sz.push_back(out[d]);
      for (size_t i = 0; i < k; ++i) ds[i].push_back(st[i][d]);
    }
  }
  RowPlan p;
  p.strides.resize(k);
  p.inner_stride.assign(k, 0);
  if (sz.empty()) return p;  // a single element
  p.inner = sz.front();
  for (size_t i = 0; i < k; ++i) p.inner_stride[i] = ds[i].front();
  for (size_t d = sz.size(); d-- > 1;) {  // outermost first
    p.outer.push_back(sz[d]);
    for (size_t i = 0; i < k; ++i) p.strides[i].push_back(ds[i][d]);
  }
  return p;
}

// Runs row(r, j0, len, offsets) over output elements [0, n) split evenly across the threads;
// a thread's range may start and end inside a row.
template <class RowFn>
void for_each_row_range(const RowPlan& p, int64_t n, RowFn row) {
  const size_t k = p.strides.size();
#pragma omp parallel if (n > kParallelMin)
  {
    int64_t threads = 1, t = 0;
#ifdef _OPENMP
    threads = omp_get_num_threads();
    t = omp_get_thread_num();
#endif
    int64_t lo = n * t / threads;
    const int64_t hi = n * (t + 1) / threads;
    std::vector<int64_t> off(k);
    while (lo < hi) {
      const int64_t r = lo / p.inner, j = lo % p.inner, len = std::min(p.inner - j, hi - lo);
      for (size_t i = 0; i < k; ++i) off[i] = 0;
      int64_t rest = r;
      for (size_t d = p.outer.size(); d-- > 0;) {
        const int64_t q = rest % p.outer[d];
        rest /= p.outer[d];
        for (size_t i = 0; i < k; ++i) off[i] += q * p.strides[i][d];
      }
      row(lo, j, len, off);
      lo += len;
    }
  }
}

template <class T, class F>
void binary_kernel(const Tensor& a, const Tensor& b, Tensor& out, F f) {
  const T* pa = a.data<T>();
  const T* pb = b.data<T>();
  T* po = out.data<T>();
  const int64_t n = out.numel();
  if (a.shape() == out.shape() && b.shape() == out.shape()) {
    // firstprivate: each thread's own copy of f, so a captured float (a slope) cannot be aliased
    // by the float stores and stays in a register; the loop then vectorises.
#pragma omp parallel for firstprivate(f) if (n > kParallelMin)
    for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i], pb[i]);
    return;
  }
  const RowPlan p = plan_rows({a.shape(), b.shape()}, out.shape());
  const int64_t ia = p.inner_stride[0], ib = p.inner_stride[1];
  for_each_row_range(p, n, [&](int64_t o, int64_t j, int64_t len, const std::vector<int64_t>& off) {
    const F f_row = f;  // a local copy: its captures stay in registers (see the firstprivate above)
    const T* ra = pa + off[0] + j * ia;
    const T* rb = pb + off[1] + j * ib;
    T* ro = po + o;
    if (ia && ib) {
      for (int64_t x = 0; x < len; ++x) ro[x] = f_row(ra[x], rb[x]);
    } else if (ia) {
      const T vb = rb[0];
      for (int64_t x = 0; x < len; ++x) ro[x] = f_row(ra[x], vb);
    } else if (ib) {
      const T va = ra[0];
      for (int64_t x = 0; x < len; ++x) ro[x] = f_row(va, rb[x]);
    } else {
      std::fill_n(ro, len, f_row(ra[0], rb[0]));
    }
  });
}

template <class T, class F>
void unary_kernel(const Tensor& x, Tensor& out, F f) {
  const T* px = x.data<T>();
  T* po = out.data<T>();
  const int64_t n = out.numel();
#pragma omp parallel for firstprivate(f) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) po[i] = f(px[i]);
}

}  // namespace

#define XGAN_BINARY_CPU(Class, expr)                                      \
  void Class::eval_cpu(const std::vector<Tensor>& in, Tensor& out) {      \
    cpu::dispatch_float(out.dtype(), name(), [&](auto t) {                \
      using T = decltype(t);                                              \
      binary_kernel<T>(in[0], in[1], out, [](T a, T b) { return expr; }); \
    });                                                                   \
  }
XGAN_BINARY_CPU(Add, a + b)
XGAN_BINARY_CPU(Sub, a - b)
XGAN_BINARY_CPU(Mul, a* b)
XGAN_BINARY_CPU(Div, a / b)
XGAN_BINARY_CPU(Equal, a == b ? T(1) : T(0))
#undef XGAN_BINARY_CPU

#define XGAN_UNARY_CPU(Class, expr)                                  \
  void Class::eval_cpu(const std::vector<Tensor>& in, Tensor& out) { \
    cpu::dispatch_float(out.dtype(), name(), [&](auto t) {           \
      using T = decltype(t);                                         \
      unary_kernel<T>(in[0], out, [](T x) -> T { return expr; });    \
    });                                                              \
  }
XGAN_UNARY_CPU(Neg, -x)
XGAN_UNARY_CPU(Exp, std::exp(x))
XGAN_UNARY_CPU(Log, std::log(x))
XGAN_UNARY_CPU(Sqrt, std::sqrt(x))
XGAN_UNARY_CPU(Abs, std::abs(x))
XGAN_UNARY_CPU(Sign, T((x > 0) - (x < 0)))
XGAN_UNARY_CPU(Tanh, std::tanh(x))
// Split at 0 so exp never overflows: for x < 0, e^x / (1 + e^x).
XGAN_UNARY_CPU(Sigmoid, x >= 0 ? T(1) / (T(1) + std::exp(-x)) : std::exp(x) / (T(1) + std::exp(x)))
#undef XGAN_UNARY_CPU

// The ops with an attribute: read it once into a T, captured by value.
void Pow::eval_cpu(const std::vector<Tensor>& in, Tensor& out) {
  cpu::dispatch_float(out.dtype(), name(), [&](auto t) {
    using T = decltype(t);
    const T p = static_cast<T>(exponent);
    unary_kernel<T>(in[0], out, [p](T x) { return std::pow(x, p); });
  });
}

void LeakyRelu::eval_cpu(const std::vector<Tensor>& in, Tensor& out) {
  cpu::dispatch_float(out.dtype(), name(), [&](auto t) {
    using T = decltype(t);
    const T s = static_cast<T>(slope);
    unary_kernel<T>(in[0], out, [s](T x) { return x > 0 ? x : x * s; });
  });
}

void LeakyReluGrad::eval_cpu(const std::vector<Tensor>& in, Tensor& out) {
  cpu::dispatch_float(out.dtype(), name(), [&](auto t) {
    using T = decltype(t);
    const T s = static_cast<T>(slope);
    binary_kernel<T>(in[0], in[1], out, [s](T x, T g) { return x > 0 ? g : g * s; });
  });
}

void BroadcastTo::eval_cpu(const std::vector<Tensor>& in, Tensor& out) {
  cpu::dispatch_float(out.dtype(), name(), [&](auto t) {
    using T = decltype(t);
    const T* px = in[0].data<T>();
    T* po = out.data<T>();
    const RowPlan p = plan_rows({in[0].shape()}, out.shape());
    const int64_t ix = p.inner_stride[0];
    for_each_row_range(p, out.numel(),
                       [&](int64_t o, int64_t j, int64_t len, const std::vector<int64_t>& off) {
                         const T* rx = px + off[0] + j * ix;
                         if (ix) {
                           std::copy_n(rx, len, po + o);
                         } else {
                           std::fill_n(po + o, len, rx[0]);
                         }
                       });
  });
}

namespace {
// Reduction over `dims` of x into out (numel = product of kept dims). The reduced positions of an
// output element are visited as contiguous runs (the trailing reduced dims, H*W for batch norm's
// per-channel sums) through a table of run starts; run(acc, p, len) folds one run in. Sums
// accumulate in double. Every order of additions is fixed by the shape alone (a full reduction is
// cut into fixed-size pieces added up in order), so results never depend on the thread count.
template <class T, class Acc, class Init, class Run>
void reduce_kernel(const Tensor& x, const std::vector<int>& dims, Tensor& out, Init init, Run run) {
  const Shape& s = x.shape();
  const int nd = static_cast<int>(s.size());
  std::vector<int64_t> stride(static_cast<size_t>(nd), 1);
  for (int d = nd - 2; d >= 0; --d) stride[d] = stride[d + 1] * s[d + 1];
  std::vector<bool> red(static_cast<size_t>(nd), false);
  for (int d : dims) red[static_cast<size_t>(d)] = true;
  // The trailing reduced dims form contiguous runs of `len` elements.
  int tail = nd;
  int64_t len = 1;
  while (tail > 0 && red[static_cast<size_t>(tail - 1)]) len *= s[--tail];
  // Offsets of the run starts relative to an output element's base, and of the output elements.
  std::vector<int64_t> roff{0};
  std::vector<int64_t> koff{0};
  for (int d = 0; d < tail; ++d) {
    auto& v = red[d] ? roff : koff;
    std::vector<int64_t> next;
    next.reserve(v.size() * static_cast<size_t>(s[d]));
    for (int64_t base : v)
      for (int64_t i = 0; i < s[d]; ++i) next.push_back(base + i * stride[d]);
    v.swap(next);
  }
  const T* px = x.data<T>();
  T* po = out.data<T>();
  const int64_t nout = static_cast<int64_t>(koff.size()), nruns = static_cast<int64_t>(roff.size());
  if (nout == 1) {
    // Pieces: each run, cut into chunks of kPiece elements; partial results kept in order.
    constexpr int64_t kPiece = 1 << 14;
    const int64_t per_run = std::max<int64_t>(1, (len + kPiece - 1) / kPiece);
    std::vector<Acc> part(static_cast<size_t>(nruns * per_run));
#pragma omp parallel for schedule(static) if (nruns * len > kParallelMin)
    for (int64_t q = 0; q < nruns * per_run; ++q) {
      const int64_t r = q / per_run, lo = (q % per_run) * kPiece;
      part[static_cast<size_t>(q)] = run(init(), px + roff[r] + lo, std::min(kPiece, len - lo));
    }
    Acc acc = init();
    for (const Acc& v : part) acc = run(acc, &v, 1);
    po[0] = static_cast<T>(acc);
    return;
  }
#pragma omp parallel for if (nout * nruns * len > kParallelMin)
  for (int64_t o = 0; o < nout; ++o) {
    Acc acc = init();
    const T* base = px + koff[o];
    for (int64_t r = 0; r < nruns; ++r) acc = run(acc, base + roff[r], len);
    po[o] = static_cast<T>(acc);
  }
}
}  // namespace

void Sum::eval_cpu(const std::vector<Tensor>& in, Tensor& out) {
  cpu::dispatch_float(out.dtype(), name(), [&](auto t) {
    using T = decltype(t);
    reduce_kernel<T, double>(
        in[0], dims, out, [] { return 0.0; },
        [](double a, const auto* p, int64_t n) { return a + cpu::sum_lanes(p, n); });
  });
}

void Max::eval_cpu(const std::vector<Tensor>& in, Tensor& out) {
  cpu::dispatch_float(out.dtype(), name(), [&](auto t) {
    using T = decltype(t);
    // NaN propagates, as in torch.amax.
    reduce_kernel<T, T>(
        in[0], dims, out, [] { return -std::numeric_limits<T>::infinity(); },
        [](T a, const T* p, int64_t n) {
          for (int64_t i = 0; i < n; ++i) a = (p[i] > a || std::isnan(p[i])) && !std::isnan(a) ? p[i] : a;
          return a;
        });
  });
}

namespace cpu {

void fill(Tensor& t, double value) {
  const int64_t n = t.numel();
  switch (t.dtype()) {
    case DType::f32:
      std::fill_n(t.data<float>(), n, static_cast<float>(value));
      break;
    case DType::f64:
      std::fill_n(t.data<double>(), n, value);
      break;
    case DType::i64:
      std::fill_n(t.data<int64_t>(), n, static_cast<int64_t>(value));
      break;
  }
  t.bump_version();
}

namespace {
template <class S, class D>
void cast_loop(const S* s, D* d, int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] = static_cast<D>(s[i]);
}
template <class S>
void cast_from(const S* s, Tensor& dst, int64_t n) {
  switch (dst.dtype()) {
    case DType::f32:
      cast_loop(s, dst.data<float>(), n);
      break;
    case DType::f64:
      cast_loop(s, dst.data<double>(), n);
      break;
    case DType::i64:
      cast_loop(s, dst.data<int64_t>(), n);
      break;
  }
}
}  // namespace

void cast(const Tensor& src, Tensor& dst) {
  if (src.numel() != dst.numel()) throw std::runtime_error("cast: " + src.str() + " to " + dst.str());
  const int64_t n = src.numel();
  switch (src.dtype()) {
    case DType::f32:
      cast_from(src.data<float>(), dst, n);
      break;
    case DType::f64:
      cast_from(src.data<double>(), dst, n);
      break;
    case DType::i64:
      cast_from(src.data<int64_t>(), dst, n);
      break;
  }
  dst.bump_version();
}

void add_inplace(Tensor& dst, const Tensor& src) {
  dispatch_float(dst.dtype(), "add_inplace", [&](auto t) {
    using T = decltype(t);
    T* d = dst.data<T>();
    const T* s = src.data<T>();
    const int64_t n = dst.numel();
#pragma omp parallel for if (n > kParallelMin)
    for (int64_t i = 0; i < n; ++i) d[i] += s[i];
  });
}

}  // namespace cpu
}  // namespace xgan
