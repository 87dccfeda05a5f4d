// CUDA forwards of the elementwise ops (binary with NumPy broadcasting, unary, leaky ReLU's
// backward mask) and broadcast_to, plus the fill/cast/add_inplace backend kernels. One thread per
// output element (grid-stride); the arithmetic is written as in kernels/cpu/elementwise.cpp and
// built without FMA contraction (CMakeLists.txt), so results round as the CPU's do except where
// the math library differs (exp, log, tanh, pow: within an ulp or two).
#include <type_traits>

#include "engine/backend.h"
#include "engine/primitives.h"
#include "kernels/cuda/common.cuh"

namespace xgan {
namespace {
using namespace cuda;

enum class Bin { add, sub, mul, div, equal, leaky_grad };

template <Bin K, class T>
__device__ __forceinline__ T binary_value(T a, T b, T slope) {
  if constexpr (K == Bin::add) return a + b;
  if constexpr (K == Bin::sub) return a - b;
  if constexpr (K == Bin::mul) return a * b;
  if constexpr (K == Bin::div) return a / b;
  if constexpr (K == Bin::equal) return a == b ? T(1) : T(0);
  if constexpr (K == Bin::leaky_grad) return a > T(0) ? b : b * slope;  // a = x, b = g
}

// mode 0: equal shapes; 1: b is a scalar; 2: a is a scalar; 3: general broadcast.
template <Bin K, class T>
__global__ void binary_kernel(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ o, int64_t n,
                              int mode, BroadcastIndex bi, T slope) {
  XGAN_GRID_STRIDE(i, n) {
    int64_t ia = i, ib = i;
    if (mode == 1) {
      ib = 0;
    } else if (mode == 2) {
      ia = 0;
    } else if (mode == 3) {
      ia = bi.offset(0, i);
      ib = bi.offset(1, i);
    }
    o[i] = binary_value<K, T>(a[ia], b[ib], slope);
  }
}

template <Bin K>
void run_binary(const char* op, const std::vector<Tensor>& in, Tensor& out, double slope = 0.0) {
  if (in.size() != 2) fail(op, "expects two inputs");
  const Tensor &a = in[0], &b = in[1];
  require_cuda(op, {&a, &b, &out});
  const int64_t n = out.numel();
  if (n == 0) return;
  int mode = 3;
  if (a.shape() == out.shape() && b.shape() == out.shape())
    mode = 0;
  else if (b.numel() == 1 && a.shape() == out.shape())
    mode = 1;
  else if (a.numel() == 1 && b.shape() == out.shape())
    mode = 2;
  const BroadcastIndex bi =
      mode == 3 ? broadcast_index(op, out.shape(), a.shape(), b.shape()) : BroadcastIndex{};
  dispatch_float(out.dtype(), op, [&](auto t) {
    using T = decltype(t);
    binary_kernel<K, T><<<grid_for(n), kBlock, 0, stream()>>>(a.data<T>(), b.data<T>(), out.data<T>(), n,
                                                              mode, bi, static_cast<T>(slope));
  });
  XGAN_LAUNCH_CHECK();
}

enum class Un { neg, exp, log, sqrt, pow, abs, sign, leaky, tanh, sigmoid };

template <Un K, class T>
__device__ __forceinline__ T unary_value(T x, T p) {
  if constexpr (K == Un::neg) return -x;
  if constexpr (K == Un::exp) return dexp(x);
  if constexpr (K == Un::log) return dlog(x);
  if constexpr (K == Un::sqrt) return dsqrt(x);
  if constexpr (K == Un::pow) return dpow(x, p);
  if constexpr (K == Un::abs) return dabs(x);
  if constexpr (K == Un::sign) return T((x > T(0)) - (x < T(0)));
  if constexpr (K == Un::leaky) return x > T(0) ? x : x * p;
  if constexpr (K == Un::tanh) return dtanh(x);
  // Split at 0 so exp never overflows, as the CPU kernel does.
  if constexpr (K == Un::sigmoid) return x >= T(0) ? T(1) / (T(1) + dexp(-x)) : dexp(x) / (T(1) + dexp(x));
}

template <Un K, class T>
__global__ void unary_kernel(const T* __restrict__ x, T* __restrict__ o, int64_t n, T p) {
  XGAN_GRID_STRIDE(i, n) { o[i] = unary_value<K, T>(x[i], p); }
}

template <Un K>
void run_unary(const char* op, const std::vector<Tensor>& in, Tensor& out, double p = 0.0) {
  if (in.size() != 1 || in[0].numel() != out.numel()) fail(op, "expects one input shaped like the output");
  require_cuda(op, {&in[0], &out});
  const int64_t n = out.numel();
  if (n == 0) return;
  dispatch_float(out.dtype(), op, [&](auto t) {
    using T = decltype(t);
    unary_kernel<K, T>
        <<<grid_for(n), kBlock, 0, stream()>>>(in[0].data<T>(), out.data<T>(), n, static_cast<T>(p));
  });
  XGAN_LAUNCH_CHECK();
}

template <class T>
__global__ void broadcast_kernel(const T* __restrict__ x, T* __restrict__ o, int64_t n, BroadcastIndex bi) {
  XGAN_GRID_STRIDE(i, n) { o[i] = x[bi.offset(0, i)]; }
}

template <class T>
__global__ void fill_kernel(T* p, int64_t n, T v) {
  XGAN_GRID_STRIDE(i, n) { p[i] = v; }
}

template <class S, class D>
__global__ void cast_kernel(const S* __restrict__ s, D* __restrict__ d, int64_t n) {
  XGAN_GRID_STRIDE(i, n) { d[i] = static_cast<D>(s[i]); }
}

template <class T>
__global__ void add_inplace_kernel(T* __restrict__ d, const T* __restrict__ s, int64_t n) {
  XGAN_GRID_STRIDE(i, n) { d[i] += s[i]; }
}

template <class S>
void cast_from(const S* s, Tensor& dst, int64_t n) {
  switch (dst.dtype()) {
    case DType::f32:
      cast_kernel<<<grid_for(n), kBlock, 0, stream()>>>(s, dst.data<float>(), n);
      break;
    case DType::f64:
      cast_kernel<<<grid_for(n), kBlock, 0, stream()>>>(s, dst.data<double>(), n);
      break;
    case DType::i64:
      cast_kernel<<<grid_for(n), kBlock, 0, stream()>>>(s, dst.data<int64_t>(), n);
      break;
  }
  XGAN_LAUNCH_CHECK();
}

}  // namespace

void Add::eval_cuda(const std::vector<Tensor>& in, Tensor& out) { run_binary<Bin::add>("add", in, out); }
void Sub::eval_cuda(const std::vector<Tensor>& in, Tensor& out) { run_binary<Bin::sub>("sub", in, out); }
void Mul::eval_cuda(const std::vector<Tensor>& in, Tensor& out) { run_binary<Bin::mul>("mul", in, out); }
void Div::eval_cuda(const std::vector<Tensor>& in, Tensor& out) { run_binary<Bin::div>("div", in, out); }
void Equal::eval_cuda(const std::vector<Tensor>& in, Tensor& out) {
  run_binary<Bin::equal>("equal", in, out);
}
void LeakyReluGrad::eval_cuda(const std::vector<Tensor>& in, Tensor& out) {
  if (in.size() == 2 && in[0].shape() != in[1].shape())
    fail("leaky_relu_grad", "x " + in[0].str() + " and g " + in[1].str() + " differ in shape");
  run_binary<Bin::leaky_grad>("leaky_relu_grad", in, out, slope);
}

void Neg::eval_cuda(const std::vector<Tensor>& in, Tensor& out) { run_unary<Un::neg>("neg", in, out); }
void Exp::eval_cuda(const std::vector<Tensor>& in, Tensor& out) { run_unary<Un::exp>("exp", in, out); }
void Log::eval_cuda(const std::vector<Tensor>& in, Tensor& out) { run_unary<Un::log>("log", in, out); }
void Sqrt::eval_cuda(const std::vector<Tensor>& in, Tensor& out) { run_unary<Un::sqrt>("sqrt", in, out); }
void Pow::eval_cuda(const std::vector<Tensor>& in, Tensor& out) {
  run_unary<Un::pow>("pow", in, out, exponent);
}
void Abs::eval_cuda(const std::vector<Tensor>& in, Tensor& out) { run_unary<Un::abs>("abs", in, out); }
void Sign::eval_cuda(const std::vector<Tensor>& in, Tensor& out) { run_unary<Un::sign>("sign", in, out); }
void LeakyRelu::eval_cuda(const std::vector<Tensor>& in, Tensor& out) {
  run_unary<Un::leaky>("leaky_relu", in, out, slope);
}
void Tanh::eval_cuda(const std::vector<Tensor>& in, Tensor& out) { run_unary<Un::tanh>("tanh", in, out); }
void Sigmoid::eval_cuda(const std::vector<Tensor>& in, Tensor& out) {
  run_unary<Un::sigmoid>("sigmoid", in, out);
}

void BroadcastTo::eval_cuda(const std::vector<Tensor>& in, Tensor& out) {
  const char* op = "broadcast_to";
  if (in.size() != 1) fail(op, "expects one input");
  require_cuda(op, {&in[0], &out});
  const int64_t n = out.numel();
  if (n == 0) return;
  const BroadcastIndex bi = broadcast_index(op, out.shape(), in[0].shape(), in[0].shape());
  dispatch_float(out.dtype(), op, [&](auto t) {
    using T = decltype(t);
    broadcast_kernel<T><<<grid_for(n), kBlock, 0, stream()>>>(in[0].data<T>(), out.data<T>(), n, bi);
  });
  XGAN_LAUNCH_CHECK();
}

namespace cuda {

void fill(Tensor& t, double value) {
  require_cuda("fill", {&t});
  const int64_t n = t.numel();
  if (n > 0) {
    switch (t.dtype()) {
      case DType::f32:
        fill_kernel<<<grid_for(n), kBlock, 0, stream()>>>(t.data<float>(), n, static_cast<float>(value));
        break;
      case DType::f64:
        fill_kernel<<<grid_for(n), kBlock, 0, stream()>>>(t.data<double>(), n, value);
        break;
      case DType::i64:
        fill_kernel<<<grid_for(n), kBlock, 0, stream()>>>(t.data<int64_t>(), n, static_cast<int64_t>(value));
        break;
    }
    XGAN_LAUNCH_CHECK();
  }
  t.bump_version();
}

void cast(const Tensor& src, Tensor& dst) {
  require_cuda("cast", {&src, &dst});
  if (src.numel() != dst.numel()) fail("cast", src.str() + " to " + dst.str() + ": element counts differ");
  const int64_t n = src.numel();
  if (n > 0) {
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
  }
  dst.bump_version();
}

void add_inplace(Tensor& dst, const Tensor& src) {
  require_cuda("add_inplace", {&dst, &src});
  if (dst.numel() != src.numel() || dst.dtype() != src.dtype())
    fail("add_inplace", src.str() + " into " + dst.str());
  const int64_t n = dst.numel();
  if (n == 0) return;
  dispatch_float(dst.dtype(), "add_inplace", [&](auto t) {
    using T = decltype(t);
    add_inplace_kernel<T><<<grid_for(n), kBlock, 0, stream()>>>(dst.data<T>(), src.data<T>(), n);
  });
  XGAN_LAUNCH_CHECK();
}

}  // namespace cuda
}  // namespace xgan
