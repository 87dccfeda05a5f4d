// CUDA batch norm over (N, H, W) per channel. Training: one block per channel computes the mean
// and the (biased) variance in double, two passes as on the CPU so a large mean does not cancel
// the variance, normalises, and updates the running statistics (unbiased variance) in the same
// launch, so nothing waits on the host. Inference: one thread per element.
#include "engine/primitives.h"
#include "kernels/cuda/common.cuh"

namespace xgan {
namespace {
using namespace cuda;

struct Layout {
  int64_t N, C, S;  // x viewed as [N, C, S]
};

Layout layout_of(const Tensor& x, const Tensor& y, const char* op) {
  if (x.dim() < 2 || y.shape() != x.shape())
    fail(op, "expects x of shape [N, C, ...] and an output of the same shape, got x " + x.str() + ", out " +
                 y.str());
  const int64_t N = x.size(0), C = x.size(1);
  return {N, C, N * C > 0 ? x.numel() / (N * C) : 0};
}

void require_per_channel(const Tensor& t, int64_t C, const char* op, const char* name) {
  if (!t.defined() || t.numel() != C)
    fail(op, std::string(name) + " must have one value per channel (" + std::to_string(C) + "), got " +
                 (t.defined() ? t.str() : std::string("undefined")));
  require_cuda(op, {&t});
}

template <class T>
__global__ void bn_train_kernel(const T* __restrict__ x, const T* __restrict__ gamma,
                                const T* __restrict__ beta, T* __restrict__ y, T* running_mean,
                                T* running_var, Layout l, double momentum, double eps) {
  const int64_t M = l.N * l.S;
  for (int64_t c = blockIdx.x; c < l.C; c += gridDim.x) {  // uniform across the block
    auto at = [&](int64_t j) { return (j / l.S * l.C + c) * l.S + j % l.S; };
    double sum = 0;
    for (int64_t j = threadIdx.x; j < M; j += blockDim.x) sum += static_cast<double>(x[at(j)]);
    sum = block_reduce(sum, [](double a, double b) { return a + b; });
    const double mean = sum / static_cast<double>(M);
    double sq = 0;
    for (int64_t j = threadIdx.x; j < M; j += blockDim.x) {
      const double d = static_cast<double>(x[at(j)]) - mean;
      sq += d * d;
    }
    sq = block_reduce(sq, [](double a, double b) { return a + b; });
    const double var = sq / static_cast<double>(M);
    const double scale = static_cast<double>(gamma[c]) / sqrt(var + eps);
    const T ts = static_cast<T>(scale), tb = static_cast<T>(static_cast<double>(beta[c]) - mean * scale);
    for (int64_t j = threadIdx.x; j < M; j += blockDim.x) y[at(j)] = x[at(j)] * ts + tb;
    if (running_mean && threadIdx.x == 0) {
      const double unbiased = sq / static_cast<double>(M - 1);
      running_mean[c] =
          static_cast<T>((1 - momentum) * static_cast<double>(running_mean[c]) + momentum * mean);
      running_var[c] =
          static_cast<T>((1 - momentum) * static_cast<double>(running_var[c]) + momentum * unbiased);
    }
  }
}

template <class T>
__global__ void bn_eval_kernel(const T* __restrict__ x, const T* __restrict__ gamma,
                               const T* __restrict__ beta, const T* __restrict__ rm, const T* __restrict__ rv,
                               T* __restrict__ y, Layout l, double eps, int64_t n) {
  XGAN_GRID_STRIDE(i, n) {
    const int64_t c = i / l.S % l.C;
    // Per element rather than per channel: a few double operations are cheaper than a second launch.
    const double scale = static_cast<double>(gamma[c]) / sqrt(static_cast<double>(rv[c]) + eps);
    const T shift = static_cast<T>(static_cast<double>(beta[c]) - static_cast<double>(rm[c]) * scale);
    y[i] = x[i] * static_cast<T>(scale) + shift;
  }
}

}  // namespace

void BatchNormTrain::eval_cuda(const std::vector<Tensor>& in, Tensor& out) {
  const char* op = "batch_norm";
  if (in.size() != 3) fail(op, "training expects inputs (x, weight, bias)");
  require_cuda(op, {&in[0], &out});
  const Layout l = layout_of(in[0], out, op);
  if (l.N * l.S < 2)
    fail(op, "training needs more than one value per channel, got input shape " + shape_str(in[0].shape()));
  require_per_channel(in[1], l.C, op, "weight");
  require_per_channel(in[2], l.C, op, "bias");
  const bool update = running_mean.defined() || running_var.defined();
  if (update) {
    require_per_channel(running_mean, l.C, op, "running_mean");
    require_per_channel(running_var, l.C, op, "running_var");
  }
  if (l.C == 0) return;
  dispatch_float(out.dtype(), op, [&](auto t) {
    using T = decltype(t);
    bn_train_kernel<T><<<static_cast<unsigned>(std::min<int64_t>(l.C, 65535)), kBlock, 0, stream()>>>(
        in[0].data<T>(), in[1].data<T>(), in[2].data<T>(), out.data<T>(),
        update ? running_mean.data<T>() : nullptr, update ? running_var.data<T>() : nullptr, l, momentum,
        eps);
  });
  XGAN_LAUNCH_CHECK();
  if (update) {
    running_mean.bump_version();
    running_var.bump_version();
  }
}

void BatchNormEval::eval_cuda(const std::vector<Tensor>& in, Tensor& out) {
  const char* op = "batch_norm";
  if (in.size() != 5) fail(op, "inference expects inputs (x, weight, bias, running_mean, running_var)");
  require_cuda(op, {&in[0], &out});
  const Layout l = layout_of(in[0], out, op);
  require_per_channel(in[1], l.C, op, "weight");
  require_per_channel(in[2], l.C, op, "bias");
  require_per_channel(in[3], l.C, op, "running_mean");
  require_per_channel(in[4], l.C, op, "running_var");
  const int64_t n = out.numel();
  if (n == 0) return;
  dispatch_float(out.dtype(), op, [&](auto t) {
    using T = decltype(t);
    bn_eval_kernel<T><<<grid_for(n), kBlock, 0, stream()>>>(in[0].data<T>(), in[1].data<T>(), in[2].data<T>(),
                                                            in[3].data<T>(), in[4].data<T>(), out.data<T>(),
                                                            l, eps, n);
  });
  XGAN_LAUNCH_CHECK();
}

}  // namespace xgan
