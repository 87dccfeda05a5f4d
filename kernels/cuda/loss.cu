// CUDA binary cross-entropy losses, mean-reduced to a scalar in one block (the inputs are a
// batch of scores): terms in double, as on the CPU. A probability outside [0, 1] (a NaN from a
// diverged D) cannot throw from the GPU without a host sync, so it makes the loss NaN instead;
// the trainer's non-finite-loss check then stops the run, as the CPU's exception does.
#include "engine/primitives.h"
#include "kernels/cuda/common.cuh"

namespace xgan {
namespace {
using namespace cuda;

template <class T, bool kLogits>
__global__ void bce_kernel(const T* __restrict__ p, const T* __restrict__ t, T* __restrict__ out, int64_t n) {
  double sum = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const double pi = static_cast<double>(p[i]), ti = static_cast<double>(t[i]);
    if constexpr (kLogits) {
      // (1 - t) x + max(-x, 0) + log1p(exp(-|x|)): PyTorch's stable form (see kernels/cpu/loss.cpp).
      sum += (1 - ti) * pi + fmax(-pi, 0.0) + log1p(exp(-fabs(pi)));
    } else if (!(pi >= 0 && pi <= 1)) {
      sum += nan("");
    } else {
      sum -= ti * fmax(log(pi), -100.0) + (1 - ti) * fmax(log1p(-pi), -100.0);
    }
  }
  sum = block_reduce(sum, [](double a, double b) { return a + b; });
  if (threadIdx.x == 0) out[0] = static_cast<T>(sum / static_cast<double>(n));
}

template <bool kLogits>
void run_bce(const char* op, const std::vector<Tensor>& in, Tensor& out) {
  if (in.size() != 2 || in[0].numel() != in[1].numel() || out.numel() != 1)
    fail(op, "expects (input, target) with equal sizes and a scalar output");
  require_cuda(op, {&in[0], &in[1], &out});
  const int64_t n = in[0].numel();
  dispatch_float(out.dtype(), op, [&](auto t) {
    using T = decltype(t);
    bce_kernel<T, kLogits><<<1, kBlock, 0, stream()>>>(in[0].data<T>(), in[1].data<T>(), out.data<T>(), n);
  });
  XGAN_LAUNCH_CHECK();
}

}  // namespace

void BinaryCrossEntropy::eval_cuda(const std::vector<Tensor>& in, Tensor& out) {
  run_bce<false>("binary_cross_entropy", in, out);
}
void BceWithLogits::eval_cuda(const std::vector<Tensor>& in, Tensor& out) {
  run_bce<true>("binary_cross_entropy_with_logits", in, out);
}

}  // namespace xgan
