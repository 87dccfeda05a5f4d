// CPU bilinear resize (torch.nn.functional.interpolate, mode='bilinear', align_corners=False) and
// its exact adjoint, used for its backward. Both read one weight table per axis, computed as
// PyTorch's CPU kernel does (in the element type, indices clamped into range), so the forward
// rounds like PyTorch and the backward is the transpose of exactly the forward's weights.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/primitives.h"
#include "kernels/cpu/dispatch.h"

namespace xgan {
namespace {

// Output position d along one axis reads w0 * in[i0] + w1 * in[i1].
template <class T>
struct Tap {
  int64_t i0, i1;
  T w0, w1;
};

template <class T>
std::vector<Tap<T>> bilinear_taps(int64_t in, int64_t out, const char* op) {
  if (in <= 0 && out > 0)
    throw std::runtime_error(std::string(op) + ": cannot resize an empty axis to size " +
                             std::to_string(out));
  std::vector<Tap<T>> taps(static_cast<size_t>(out));
  const T scale = static_cast<T>(in) / static_cast<T>(out);
  for (int64_t d = 0; d < out; ++d) {
    Tap<T>& t = taps[static_cast<size_t>(d)];
    if (in == out) {  // PyTorch's shortcut: the identity
      t = {d, d, T(1), T(0)};
      continue;
    }
    const T src = std::max(scale * (static_cast<T>(d) + T(0.5)) - T(0.5), T(0));
    t.i0 = std::min(static_cast<int64_t>(std::floor(src)), in - 1);
    t.i1 = std::min(t.i0 + 1, in - 1);
    t.w1 = std::clamp(src - static_cast<T>(t.i0), T(0), T(1));
    t.w0 = T(1) - t.w1;
  }
  return taps;
}

struct Planes {
  int64_t count, in_h, in_w, out_h, out_w;
};

// `small` is [N, C, in_h, in_w], `large` [N, C, out_h, out_w] ("large" only in the role it plays).
Planes planes_of(const Tensor& small, const Tensor& large, const char* op) {
  if (small.dim() != 4 || large.dim() != 4 || small.size(0) != large.size(0) ||
      small.size(1) != large.size(1))
    throw std::runtime_error(std::string(op) + ": expects [N, C, H, W] tensors with equal N, C, got " +
                             small.str() + " and " + large.str());
  return {small.size(0) * small.size(1), small.size(2), small.size(3), large.size(2), large.size(3)};
}

template <class T>
void resize_bilinear(const Tensor& x, Tensor& y) {
  const char* op = "resize_bilinear";
  const Planes p = planes_of(x, y, op);
  const auto th = bilinear_taps<T>(p.in_h, p.out_h, op);
  const auto tw = bilinear_taps<T>(p.in_w, p.out_w, op);
  const T* xd = x.data<T>();
  T* yd = y.data<T>();
#pragma omp parallel for schedule(static)
  for (int64_t plane = 0; plane < p.count; ++plane) {
    const T* src = xd + plane * p.in_h * p.in_w;
    T* dst = yd + plane * p.out_h * p.out_w;
    for (int64_t oh = 0; oh < p.out_h; ++oh) {
      const Tap<T>& h = th[static_cast<size_t>(oh)];
      const T* r0 = src + h.i0 * p.in_w;
      const T* r1 = src + h.i1 * p.in_w;
      for (int64_t ow = 0; ow < p.out_w; ++ow) {
        const Tap<T>& w = tw[static_cast<size_t>(ow)];
        dst[oh * p.out_w + ow] =
            h.w0 * (w.w0 * r0[w.i0] + w.w1 * r0[w.i1]) + h.w1 * (w.w0 * r1[w.i0] + w.w1 * r1[w.i1]);
      }
    }
  }
}

template <class T>
void resize_bilinear_grad(const Tensor& g, Tensor& dx) {
  const char* op = "resize_bilinear_grad";
  const Planes p = planes_of(dx, g, op);
  const auto th = bilinear_taps<T>(p.in_h, p.out_h, op);
  const auto tw = bilinear_taps<T>(p.in_w, p.out_w, op);
  const T* gd = g.data<T>();
  T* dxd = dx.data<T>();
  // Planes are independent, so each thread scatters into planes no other thread touches.
#pragma omp parallel for schedule(static)
  for (int64_t plane = 0; plane < p.count; ++plane) {
    const T* src = gd + plane * p.out_h * p.out_w;
    T* dst = dxd + plane * p.in_h * p.in_w;
    std::fill(dst, dst + p.in_h * p.in_w, T(0));
    for (int64_t oh = 0; oh < p.out_h; ++oh) {
      const Tap<T>& h = th[static_cast<size_t>(oh)];
      T* r0 = dst + h.i0 * p.in_w;
      T* r1 = dst + h.i1 * p.in_w;
      for (int64_t ow = 0; ow < p.out_w; ++ow) {
        const Tap<T>& w = tw[static_cast<size_t>(ow)];
        const T v = src[oh * p.out_w + ow];
        r0[w.i0] += h.w0 * w.w0 * v;
        r0[w.i1] += h.w0 * w.w1 * v;
        r1[w.i0] += h.w1 * w.w0 * v;
        r1[w.i1] += h.w1 * w.w1 * v;
      }
    }
  }
}

}  // namespace

void ResizeBilinear::eval_cpu(const std::vector<Tensor>& in, Tensor& out) {
  if (in.size() != 1) throw std::runtime_error("resize_bilinear: expects one input");
  cpu::dispatch_float(out.dtype(), "resize_bilinear",
                      [&](auto t) { resize_bilinear<decltype(t)>(in[0], out); });
}

void ResizeBilinearGrad::eval_cpu(const std::vector<Tensor>& in, Tensor& out) {
  if (in.size() != 1) throw std::runtime_error("resize_bilinear_grad: expects one input");
  cpu::dispatch_float(out.dtype(), "resize_bilinear_grad",
                      [&](auto t) { resize_bilinear_grad<decltype(t)>(in[0], out); });
}

}  // namespace xgan
