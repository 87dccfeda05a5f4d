// CPU binary cross-entropy losses, mean-reduced to a scalar: on probabilities (each log clamped
// at -100, as PyTorch does, so p = 0 or 1 stays finite) and on logits (the overflow-free form).
// Terms are computed and summed in double, serially: the inputs are a batch of logits, far too
// small to be worth threads, and a serial sum gives the same loss on every run.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "engine/primitives.h"
#include "kernels/cpu/dispatch.h"

namespace xgan {
namespace {

void require_pair(const std::vector<Tensor>& in, const Tensor& out, const char* op) {
  if (in.size() != 2 || in[0].numel() != in[1].numel() || out.numel() != 1)
    throw std::runtime_error(std::string(op) +
                             ": expects (input, target) with equal sizes and a scalar output");
}

template <class T>
void binary_cross_entropy(const Tensor& p, const Tensor& t, Tensor& out) {
  const T* pd = p.data<T>();
  const T* td = t.data<T>();
  const int64_t n = p.numel();
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double pi = pd[i], ti = td[i];
    // PyTorch rejects these too; a NaN probability would otherwise pass silently into the loss.
    if (!(pi >= 0 && pi <= 1))
      throw std::runtime_error("binary_cross_entropy: input " + std::to_string(pi) + " is not in [0, 1]");
    // log1p(-p) is log(1 - p) without the rounding of 1 - p near p = 0.
    sum -= ti * std::max(std::log(pi), -100.0) + (1 - ti) * std::max(std::log1p(-pi), -100.0);
  }
  out.data<T>()[0] = static_cast<T>(sum / static_cast<double>(n));
}

template <class T>
void bce_with_logits(const Tensor& x, const Tensor& t, Tensor& out) {
  const T* xd = x.data<T>();
  const T* td = t.data<T>();
  const int64_t n = x.numel();
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double xi = xd[i], ti = td[i];
    // PyTorch's (1 - t) x + m + log(exp(-m) + exp(-x - m)), m = max(-x, 0), equals
    // (1 - t) x + m + log1p(exp(-|x|)); the latter keeps its accuracy for large |x|.
    sum += (1 - ti) * xi + std::max(-xi, 0.0) + std::log1p(std::exp(-std::abs(xi)));
  }
  out.data<T>()[0] = static_cast<T>(sum / static_cast<double>(n));
}

}  // namespace

void BinaryCrossEntropy::eval_cpu(const std::vector<Tensor>& in, Tensor& out) {
  require_pair(in, out, "binary_cross_entropy");
  cpu::dispatch_float(out.dtype(), "binary_cross_entropy",
                      [&](auto t) { binary_cross_entropy<decltype(t)>(in[0], in[1], out); });
}

void BceWithLogits::eval_cpu(const std::vector<Tensor>& in, Tensor& out) {
  require_pair(in, out, "binary_cross_entropy_with_logits");
  cpu::dispatch_float(out.dtype(), "binary_cross_entropy_with_logits",
                      [&](auto t) { bce_with_logits<decltype(t)>(in[0], in[1], out); });
}

}  // namespace xgan
