// CUDA bilinear resize (align_corners=False, as torch's interpolate) and its adjoint. The taps are
// computed per element exactly as kernels/cpu/resize.cpp builds its tables, in the element type.
// The adjoint gathers instead of scattering: each input pixel visits the outputs that can read
// it, in the CPU's (oh, ow, tap) order, so the sums are deterministic (no atomics) and round in
// the same order as the CPU's scatter.
#include <cmath>

#include "engine/primitives.h"
#include "kernels/cuda/common.cuh"

namespace xgan {
namespace {
using namespace cuda;

template <class T>
struct Tap {
  int64_t i0, i1;
  T w0, w1;
};

template <class T>
__device__ Tap<T> tap(int64_t d, int64_t in, int64_t out) {
  if (in == out) return {d, d, T(1), T(0)};  // PyTorch's shortcut: the identity
  const T scale = static_cast<T>(in) / static_cast<T>(out);
  T src = scale * (static_cast<T>(d) + T(0.5)) - T(0.5);
  src = src < T(0) ? T(0) : src;
  Tap<T> t;
  t.i0 = min(static_cast<int64_t>(dfloor(src)), in - 1);
  t.i1 = min(t.i0 + 1, in - 1);
  T w1 = src - static_cast<T>(t.i0);
  w1 = w1 < T(0) ? T(0) : (w1 > T(1) ? T(1) : w1);
  t.w1 = w1;
  t.w0 = T(1) - w1;
  return t;
}

struct Planes {
  int64_t count, in_h, in_w, out_h, out_w;
};

template <class T>
__global__ void resize_kernel(const T* __restrict__ x, T* __restrict__ y, Planes p) {
  XGAN_GRID_STRIDE(idx, p.count * p.out_h * p.out_w) {
    const int64_t ow = idx % p.out_w, oh = idx / p.out_w % p.out_h, plane = idx / (p.out_w * p.out_h);
    const Tap<T> h = tap<T>(oh, p.in_h, p.out_h), w = tap<T>(ow, p.in_w, p.out_w);
    const T* r0 = x + (plane * p.in_h + h.i0) * p.in_w;
    const T* r1 = x + (plane * p.in_h + h.i1) * p.in_w;
    y[idx] = h.w0 * (w.w0 * r0[w.i0] + w.w1 * r0[w.i1]) + h.w1 * (w.w0 * r1[w.i0] + w.w1 * r1[w.i1]);
  }
}

// Outputs along one axis whose taps can touch input i: src = s (d + 1/2) - 1/2 in [i - 1, i + 1),
// widened by one on each side against rounding; the last input also takes every clamped output.
__device__ void candidates(int64_t i, int64_t in, int64_t out, int64_t& lo, int64_t& hi) {
  if (in == out) {
    lo = hi = i;
    return;
  }
  const double s = static_cast<double>(in) / static_cast<double>(out);
  lo = static_cast<int64_t>(floor((i - 0.5) / s - 0.5)) - 1;
  hi = static_cast<int64_t>(ceil((i + 1.5) / s - 0.5)) + 1;
  if (i == in - 1) hi = out - 1;
  lo = max(lo, int64_t{0});
  hi = min(hi, out - 1);
}

template <class T>
__global__ void resize_adjoint_kernel(const T* __restrict__ g, T* __restrict__ dx, Planes p) {
  XGAN_GRID_STRIDE(idx, p.count * p.in_h * p.in_w) {
    const int64_t iw = idx % p.in_w, ih = idx / p.in_w % p.in_h, plane = idx / (p.in_w * p.in_h);
    int64_t h_lo, h_hi, w_lo, w_hi;
    candidates(ih, p.in_h, p.out_h, h_lo, h_hi);
    candidates(iw, p.in_w, p.out_w, w_lo, w_hi);
    const T* src = g + plane * p.out_h * p.out_w;
    T acc = 0;
    for (int64_t oh = h_lo; oh <= h_hi; ++oh) {
      const Tap<T> h = tap<T>(oh, p.in_h, p.out_h);
      if (h.i0 != ih && h.i1 != ih) continue;
      for (int64_t ow = w_lo; ow <= w_hi; ++ow) {
        const Tap<T> w = tap<T>(ow, p.in_w, p.out_w);
        if (w.i0 != iw && w.i1 != iw) continue;
        const T v = src[oh * p.out_w + ow];
        // The CPU adds (w0,w0), (w0,w1), (w1,w0), (w1,w1) in this order.
        if (h.i0 == ih && w.i0 == iw) acc += h.w0 * w.w0 * v;
        if (h.i0 == ih && w.i1 == iw) acc += h.w0 * w.w1 * v;
        if (h.i1 == ih && w.i0 == iw) acc += h.w1 * w.w0 * v;
        if (h.i1 == ih && w.i1 == iw) acc += h.w1 * w.w1 * v;
      }
    }
    dx[idx] = acc;
  }
}

Planes planes_of(const Tensor& small, const Tensor& large, const char* op) {
  if (small.dim() != 4 || large.dim() != 4 || small.size(0) != large.size(0) ||
      small.size(1) != large.size(1))
    fail(op, "expects [N, C, H, W] tensors with equal N, C, got " + small.str() + " and " + large.str());
  if ((small.size(2) <= 0 && large.size(2) > 0) || (small.size(3) <= 0 && large.size(3) > 0))
    fail(op, "cannot resize an empty axis");
  return {small.size(0) * small.size(1), small.size(2), small.size(3), large.size(2), large.size(3)};
}

}  // namespace

void ResizeBilinear::eval_cuda(const std::vector<Tensor>& in, Tensor& out) {
  const char* op = "resize_bilinear";
  if (in.size() != 1) fail(op, "expects one input");
  require_cuda(op, {&in[0], &out});
  const Planes p = planes_of(in[0], out, op);
  const int64_t n = out.numel();
  if (n == 0) return;
  dispatch_float(out.dtype(), op, [&](auto t) {
    using T = decltype(t);
    resize_kernel<T><<<grid_for(n), kBlock, 0, stream()>>>(in[0].data<T>(), out.data<T>(), p);
  });
  XGAN_LAUNCH_CHECK();
}

void ResizeBilinearGrad::eval_cuda(const std::vector<Tensor>& in, Tensor& out) {
  const char* op = "resize_bilinear_grad";
  if (in.size() != 1) fail(op, "expects one input");
  require_cuda(op, {&in[0], &out});
  const Planes p = planes_of(out, in[0], op);
  const int64_t n = out.numel();
  if (n == 0) return;
  dispatch_float(out.dtype(), op, [&](auto t) {
    using T = decltype(t);
    resize_adjoint_kernel<T><<<grid_for(n), kBlock, 0, stream()>>>(in[0].data<T>(), out.data<T>(), p);
  });
  XGAN_LAUNCH_CHECK();
}

}  // namespace xgan
