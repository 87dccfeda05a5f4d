// X-GAN's explanations of the discriminator (saliency, input x gradient, DeepLIFT's rescale rule)
// and the educational guidance of the generator's gradient. DeepLIFT is a custom backward pass of
// D's own graph (a VjpOverrideGuard swapping each nonlinearity's derivative for its multiplier),
// not a second network. Tested against PyTorch in tests/test_xai.cpp (tests/golden/xai_reference.py).
#include "xai/xai.h"

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/ops.h"
#include "engine/primitives.h"

namespace xgan {

// ---------------------------------------------------------------- names

namespace {
[[noreturn]] void bad_value(const char* what, const std::string& s, const char* valid) {
  throw std::invalid_argument("unknown " + std::string(what) + " '" + s + "' (valid: " + valid + ")");
}
}  // namespace

XaiMethod parse_xai_method(const std::string& s) {
  if (s == "none") return XaiMethod::none;
  if (s == "saliency") return XaiMethod::saliency;
  if (s == "inputxgrad") return XaiMethod::inputxgrad;
  if (s == "deeplift") return XaiMethod::deeplift;
  bad_value("explanation method", s, "none, saliency, inputxgrad, deeplift");
}

XaiBatchNorm parse_xai_bn(const std::string& s) {
  if (s == "eval") return XaiBatchNorm::eval;
  if (s == "captum") return XaiBatchNorm::captum;
  bad_value("explanation batch-norm mode", s, "eval, captum");
}

XaiNorm parse_xai_norm(const std::string& s) {
  if (s == "batch") return XaiNorm::batch;
  if (s == "sample") return XaiNorm::sample;
  bad_value("explanation normalisation", s, "batch, sample");
}

Guidance parse_guidance(const std::string& s) {
  if (s == "elementwise") return Guidance::elementwise;
  if (s == "as-coded") return Guidance::as_coded;
  bad_value("guidance mode", s, "elementwise, as-coded");
}

const char* xai_method_name(XaiMethod m) {
  switch (m) {
    case XaiMethod::none:
      return "none";
    case XaiMethod::saliency:
      return "saliency";
    case XaiMethod::inputxgrad:
      return "inputxgrad";
    case XaiMethod::deeplift:
      return "deeplift";
  }
  return "?";
}

// ---------------------------------------------------------------- explanations

namespace {

// The explainers differentiate D even when the caller runs under NoGradGuard.
class EnableGradGuard {
 public:
  EnableGradGuard() : prev_(GradMode::enabled()) { GradMode::set_enabled(true); }
  ~EnableGradGuard() { GradMode::set_enabled(prev_); }
  EnableGradGuard(const EnableGradGuard&) = delete;
  EnableGradGuard& operator=(const EnableGradGuard&) = delete;

