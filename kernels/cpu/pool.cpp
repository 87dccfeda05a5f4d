// CPU pooling on NCHW: max pooling as the pair MaxPool2d (read t at x's argmax) / MaxPool2dGrad
// (scatter g to x's argmax), and average pooling with its adjoint. Every (n, c) plane is
// independent, so OpenMP splits planes and each thread writes only its own planes.
// Tested by tests/test_gradcheck.cpp (derivatives) and tests/test_golden.cpp (PyTorch 1.13).
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "engine/primitives.h"
#include "kernels/cpu/dispatch.h"

namespace xgan {
namespace {

// A pooling window grid: `in` is the pooled image, `out` the window positions.
struct PoolGeometry {
  int64_t planes, H, W, OH, OW;
  int64_t k, s, ph, pw;
  // Rows [h0, h1) and columns [w0, w1) of window (oh, ow) that lie inside the image.
  int64_t h0(int64_t oh) const { return std::max<int64_t>(oh * s - ph, 0); }
  int64_t h1(int64_t oh) const { return std::min<int64_t>(oh * s - ph + k, H); }
  int64_t w0(int64_t ow) const { return std::max<int64_t>(ow * s - pw, 0); }
  int64_t w1(int64_t ow) const { return std::min<int64_t>(ow * s - pw + k, W); }
};

// `image` is [N, C, H, W], `pooled` [N, C, OH, OW] (in whichever role the op gives them).
PoolGeometry geometry(const Tensor& image, const Tensor& pooled, int k, int s, Pad2d pad, const char* op) {
  if (image.dim() != 4 || pooled.dim() != 4 || image.size(0) != pooled.size(0) ||
      image.size(1) != pooled.size(1))
    throw std::runtime_error(std::string(op) + ": expects [N, C, H, W] tensors with equal N, C, got " +
                             image.str() + " and " + pooled.str());
  PoolGeometry g{image.size(0) * image.size(1),
                 image.size(2),
                 image.size(3),
                 pooled.size(2),
                 pooled.size(3),
                 k,
                 s,
                 pad.h,
                 pad.w};
  if (k < 1 || s < 1 || (g.H + 2 * g.ph - k) / s + 1 != g.OH || (g.W + 2 * g.pw - k) / s + 1 != g.OW)
    throw std::runtime_error(std::string(op) + ": window grid does not fit " + image.str() + " -> " +
                             pooled.str());
  return g;
}

// Offset (within its plane) of the largest x in window (oh, ow): the first in row-major window
// order; a NaN wins like in PyTorch, so it propagates. Padding never wins (PyTorch pads with -inf),
// and the user functions guarantee every window holds at least one image position (pad <= k/2).
template <class T>
int64_t argmax(const T* x, const PoolGeometry& g, int64_t oh, int64_t ow) {
  const int64_t h0 = g.h0(oh), h1 = g.h1(oh), w0 = g.w0(ow), w1 = g.w1(ow);
  int64_t best = h0 * g.W + w0;
  T v = x[best];
  for (int64_t h = h0; h < h1; ++h)
    for (int64_t w = w0; w < w1; ++w) {
      const T c = x[h * g.W + w];
      if (!std::isnan(v) && (c > v || std::isnan(c))) v = c, best = h * g.W + w;
    }
  return best;
}

template <class T>
void max_pool_select(const Tensor& x, const Tensor& t, Tensor& y, const PoolGeometry& g) {
  const T *xd = x.data<T>(), *td = t.data<T>();
  T* yd = y.data<T>();
  const int64_t in = g.H * g.W, out = g.OH * g.OW;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < g.planes; ++p)
    for (int64_t oh = 0; oh < g.OH; ++oh)
      for (int64_t ow = 0; ow < g.OW; ++ow)
        yd[p * out + oh * g.OW + ow] = td[p * in + argmax(xd + p * in, g, oh, ow)];
}

template <class T>
void max_pool_scatter(const Tensor& x, const Tensor& gy, Tensor& dx, const PoolGeometry& g) {
  const T *xd = x.data<T>(), *gd = gy.data<T>();
  T* dd = dx.data<T>();
  const int64_t in = g.H * g.W, out = g.OH * g.OW;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < g.planes; ++p) {
    T* dst = dd + p * in;
    std::fill(dst, dst + in, T(0));
    // Overlapping windows (stride < kernel) can share an argmax: contributions add.
    for (int64_t oh = 0; oh < g.OH; ++oh)
      for (int64_t ow = 0; ow < g.OW; ++ow)
        dst[argmax(xd + p * in, g, oh, ow)] += gd[p * out + oh * g.OW + ow];
  }
}

