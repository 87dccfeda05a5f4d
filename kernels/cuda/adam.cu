// CUDA Adam update: kernels/cpu/adam.cpp's arithmetic (PyTorch 1.13.1's _single_tensor_adam)
// operation for operation, scalars prepared on the host in double the same way. Built without FMA
// contraction and with IEEE sqrt and division, so a step gives the CPU's numbers bit for bit.
#include <cmath>

#include "engine/backend.h"
#include "kernels/cuda/common.cuh"

namespace xgan::cuda {
namespace {

template <class T>
struct AdamScalars {
  bool decay;
  T wd, beta1, one_minus_beta1, beta2, one_minus_beta2, bc2_sqrt, eps, neg_step_size;
};

template <class T>
__global__ void adam_kernel(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ m, T* __restrict__ v,
                            int64_t n, AdamScalars<T> s) {
  XGAN_GRID_STRIDE(i, n) {
    T grad = g[i];
    if (s.decay) grad = grad + s.wd * p[i];
    const T mi = m[i] * s.beta1 + s.one_minus_beta1 * grad;
    const T vi = v[i] * s.beta2 + s.one_minus_beta2 * grad * grad;
    const T denom = dsqrt(vi) / s.bc2_sqrt + s.eps;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] + s.neg_step_size * mi / denom;
  }
}

template <class T>
AdamScalars<T> scalars(int64_t step, const AdamConfig& cfg) {
  const double bias_correction1 = 1.0 - std::pow(cfg.beta1, static_cast<double>(step));
  const double bias_correction2 = 1.0 - std::pow(cfg.beta2, static_cast<double>(step));
  const double step_size = cfg.lr / bias_correction1;
  return {cfg.weight_decay != 0.0,
          static_cast<T>(cfg.weight_decay),
          static_cast<T>(cfg.beta1),
          static_cast<T>(1.0 - cfg.beta1),
          static_cast<T>(cfg.beta2),
          static_cast<T>(1.0 - cfg.beta2),
          static_cast<T>(std::sqrt(bias_correction2)),
          static_cast<T>(cfg.eps),
          static_cast<T>(-step_size)};
}

}  // namespace

void adam_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, int64_t step, const AdamConfig& cfg) {
  auto bad = [&](const std::string& why) { throw std::runtime_error("adam_step (cuda): " + why); };
  if (!param.defined() || !grad.defined() || !m.defined() || !v.defined()) bad("undefined tensor");
  if (param.dtype() != DType::f32 && param.dtype() != DType::f64)
    bad("parameter must be float32 or float64, got " + param.str());
  const Tensor* operands[] = {&grad, &m, &v};
  for (const Tensor* t : operands)
    if (t->shape() != param.shape() || t->dtype() != param.dtype() || t->device() != param.device())
      bad(t->str() + " does not match parameter " + param.str());
  if (!param.device().is_cuda()) bad("cuda kernel given " + param.str());
  if (step < 1) bad("step counts from 1, got " + std::to_string(step));
  const int64_t n = param.numel();
  if (n > 0) {
    dispatch_float(param.dtype(), "adam_step", [&](auto t) {
      using T = decltype(t);
      adam_kernel<T><<<grid_for(n), kBlock, 0, stream()>>>(param.data<T>(), grad.data<T>(), m.data<T>(),
                                                           v.data<T>(), n, scalars<T>(step, cfg));
    });
    XGAN_LAUNCH_CHECK();
  }
  param.bump_version();
  m.bump_version();
  v.bump_version();
}

}  // namespace xgan::cuda