 private:
  bool prev_;
};

Tensor fresh_leaf(const Tensor& x) {
  Tensor t = x.detach().clone();
  t.set_requires_grad(true);
  return t;
}

// dT/dx for T = sum_i D(x_i); x is a fresh leaf so nothing of the caller's graph is touched.
Tensor input_gradient(GanDiscriminator& D, const Tensor& x, bool train) {
  Tensor xl = fresh_leaf(x);
  Tensor T = sum(D.forward(xl, train));
  return grad({T}, {xl})[0].detach();
}

// [x; zeros] along the batch, built on the host side of the storage (x needs no history here).
Tensor with_zero_baseline(const Tensor& x) {
  Shape s = x.shape();
  s[0] *= 2;
  Tensor out = zeros(s, x.dtype(), x.device());
  Tensor host = x.detach().to(kCPU);
  if (out.device().is_cpu()) {
    std::memcpy(out.raw(), host.raw(), host.nbytes());
  } else {
    Tensor o = zeros(s, x.dtype(), kCPU);
    std::memcpy(o.raw(), host.raw(), host.nbytes());
    out = o.to(x.device());
  }
  return out;
}

// The first `rows` rows of t (a copy).
Tensor first_rows(const Tensor& t, int64_t rows) {
  Shape s = t.shape();
  s[0] = rows;
  Tensor host = t.detach().to(kCPU);
  Tensor out = empty(s, t.dtype(), kCPU);
  std::memcpy(out.raw(), host.raw(), out.nbytes());
  return out.to(t.device());
}

// The rescale multiplier of one nonlinearity over the 2N batch [x; x0] (I its input, fI = f(I),
// dfI = f'(I)): (f(a) - f(b)) / (a - b) for both halves, or f'(own half) where |a - b| < 1e-10,
// as captum's torch.where over the duplicated grad_input does.
template <class T>
void rescale_multiplier(const T* I, const T* fI, const T* dfI, T* M, int64_t half) {
  for (int64_t j = 0; j < half; ++j) {
    const T din = I[j] - I[j + half];
    if (std::abs(din) >= T(1e-10)) {
      const T m = (fI[j] - fI[j + half]) / din;
      M[j] = m;
      M[j + half] = m;
    } else {
      M[j] = dfI[j];
      M[j + half] = dfI[j + half];
    }
  }
}

// DeepLIFT's override: for LeakyReLU (ReLU), Sigmoid and Tanh over a 2N batch, G * multiplier;
// every other op keeps its own vjp (conv and batch norm are linear in eval mode; in captum mode
// batch norm's batch statistics are differentiated as captum's autograd did).
bool deeplift_rule(const Op& op, const std::vector<Tensor>& inputs, const Tensor& G,
                   const std::vector<bool>& need, std::vector<Tensor>& grads) {
  const OpId id = op.id();
  if (id != OpId::LeakyRelu && id != OpId::Sigmoid && id != OpId::Tanh) return false;
  const Tensor& in = inputs[0];
  if (in.dim() < 1 || in.size(0) % 2 != 0) return false;
  Tensor I = in.detach(), fI, dfI;
  {
    NoGradGuard ng;
    if (id == OpId::LeakyRelu) {
      const double slope = static_cast<const LeakyRelu&>(op).slope;
      fI = leaky_relu(I, slope);
      dfI = leaky_relu_grad(I, ones_like(I), slope);
    } else if (id == OpId::Sigmoid) {
      fI = sigmoid(I);
      dfI = fI * (1.0 - fI);
    } else {
      fI = tanh(I);
      dfI = 1.0 - fI * fI;
    }
  }
  Tensor hI = I.to(kCPU), hf = fI.to(kCPU), hd = dfI.to(kCPU);
  Tensor M = empty(I.shape(), I.dtype(), kCPU);
  const int64_t half = I.numel() / 2;
  if (I.dtype() == DType::f64)
    rescale_multiplier(hI.data<double>(), hf.data<double>(), hd.data<double>(), M.data<double>(), half);
  else
    rescale_multiplier(hI.data<float>(), hf.data<float>(), hd.data<float>(), M.data<float>(), half);
  grads.assign(inputs.size(), Tensor());
  if (need[0]) grads[0] = G * M.to(I.device());  // linear in G: first-order maps only
  return true;
}

Tensor explain_deeplift(GanDiscriminator& D, const Tensor& x, bool train) {
  const int64_t n = x.size(0);
  Tensor X2 = with_zero_baseline(x);
  X2.set_requires_grad(true);
  Tensor T = sum(D.forward(X2, train));
  Tensor g;
  {
    VjpOverrideGuard guard(deeplift_rule);
    g = grad({T}, {X2})[0].detach();
  }
  NoGradGuard ng;
  return x.detach() * first_rows(g, n);  // (x - x0) * multiplier, x0 = 0
}

}  // namespace

Tensor explain(GanDiscriminator& D, const Tensor& x, XaiMethod method, XaiBatchNorm bn) {
  if (x.dim() != 4) throw std::invalid_argument("explain: images must be [N, C, H, W], got " + x.str());
  const bool train = bn == XaiBatchNorm::captum;
  EnableGradGuard eg;
  switch (method) {
    case XaiMethod::none:
      throw std::invalid_argument("explain: method 'none' has no explanation map");
    case XaiMethod::saliency: {
      Tensor g = input_gradient(D, x, train);
      NoGradGuard ng;
      return abs(g);
    }
    case XaiMethod::inputxgrad: {
      Tensor g = input_gradient(D, x, train);
      NoGradGuard ng;
      return x.detach() * g;
    }
    case XaiMethod::deeplift:
      return explain_deeplift(D, x, train);
  }
  throw std::invalid_argument("explain: unknown method");
}

// ---------------------------------------------------------------- educational guidance

GuidanceResult educational_grad(const Tensor& raw_map, const Tensor& dLdimg, XaiNorm norm, Guidance mode) {
  if (raw_map.shape() != dLdimg.shape())
    throw std::invalid_argument("educational_grad: map " + raw_map.str() + " and gradient " + dLdimg.str() +
                                " differ in shape");
  if (raw_map.dtype() != dLdimg.dtype() || raw_map.device() != dLdimg.device())
    throw std::invalid_argument("educational_grad: map " + raw_map.str() + " and gradient " + dLdimg.str() +
                                " differ in dtype or device");
  GuidanceResult r{empty(raw_map.shape(), raw_map.dtype(), raw_map.device()),
                   empty(raw_map.shape(), raw_map.dtype(), raw_map.device())};
  const bool per_sample = norm == XaiNorm::sample, as_coded = mode == Guidance::as_coded;
  if (raw_map.device().is_cuda())
    cuda::xai_guidance(raw_map, dLdimg, per_sample, as_coded, r.E, r.guided);
  else
    cpu::xai_guidance(raw_map, dLdimg, per_sample, as_coded, r.E, r.guided);
  return r;
}

}  // namespace xgan