// What a window's sum is divided by: k*k with count_include_pad (in floor mode a window never
// leaves the padded image, so this is PyTorch's divisor too), else the positions inside the image.
int64_t divisor(const PoolGeometry& g, bool count_include_pad, int64_t oh, int64_t ow) {
  if (count_include_pad) return g.k * g.k;
  return (g.h1(oh) - g.h0(oh)) * (g.w1(ow) - g.w0(ow));
}

template <class T>
void avg_pool(const Tensor& x, Tensor& y, const PoolGeometry& g, bool cip) {
  const T* xd = x.data<T>();
  T* yd = y.data<T>();
  const int64_t in = g.H * g.W, out = g.OH * g.OW;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < g.planes; ++p) {
    const T* src = xd + p * in;
    for (int64_t oh = 0; oh < g.OH; ++oh)
      for (int64_t ow = 0; ow < g.OW; ++ow) {
        T acc = 0;
        for (int64_t h = g.h0(oh); h < g.h1(oh); ++h)
          for (int64_t w = g.w0(ow); w < g.w1(ow); ++w) acc += src[h * g.W + w];
        yd[p * out + oh * g.OW + ow] = acc / static_cast<T>(divisor(g, cip, oh, ow));
      }
  }
}

template <class T>
void avg_pool_adjoint(const Tensor& gy, Tensor& dx, const PoolGeometry& g, bool cip) {
  const T* gd = gy.data<T>();
  T* dd = dx.data<T>();
  const int64_t in = g.H * g.W, out = g.OH * g.OW;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < g.planes; ++p) {
    T* dst = dd + p * in;
    std::fill(dst, dst + in, T(0));
    for (int64_t oh = 0; oh < g.OH; ++oh)
      for (int64_t ow = 0; ow < g.OW; ++ow) {
        const T v = gd[p * out + oh * g.OW + ow] / static_cast<T>(divisor(g, cip, oh, ow));
        for (int64_t h = g.h0(oh); h < g.h1(oh); ++h)
          for (int64_t w = g.w0(ow); w < g.w1(ow); ++w) dst[h * g.W + w] += v;
      }
  }
}

void require_inputs(const std::vector<Tensor>& in, size_t n, const char* op) {
  if (in.size() != n)
    throw std::runtime_error(std::string(op) + ": expects " + std::to_string(n) + " inputs, got " +
                             std::to_string(in.size()));
}

}  // namespace

void MaxPool2d::eval_cpu(const std::vector<Tensor>& in, Tensor& out) {
  require_inputs(in, 2, "max_pool2d");
  if (in[0].shape() != in[1].shape())
    throw std::runtime_error("max_pool2d: x " + in[0].str() + " and t " + in[1].str() + " differ in shape");
  const PoolGeometry g = geometry(in[0], out, kernel, stride, pad, "max_pool2d");
  cpu::dispatch_float(out.dtype(), "max_pool2d",
                      [&](auto t) { max_pool_select<decltype(t)>(in[0], in[1], out, g); });
}

void MaxPool2dGrad::eval_cpu(const std::vector<Tensor>& in, Tensor& out) {
  require_inputs(in, 2, "max_pool2d_grad");
  if (in[0].shape() != out.shape())
    throw std::runtime_error("max_pool2d_grad: x " + in[0].str() + " and output " + out.str() +
                             " differ in shape");
  const PoolGeometry g = geometry(in[0], in[1], kernel, stride, pad, "max_pool2d_grad");
  cpu::dispatch_float(out.dtype(), "max_pool2d_grad",
                      [&](auto t) { max_pool_scatter<decltype(t)>(in[0], in[1], out, g); });
}

void AvgPool2d::eval_cpu(const std::vector<Tensor>& in, Tensor& out) {
  require_inputs(in, 1, "avg_pool2d");
  const PoolGeometry g = geometry(in[0], out, kernel, stride, pad, "avg_pool2d");
  cpu::dispatch_float(out.dtype(), "avg_pool2d",
                      [&](auto t) { avg_pool<decltype(t)>(in[0], out, g, count_include_pad); });
}

void AvgPool2dGrad::eval_cpu(const std::vector<Tensor>& in, Tensor& out) {
  require_inputs(in, 1, "avg_pool2d_grad");
  const PoolGeometry g = geometry(out, in[0], kernel, stride, pad, "avg_pool2d_grad");
  cpu::dispatch_float(out.dtype(), "avg_pool2d_grad",
                      [&](auto t) { avg_pool_adjoint<decltype(t)>(in[0], out, g, count_include_pad); });
}

}  // namespace xgan
