// CUDA kernel of DeepLIFT's rescale rule at one nonlinearity (engine/backend.h deeplift_rescale),
// the twin of kernels/cpu/deeplift.cpp: one thread per pair (a, b) of the 2N batch [x; x0], f and
// f' as the CUDA Sigmoid, Tanh and LeakyRelu kernels compute them.
#include "engine/backend.h"
#include "kernels/cuda/common.cuh"

namespace xgan::cuda {
namespace {

template <class T>
__device__ __forceinline__ void nonlinearity(DeepLiftNonlinearity kind, T slope, T x, T& fx, T& dfx) {
  switch (kind) {
    case DeepLiftNonlinearity::leaky_relu:
      fx = x > T(0) ? x : x * slope;
      dfx = x > T(0) ? T(1) : T(1) * slope;
      return;
    case DeepLiftNonlinearity::sigmoid:
      fx = x >= T(0) ? T(1) / (T(1) + dexp(-x)) : dexp(x) / (T(1) + dexp(x));
      dfx = fx * (T(1) - fx);
      return;
    case DeepLiftNonlinearity::tanh:
      fx = dtanh(x);
      dfx = T(1) - fx * fx;
      return;
  }
}

template <class T>
__global__ void rescale(const T* __restrict__ I, const T* __restrict__ G, int64_t half,
                        DeepLiftNonlinearity kind, T slope, T* __restrict__ out) {
  XGAN_GRID_STRIDE(j, half) {
    const T a = I[j], b = I[j + half];
    T fa, da, fb, db;
    nonlinearity(kind, slope, a, fa, da);
    nonlinearity(kind, slope, b, fb, db);
    const T din = a - b;
    if (dabs(din) < static_cast<T>(1e-10)) {
      out[j] = G[j] * da;
      out[j + half] = G[j + half] * db;
    } else {
      const T m = (fa - fb) / din;
      out[j] = G[j] * m;
      out[j + half] = G[j + half] * m;
    }
  }
}

}  // namespace

void deeplift_rescale(const Tensor& I, const Tensor& G, DeepLiftNonlinearity f, double slope, Tensor& out) {
  if (I.shape() != G.shape() || out.shape() != I.shape())
    fail("deeplift_rescale",
         "I " + I.str() + ", G " + G.str() + " and out " + out.str() + " must have one shape");
  if (I.dtype() != G.dtype() || out.dtype() != I.dtype())
    fail("deeplift_rescale", "I, G and out must have one dtype");
  if (I.dim() < 1 || I.size(0) % 2 != 0)
    fail("deeplift_rescale", "I " + I.str() + " must be a 2N batch [x; x0]");
  require_cuda("deeplift_rescale", {&I, &G, &out});
  const int64_t half = I.numel() / 2;
  if (half > 0)
    dispatch_float(I.dtype(), "deeplift_rescale", [&](auto t) {
      using T = decltype(t);
      rescale<T><<<grid_for(half), kBlock, 0, stream()>>>(I.data<T>(), G.data<T>(), half, f,
                                                          static_cast<T>(slope), out.data<T>());
      XGAN_LAUNCH_CHECK();
    });
  out.bump_version();
}

}  // namespace xgan::cuda
