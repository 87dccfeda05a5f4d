// CPU batch norm over (N, H, W) per channel: training (batch statistics, running-statistics
// update) and inference (running statistics). Each channel is one OpenMP task reduced in double
// in a fixed order (cpu::sum_lanes), two passes (mean, then squared deviations), so results do not
// depend on the thread count and a large mean does not cancel the variance away.
#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>

#include "engine/primitives.h"
#include "kernels/cpu/dispatch.h"

namespace xgan {
namespace {

void require(bool ok, const char* op, const std::string& what) {
  if (!ok) throw std::runtime_error(std::string(op) + ": " + what);
}

// x viewed as [N, C, S]: S = H * W, or 1 for a [N, C] input.
struct ChannelLayout {
  int64_t N, C, S;
};

ChannelLayout channel_layout(const Tensor& x, const Tensor& y, const char* op) {
  require(x.dim() >= 2 && y.shape() == x.shape(), op,
          "expects x of shape [N, C, ...] and an output of the same shape, got x " + x.str() + ", out " +
              y.str());
  const int64_t N = x.size(0), C = x.size(1);
  return {N, C, N * C > 0 ? x.numel() / (N * C) : 0};
}

void require_per_channel(const Tensor& t, int64_t C, const char* op, const char* name) {
  require(t.defined() && t.numel() == C, op,
          std::string(name) + " must have one value per channel (" + std::to_string(C) + "), got " + t.str());
}

// y = x * scale[c] + shift[c] on every channel.
template <class T>
void apply_affine(const T* x, const ChannelLayout& l, int64_t c, T scale, T shift, T* y) {
  for (int64_t n = 0; n < l.N; ++n) {
    const int64_t base = (n * l.C + c) * l.S;
    for (int64_t i = 0; i < l.S; ++i) y[base + i] = x[base + i] * scale + shift;
  }
}

// Channel c's mean and sum of squared deviations from it, in double: two passes, so a large mean
// does not cancel the variance away.
template <class T>
std::pair<double, double> channel_moments(const T* x, const ChannelLayout& l, int64_t c) {
  double sum = 0;
  for (int64_t n = 0; n < l.N; ++n) sum += cpu::sum_lanes(x + (n * l.C + c) * l.S, l.S);
  const double mean = sum / static_cast<double>(l.N * l.S);
  double sq = 0;
  for (int64_t n = 0; n < l.N; ++n) sq += cpu::sum_sq_dev_lanes(x + (n * l.C + c) * l.S, l.S, mean);
  return {mean, sq};
}

template <class T>
void batch_norm_train(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& y, double momentum,
                      double eps, Tensor& running_mean, Tensor& running_var) {
  const char* op = "batch_norm";
  const ChannelLayout l = channel_layout(x, y, op);
  const int64_t M = l.N * l.S;
  if (M < 2)
    throw std::runtime_error("batch_norm: training needs more than one value per channel, got input shape " +
                             shape_str(x.shape()));
  require_per_channel(gamma, l.C, op, "weight");
  require_per_channel(beta, l.C, op, "bias");
  const bool update = running_mean.defined() || running_var.defined();
  if (update) {
    require_per_channel(running_mean, l.C, op, "running_mean");
    require_per_channel(running_var, l.C, op, "running_var");
  }
  const T* xd = x.data<T>();
  const T* gd = gamma.data<T>();
  const T* bd = beta.data<T>();
  T* yd = y.data<T>();
  T* rm = update ? running_mean.data<T>() : nullptr;
  T* rv = update ? running_var.data<T>() : nullptr;

#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < l.C; ++c) {
    const auto [mean, sq] = channel_moments(xd, l, c);
    const double var = sq / static_cast<double>(M);
    const double scale = gd[c] / std::sqrt(var + eps);
    apply_affine(xd, l, c, static_cast<T>(scale), static_cast<T>(bd[c] - mean * scale), yd);
    if (update) {
      const double unbiased = sq / static_cast<double>(M - 1);
      rm[c] = static_cast<T>((1 - momentum) * rm[c] + momentum * mean);
      rv[c] = static_cast<T>((1 - momentum) * rv[c] + momentum * unbiased);
    }
  }
  if (update) {
    running_mean.bump_version();
    running_var.bump_version();
  }
}

template <class T>
void batch_norm_eval(const std::vector<Tensor>& in, Tensor& y, double eps) {
  const char* op = "batch_norm";
  const Tensor& x = in[0];
  const ChannelLayout l = channel_layout(x, y, op);
  require_per_channel(in[1], l.C, op, "weight");
  require_per_channel(in[2], l.C, op, "bias");
  require_per_channel(in[3], l.C, op, "running_mean");
  require_per_channel(in[4], l.C, op, "running_var");
  const T* xd = x.data<T>();
  const T* gd = in[1].data<T>();
  const T* bd = in[2].data<T>();
  const T* rm = in[3].data<T>();
  const T* rv = in[4].data<T>();
  T* yd = y.data<T>();
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < l.C; ++c) {
    const double scale = gd[c] / std::sqrt(static_cast<double>(rv[c]) + eps);
    apply_affine(xd, l, c, static_cast<T>(scale), static_cast<T>(bd[c] - rm[c] * scale), yd);
  }
}

