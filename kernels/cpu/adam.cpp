// CPU Adam update, the arithmetic of PyTorch 1.13.1's _single_tensor_adam (amsgrad and maximize
// off) operation by operation in the parameter's dtype, so float32 runs can be compared with
// PyTorch tensor by tensor. Tested by tests/test_adam.cpp (and the PyTorch golden test).
#include <cmath>
#include <stdexcept>
#include <string>

#include "engine/backend.h"

namespace xgan::cpu {
namespace {

// Below this many elements a thread team costs more than the update.
constexpr int64_t kParallelElements = 1 << 15;

template <class T>
void adam_loop(T* p, const T* g, T* m, T* v, int64_t n, int64_t step, const AdamConfig& cfg) {
  // Python-side scalars, in double as torch/optim/adam.py computes them (step is a float there).
  const double bias_correction1 = 1.0 - std::pow(cfg.beta1, static_cast<double>(step));
  const double bias_correction2 = 1.0 - std::pow(cfg.beta2, static_cast<double>(step));
  const double step_size = cfg.lr / bias_correction1;
  const double bias_correction2_sqrt = std::sqrt(bias_correction2);
  // Each scalar reaches the CPU kernels converted to the element type once (Scalar::to<scalar_t>).
  const bool decay = cfg.weight_decay != 0.0;
  const T wd = static_cast<T>(cfg.weight_decay);
  const T beta1 = static_cast<T>(cfg.beta1), one_minus_beta1 = static_cast<T>(1.0 - cfg.beta1);
  const T beta2 = static_cast<T>(cfg.beta2), one_minus_beta2 = static_cast<T>(1.0 - cfg.beta2);
  const T bc2_sqrt = static_cast<T>(bias_correction2_sqrt), eps = static_cast<T>(cfg.eps);
  const T neg_step_size = static_cast<T>(-step_size);
  // firstprivate: each thread holds the constants itself; shared, they live in memory the float
  // stores might alias, and are re-read on every element (the loop then does not vectorise).
#pragma omp parallel for schedule(static) if (n >= kParallelElements) \
    firstprivate(decay, wd, beta1, one_minus_beta1, beta2, one_minus_beta2, bc2_sqrt, eps, neg_step_size)
  for (int64_t i = 0; i < n; ++i) {
    T grad = g[i];
    if (decay) grad = grad + wd * p[i];                         // grad.add(param, alpha=wd)
    const T mi = m[i] * beta1 + one_minus_beta1 * grad;         // mul_(b1).add_(grad, alpha=1-b1)
    const T vi = v[i] * beta2 + one_minus_beta2 * grad * grad;  // mul_(b2).addcmul_(g, g, value=1-b2)
    const T denom = std::sqrt(vi) / bc2_sqrt + eps;             // (v.sqrt() / bc2_sqrt).add_(eps)
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] + neg_step_size * mi / denom;  // addcdiv_(m, denom, value=-step_size)
  }
}

}  // namespace

void adam_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, int64_t step, const AdamConfig& cfg) {
  auto fail = [&](const std::string& why) { throw std::runtime_error("adam_step: " + why); };
  if (!param.defined() || !grad.defined() || !m.defined() || !v.defined()) fail("undefined tensor");
  if (param.dtype() != DType::f32 && param.dtype() != DType::f64)
    fail("parameter must be float32 or float64, got " + param.str());
  const Tensor* operands[] = {&grad, &m, &v};
  for (const Tensor* t : operands)
    if (t->shape() != param.shape() || t->dtype() != param.dtype() || t->device() != param.device())
      fail(t->str() + " does not match parameter " + param.str());
  if (!param.device().is_cpu()) fail("cpu kernel given " + param.str());
  if (step < 1) fail("step counts from 1, got " + std::to_string(step));
  if (param.dtype() == DType::f32)
    adam_loop(param.data<float>(), grad.data<float>(), m.data<float>(), v.data<float>(), param.numel(), step,
              cfg);
  else
    adam_loop(param.data<double>(), grad.data<double>(), m.data<double>(), v.data<double>(), param.numel(),
              step, cfg);
  param.bump_version();
  m.bump_version();
  v.bump_version();
}

}  // namespace xgan::cpu
