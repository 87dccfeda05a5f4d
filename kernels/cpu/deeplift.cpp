// CPU kernel of DeepLIFT's rescale rule at one nonlinearity (engine/backend.h deeplift_rescale),
// fused: xai/xai.cpp used to build the multiplier from ~15 engine ops, each a pass over D's 2N-batch
// activations with its own output; here it is one pass that reads I and G and writes the result.
// The arithmetic is the same as those ops', in the same order and type (f and f' as the Sigmoid,
// Tanh and LeakyRelu kernels compute them), so the maps do not change. Tested by tests/test_xai.cpp
// against the rule written with engine ops and against PyTorch's rescale rule.
#include <cmath>
#include <stdexcept>

#include "engine/backend.h"
#include "kernels/cpu/dispatch.h"

namespace xgan::cpu {

namespace {

// f(x) and f'(x) as the engine's kernels compute them: LeakyRelu's x > 0 ? x : x s, with
// LeakyReluGrad's 1 or s; Sigmoid split at 0, with s (1 - s); tanh, with 1 - tanh^2.
template <DeepLiftNonlinearity K, class T>
inline void nonlinearity(T x, T slope, T& fx, T& dfx) {
  if constexpr (K == DeepLiftNonlinearity::leaky_relu) {
    fx = x > 0 ? x : x * slope;
    dfx = x > 0 ? T(1) : T(1) * slope;
  } else if constexpr (K == DeepLiftNonlinearity::sigmoid) {
    fx = x >= 0 ? T(1) / (T(1) + std::exp(-x)) : std::exp(x) / (T(1) + std::exp(x));
    dfx = fx * (T(1) - fx);
  } else {
    fx = std::tanh(x);
    dfx = T(1) - fx * fx;
  }
}

// Branch-free, so the LeakyReLU case vectorises: where the pair is (nearly) one point, each half
// takes its own derivative, and the division sees a 1 instead of a - b (no inf to discard).
template <DeepLiftNonlinearity K, class T>
void rescale(const T* __restrict I, const T* __restrict G, int64_t half, T slope, T* __restrict out) {
  const T tiny = static_cast<T>(1e-10);
#pragma omp parallel for schedule(static) if (half >= (int64_t{1} << 14)) firstprivate(slope, tiny)
  for (int64_t j = 0; j < half; ++j) {
    const T a = I[j], b = I[j + half];
    T fa, da, fb, db;
    nonlinearity<K>(a, slope, fa, da);
    nonlinearity<K>(b, slope, fb, db);
    const T din = a - b;
    const bool near = std::abs(din) < tiny;
    const T m = (fa - fb) / (near ? T(1) : din);
    out[j] = G[j] * (near ? da : m);
    out[j + half] = G[j + half] * (near ? db : m);
  }
}

}  // namespace

void deeplift_rescale(const Tensor& I, const Tensor& G, DeepLiftNonlinearity f, double slope, Tensor& out) {
  if (I.shape() != G.shape() || out.shape() != I.shape())
    throw std::invalid_argument("deeplift_rescale: I " + I.str() + ", G " + G.str() + " and out " +
                                out.str() + " must have one shape");
  if (I.dtype() != G.dtype() || out.dtype() != I.dtype())
    throw std::invalid_argument("deeplift_rescale: I, G and out must have one dtype");
  if (I.dim() < 1 || I.size(0) % 2 != 0)
    throw std::invalid_argument("deeplift_rescale: I " + I.str() + " must be a 2N batch [x; x0]");
  dispatch_float(I.dtype(), "deeplift_rescale", [&](auto t) {
    using T = decltype(t);
    const int64_t half = I.numel() / 2;
    const T s = static_cast<T>(slope);
    switch (f) {
      case DeepLiftNonlinearity::leaky_relu:
        return rescale<DeepLiftNonlinearity::leaky_relu, T>(I.data<T>(), G.data<T>(), half, s, out.data<T>());
      case DeepLiftNonlinearity::sigmoid:
        return rescale<DeepLiftNonlinearity::sigmoid, T>(I.data<T>(), G.data<T>(), half, s, out.data<T>());
      case DeepLiftNonlinearity::tanh:
        return rescale<DeepLiftNonlinearity::tanh, T>(I.data<T>(), G.data<T>(), half, s, out.data<T>());
    }
  });
  out.bump_version();
}

}  // namespace xgan::cpu
