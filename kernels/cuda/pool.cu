// CUDA pooling on NCHW, the twin of kernels/cpu/pool.cpp: max pooling as the pair MaxPool2d (read
// t at x's window argmax) / MaxPool2dGrad (g summed back at the argmax), average pooling and its
// adjoint. Forwards use one thread per output; the adjoints gather (one thread per input pixel,
// visiting the windows that contain it in the CPU's row-major order), so no atomics are needed
// and sums are deterministic.
#include "engine/primitives.h"
#include "kernels/cuda/common.cuh"

namespace xgan {
namespace {
using namespace cuda;

struct PoolGeometry {
  int64_t planes, H, W, OH, OW;
  int64_t k, s, ph, pw;
  __device__ int64_t h0(int64_t oh) const { return max(oh * s - ph, int64_t{0}); }
  __device__ int64_t h1(int64_t oh) const { return min(oh * s - ph + k, H); }
  __device__ int64_t w0(int64_t ow) const { return max(ow * s - pw, int64_t{0}); }
  __device__ int64_t w1(int64_t ow) const { return min(ow * s - pw + k, W); }
  // Windows along one axis that contain image position i (window o covers [o s - p, o s - p + k)).
  __device__ void windows(int64_t i, int64_t p, int64_t O, int64_t& lo, int64_t& hi) const {
    const int64_t num = i + p - k + 1;
    lo = num <= 0 ? 0 : (num + s - 1) / s;
    hi = min((i + p) / s, O - 1);
  }
  __device__ int64_t divisor(bool cip, int64_t oh, int64_t ow) const {
    return cip ? k * k : (h1(oh) - h0(oh)) * (w1(ow) - w0(ow));
  }
};

PoolGeometry geometry(const Tensor& image, const Tensor& pooled, int k, int s, Pad2d pad, const char* op) {
  if (image.dim() != 4 || pooled.dim() != 4 || image.size(0) != pooled.size(0) ||
      image.size(1) != pooled.size(1))
    fail(op, "expects [N, C, H, W] tensors with equal N, C, got " + image.str() + " and " + pooled.str());
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
    fail(op, "window grid does not fit " + image.str() + " -> " + pooled.str());
  return g;
}

// Offset in its plane of the largest x in window (oh, ow): the first in row-major window order;
// a NaN wins so it propagates (the CPU kernel's rule).
template <class T>
__device__ int64_t argmax(const T* x, const PoolGeometry& g, int64_t oh, int64_t ow) {
  const int64_t h0 = g.h0(oh), h1 = g.h1(oh), w0 = g.w0(ow), w1 = g.w1(ow);
  int64_t best = h0 * g.W + w0;
  T v = x[best];
  for (int64_t h = h0; h < h1; ++h)
    for (int64_t w = w0; w < w1; ++w) {
      const T c = x[h * g.W + w];
      if (!isnan(v) && (c > v || isnan(c))) v = c, best = h * g.W + w;
    }
  return best;
}

template <class T>
__global__ void max_pool_select(const T* __restrict__ x, const T* __restrict__ t, T* __restrict__ y,
                                PoolGeometry g) {
  XGAN_GRID_STRIDE(idx, g.planes * g.OH * g.OW) {
    const int64_t ow = idx % g.OW, oh = idx / g.OW % g.OH, p = idx / (g.OW * g.OH);
    const int64_t in = g.H * g.W;
    y[idx] = t[p * in + argmax(x + p * in, g, oh, ow)];
  }
}

template <class T>
__global__ void max_pool_gather(const T* __restrict__ x, const T* __restrict__ gy, T* __restrict__ dx,
                                PoolGeometry g) {
  XGAN_GRID_STRIDE(idx, g.planes * g.H * g.W) {
    const int64_t w = idx % g.W, h = idx / g.W % g.H, p = idx / (g.W * g.H);
    const T* xp = x + p * g.H * g.W;
    const T* gp = gy + p * g.OH * g.OW;
    int64_t oh0, oh1, ow0, ow1;
    g.windows(h, g.ph, g.OH, oh0, oh1);
    g.windows(w, g.pw, g.OW, ow0, ow1);
    T acc = 0;
    for (int64_t oh = oh0; oh <= oh1; ++oh)
      for (int64_t ow = ow0; ow <= ow1; ++ow)
        if (argmax(xp, g, oh, ow) == h * g.W + w) acc += gp[oh * g.OW + ow];
    dx[idx] = acc;
  }
}

template <class T>
__global__ void avg_pool(const T* __restrict__ x, T* __restrict__ y, PoolGeometry g, bool cip) {
  XGAN_GRID_STRIDE(idx, g.planes * g.OH * g.OW) {
    const int64_t ow = idx % g.OW, oh = idx / g.OW % g.OH, p = idx / (g.OW * g.OH);
    const T* src = x + p * g.H * g.W;
    T acc = 0;
    for (int64_t h = g.h0(oh); h < g.h1(oh); ++h)
      for (int64_t w = g.w0(ow); w < g.w1(ow); ++w) acc += src[h * g.W + w];
    y[idx] = acc / static_cast<T>(g.divisor(cip, oh, ow));
  }
}

template <class T>
__global__ void avg_pool_gather(const T* __restrict__ gy, T* __restrict__ dx, PoolGeometry g, bool cip) {
  XGAN_GRID_STRIDE(idx, g.planes * g.H * g.W) {
    const int64_t w = idx % g.W, h = idx / g.W % g.H, p = idx / (g.W * g.H);
    const T* gp = gy + p * g.OH * g.OW;
    int64_t oh0, oh1, ow0, ow1;
    g.windows(h, g.ph, g.OH, oh0, oh1);
    g.windows(w, g.pw, g.OW, ow0, ow1);
    T acc = 0;
    for (int64_t oh = oh0; oh <= oh1; ++oh)
      for (int64_t ow = ow0; ow <= ow1; ++ow)
        acc += gp[oh * g.OW + ow] / static_cast<T>(g.divisor(cip, oh, ow));
    dx[idx] = acc;
  }
}

void require_inputs(const std::vector<Tensor>& in, size_t n, const char* op) {
  if (in.size() != n) fail(op, "expects " + std::to_string(n) + " inputs, got " + std::to_string(in.size()));
  for (const Tensor& t : in) require_cuda(op, {&t});
}

}  // namespace

void MaxPool2d::eval_cuda(const std::vector<Tensor>& in, Tensor& out) {
  const char* op = "max_pool2d";
  require_inputs(in, 2, op);
  if (in[0].shape() != in[1].shape())
    fail(op, "x " + in[0].str() + " and t " + in[1].str() + " differ in shape");
  const PoolGeometry g = geometry(in[0], out, kernel, stride, pad, op);
  const int64_t n = out.numel();
  if (n == 0) return;
  dispatch_float(out.dtype(), op, [&](auto t) {
    using T = decltype(t);
    max_pool_select<T>
        <<<grid_for(n), kBlock, 0, stream()>>>(in[0].data<T>(), in[1].data<T>(), out.data<T>(), g);
  });
  XGAN_LAUNCH_CHECK();
}

void MaxPool2dGrad::eval_cuda(const std::vector<Tensor>& in, Tensor& out) {
  const char* op = "max_pool2d_grad";
  require_inputs(in, 2, op);
  if (in[0].shape() != out.shape())
    fail(op, "x " + in[0].str() + " and output " + out.str() + " differ in shape");
  const PoolGeometry g = geometry(in[0], in[1], kernel, stride, pad, op);
  const int64_t n = out.numel();
  if (n == 0) return;
  dispatch_float(out.dtype(), op, [&](auto t) {
    using T = decltype(t);
    max_pool_gather<T>
        <<<grid_for(n), kBlock, 0, stream()>>>(in[0].data<T>(), in[1].data<T>(), out.data<T>(), g);
  });
  XGAN_LAUNCH_CHECK();
}

void AvgPool2d::eval_cuda(const std::vector<Tensor>& in, Tensor& out) {
  const char* op = "avg_pool2d";
  require_inputs(in, 1, op);
  const PoolGeometry g = geometry(in[0], out, kernel, stride, pad, op);
  const int64_t n = out.numel();
  if (n == 0) return;
  dispatch_float(out.dtype(), op, [&](auto t) {
    using T = decltype(t);
    avg_pool<T><<<grid_for(n), kBlock, 0, stream()>>>(in[0].data<T>(), out.data<T>(), g, count_include_pad);
  });
  XGAN_LAUNCH_CHECK();
}

void AvgPool2dGrad::eval_cuda(const std::vector<Tensor>& in, Tensor& out) {
  const char* op = "avg_pool2d_grad";
  require_inputs(in, 1, op);
  const PoolGeometry g = geometry(out, in[0], kernel, stride, pad, op);
  const int64_t n = out.numel();
  if (n == 0) return;
  dispatch_float(out.dtype(), op, [&](auto t) {
    using T = decltype(t);
    avg_pool_gather<T>
        <<<grid_for(n), kBlock, 0, stream()>>>(in[0].data<T>(), out.data<T>(), g, count_include_pad);
  });
  XGAN_LAUNCH_CHECK();
}

}  // namespace xgan