// The gradient of training-mode batch norm in one kernel, for backward passes that record no
// graph (BatchNormTrain::vjp). Per channel, with xhat = (x - mean) r and r = 1/sqrt(var + eps):
//   dbeta = sum(g),  dgamma = sum(g xhat),  dx = gamma r (g - sum(g)/M - xhat sum(g xhat)/M).
// Four passes (mean, variance, the two sums, dx) where the composed ops make about eighteen, the
// sums in double as the forward's are.
template <class T>
void batch_norm_train_backward(const Tensor& x, const Tensor& g, const Tensor& gamma, double eps, Tensor* dx,
                               Tensor* dgamma, Tensor* dbeta) {
  const char* op = "batch_norm backward";
  const ChannelLayout l = channel_layout(x, g, op);
  const int64_t M = l.N * l.S;
  require(M >= 2, op, "needs more than one value per channel, got input shape " + shape_str(x.shape()));
  require_per_channel(gamma, l.C, op, "weight");
  const T* xd = x.data<T>();
  const T* gd = g.data<T>();
  const T* wd = gamma.data<T>();
  T* dxd = dx ? dx->data<T>() : nullptr;
  T* dwd = dgamma ? dgamma->data<T>() : nullptr;
  T* dbd = dbeta ? dbeta->data<T>() : nullptr;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < l.C; ++c) {
    const auto [mean, sq] = channel_moments(xd, l, c);
    const double r = 1.0 / std::sqrt(sq / static_cast<double>(M) + eps);
    double sg[8] = {0, 0, 0, 0, 0, 0, 0, 0}, sgc[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // sum g, sum g (x - mean)
    for (int64_t n = 0; n < l.N; ++n) {
      const T* xs = xd + (n * l.C + c) * l.S;
      const T* gs = gd + (n * l.C + c) * l.S;
      int64_t i = 0;
      for (; i + 8 <= l.S; i += 8)
        for (int k = 0; k < 8; ++k) {
          sg[k] += static_cast<double>(gs[i + k]);
          sgc[k] += static_cast<double>(gs[i + k]) * (static_cast<double>(xs[i + k]) - mean);
        }
      for (; i < l.S; ++i) {
        sg[0] += static_cast<double>(gs[i]);
        sgc[0] += static_cast<double>(gs[i]) * (static_cast<double>(xs[i]) - mean);
      }
    }
    const auto total = [](const double(&a)[8]) {
      return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    };
    const double sum_g = total(sg), sum_gxhat = total(sgc) * r;
    if (dbd) dbd[c] = static_cast<T>(sum_g);
    if (dwd) dwd[c] = static_cast<T>(sum_gxhat);
    if (dxd) {
      // dx = k (g - a) - (x - mean) b with k = gamma r, a = sum(g)/M, b = k r sum(g xhat)/M.
      const double k = static_cast<double>(wd[c]) * r;
      const T kt = static_cast<T>(k), at = static_cast<T>(sum_g / static_cast<double>(M)),
              bt = static_cast<T>(k * r * sum_gxhat / static_cast<double>(M)), mt = static_cast<T>(mean);
      for (int64_t n = 0; n < l.N; ++n) {
        const int64_t base = (n * l.C + c) * l.S;
        for (int64_t i = 0; i < l.S; ++i) dxd[base + i] = kt * (gd[base + i] - at) - (xd[base + i] - mt) * bt;
      }
    }
  }
}

}  // namespace

void BatchNormTrain::eval_cpu(const std::vector<Tensor>& in, Tensor& out) {
  require(in.size() == 3, "batch_norm", "training expects inputs (x, weight, bias)");
  cpu::dispatch_float(out.dtype(), "batch_norm", [&](auto t) {
    batch_norm_train<decltype(t)>(in[0], in[1], in[2], out, momentum, eps, running_mean, running_var);
  });
}

void BatchNormEval::eval_cpu(const std::vector<Tensor>& in, Tensor& out) {
  require(in.size() == 5, "batch_norm",
          "inference expects inputs (x, weight, bias, running_mean, running_var)");
  cpu::dispatch_float(out.dtype(), "batch_norm", [&](auto t) { batch_norm_eval<decltype(t)>(in, out, eps); });
}

}  // namespace xgan

namespace xgan::cpu {

void batch_norm_train_backward(const Tensor& x, const Tensor& g, const Tensor& gamma, double eps, Tensor* dx,
                               Tensor* dgamma, Tensor* dbeta) {
  dispatch_float(x.dtype(), "batch_norm backward", [&](auto t) {
    xgan::batch_norm_train_backward<decltype(t)>(x, g, gamma, eps, dx, dgamma, dbeta);
  });
  for (Tensor* t : {dx, dgamma, dbeta})
    if (t) t->bump_version();
}

}  // namespace xgan::cpu
