// CUDA kernel of X-GAN's normalise-and-weight step (engine/backend.h xai_guidance), the twin of
// kernels/cpu/xai_guidance.cpp: per group (the batch, or each sample) min and max of the map M in
// one block each, then E = 1 + (M - min) / (max - min) and guided = E * g in one elementwise pass
// (as-coded: the sum of E in double in one block, then guided = (sum E) * g). The statistics stay
// on the device: nothing waits on the host.
#include "engine/backend.h"
#include "kernels/cuda/common.cuh"

namespace xgan::cuda {
namespace {

template <class T>
__global__ void group_min_max(const T* __restrict__ m, int64_t groups, int64_t per, T* __restrict__ lo,
                              T* __restrict__ hi) {
  for (int64_t k = blockIdx.x; k < groups; k += gridDim.x) {  // uniform across the block
    const T* p = m + k * per;
    T a = p[0], b = p[0];  // per >= 1 here
    for (int64_t i = threadIdx.x; i < per; i += blockDim.x) {
      a = p[i] < a ? p[i] : a;  // std::min / std::max's rules
      b = b < p[i] ? p[i] : b;
    }
    a = block_reduce(a, [](T x, T y) { return y < x ? y : x; });
    b = block_reduce(b, [](T x, T y) { return x < y ? y : x; });
    if (threadIdx.x == 0) {
      lo[k] = a;
      hi[k] = b;
    }
  }
}

template <class T>
__global__ void normalise_and_weight(const T* __restrict__ m, const T* __restrict__ g,
                                     const T* __restrict__ lo, const T* __restrict__ hi, int64_t n,
                                     int64_t per, bool weight, T* __restrict__ e, T* __restrict__ out) {
  XGAN_GRID_STRIDE(i, n) {
    const int64_t k = i / per;
    const T a = lo[k], range = hi[k] - a;
    // A constant map carries no information: no reweighting rather than a 0/0.
    const T ei = range > T(0) ? T(1) + (m[i] - a) / range : T(1);
    e[i] = ei;
    if (weight) out[i] = ei * g[i];
  }
}

template <class T>
__global__ void sum_to_scalar(const T* __restrict__ e, int64_t n, T* __restrict__ s) {
  double acc = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) acc += static_cast<double>(e[i]);
  acc = block_reduce(acc, [](double a, double b) { return a + b; });
  if (threadIdx.x == 0) *s = static_cast<T>(acc);
}

template <class T>
__global__ void scale_by(const T* __restrict__ s, const T* __restrict__ g, int64_t n, T* __restrict__ out) {
  XGAN_GRID_STRIDE(i, n) { out[i] = *s * g[i]; }
}

template <class T>
void guidance(const Tensor& map, const Tensor& g, bool per_sample, bool as_coded, Tensor& E, Tensor& guided) {
  const int64_t n = map.numel();
  if (n == 0) return;
  const int64_t groups = per_sample && map.dim() > 0 ? map.size(0) : 1;
  const int64_t per = n / groups;
  Scratch stats((2 * groups + 1) * sizeof(T));
  T* lo = static_cast<T*>(stats.get());
  T* hi = lo + groups;
  T* sum = hi + groups;
  group_min_max<T><<<static_cast<unsigned>(std::min<int64_t>(groups, 65535)), kBlock, 0, stream()>>>(
      map.data<T>(), groups, per, lo, hi);
  XGAN_LAUNCH_CHECK();
  normalise_and_weight<T><<<grid_for(n), kBlock, 0, stream()>>>(map.data<T>(), g.data<T>(), lo, hi, n, per,
                                                                !as_coded, E.data<T>(), guided.data<T>());
  XGAN_LAUNCH_CHECK();
  if (as_coded) {
    sum_to_scalar<T><<<1, kBlock, 0, stream()>>>(E.data<T>(), n, sum);
    XGAN_LAUNCH_CHECK();
    scale_by<T><<<grid_for(n), kBlock, 0, stream()>>>(sum, g.data<T>(), n, guided.data<T>());
    XGAN_LAUNCH_CHECK();
  }
}

}  // namespace

void xai_guidance(const Tensor& map, const Tensor& g, bool per_sample, bool as_coded, Tensor& E,
                  Tensor& guided) {
  if (map.shape() != g.shape() || E.shape() != map.shape() || guided.shape() != map.shape())
    throw std::invalid_argument("xai_guidance: map " + map.str() + ", g " + g.str() + ", E " + E.str() +
                                " and guided " + guided.str() + " must have one shape");
  if (map.dtype() != g.dtype() || E.dtype() != map.dtype() || guided.dtype() != map.dtype())
    throw std::invalid_argument("xai_guidance: map, g, E and guided must have one dtype");
  require_cuda("xai_guidance", {&map, &g, &E, &guided});
  if (per_sample && map.dim() > 0 && map.size(0) == 0) return;
  dispatch_float(map.dtype(), "xai_guidance",
                 [&](auto t) { guidance<decltype(t)>(map, g, per_sample, as_coded, E, guided); });
  E.bump_version();
  guided.bump_version();
}

}  // namespace xgan::cuda
