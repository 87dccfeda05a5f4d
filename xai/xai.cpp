// X-GAN's explanations of the discriminator (saliency, input x gradient, DeepLIFT's rescale rule)
// and the educational guidance of the generator's gradient. DeepLIFT is a custom backward pass of
// D's own graph (a VjpOverrideGuard swapping each nonlinearity's derivative for its multiplier),
// not a second network. Tested against PyTorch in tests/test_xai.cpp (tests/golden/xai_reference.py).
#include "xai/xai.h"

#include <cmath>
#include <stdexcept>
#include <unordered_set>
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

// [x; zeros] along the batch (x needs no history here); on x's device, like everything below.
Tensor with_zero_baseline(const Tensor& x) {
  NoGradGuard ng;
  return concat({x.detach(), zeros_like(x)}, 0);
}

// out = G * the rescale multiplier of one nonlinearity over the 2N batch [x; x0] (I its input):
// (f(a) - f(b)) / (a - b) for both halves, or f'(own half) where |a - b| < 1e-10, as captum's
// torch.where over the duplicated grad_input does. One fused kernel on the tensors' device
// (kernels/cpu/deeplift.cpp, kernels/cuda/deeplift.cu).
Tensor rescale(const Tensor& I, const Tensor& G, DeepLiftNonlinearity f, double slope) {
  Tensor out = empty(I.shape(), I.dtype(), I.device());
  if (I.device().is_cuda())
    cuda::deeplift_rescale(I, G, f, slope, out);
  else
    cpu::deeplift_rescale(I, G, f, slope, out);
  return out;
}

// DeepLIFT's override: for LeakyReLU (ReLU), Sigmoid and Tanh over a 2N batch, G * multiplier;
// every other op keeps its own vjp (conv and batch norm are linear in eval mode; in captum mode
// batch norm's batch statistics are differentiated as captum's autograd did).
bool deeplift_rule(const Op& op, const std::vector<Tensor>& inputs, const Tensor& G,
                   const std::vector<bool>& need, std::vector<Tensor>& grads) {
  DeepLiftNonlinearity f;
  double slope = 0.0;
  switch (op.id()) {
    case OpId::LeakyRelu:
      f = DeepLiftNonlinearity::leaky_relu;
      slope = static_cast<const LeakyRelu&>(op).slope;
      break;
    case OpId::Sigmoid:
      f = DeepLiftNonlinearity::sigmoid;
      break;
    case OpId::Tanh:
      f = DeepLiftNonlinearity::tanh;
      break;
    default:
      return false;
  }
  const Tensor& in = inputs[0];
  if (in.dim() < 1 || in.size(0) % 2 != 0) return false;
  grads.assign(inputs.size(), Tensor());
  if (!need[0]) return true;
  const Tensor I = in.detach();
  if (GradMode::enabled() && G.requires_grad()) {
    // Recording a graph through the map (create_graph): the multiplier is a constant, G * M.
    Tensor M;
    {
      NoGradGuard ng;
      M = rescale(I, ones_like(I), f, slope);  // 1 * m == m exactly
    }
    grads[0] = G * M;
  } else {
    grads[0] = rescale(I, G.detach(), f, slope);
  }
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
  return x.detach() * slice(g, 0, 0, n);  // (x - x0) * multiplier, x0 = 0
}

}  // namespace

namespace {
// Runs the forward of every train-mode batch norm in y's graph once more on its recorded inputs,
// into a scratch output: the kernel's only lasting effect is the running-statistics update, the
// same one a second forward of D on the same batch would make.
void replay_batch_norm_updates(const Tensor& y) {
  std::vector<std::shared_ptr<Op>> stack;
  std::unordered_set<const Op*> seen;
  if (y.grad_fn()) stack.push_back(y.grad_fn());
  while (!stack.empty()) {
    std::shared_ptr<Op> op = stack.back();
    stack.pop_back();
    if (!seen.insert(op.get()).second) continue;
    if (op->id() == OpId::BatchNormTrain) {
      const Tensor& in = op->inputs[0];
      Tensor scratch = empty(in.shape(), in.dtype(), in.device());
      if (in.device().is_cpu()) {
        op->eval_cpu(op->inputs, scratch);
      } else {
        op->eval_cuda(op->inputs, scratch);
      }
    }
    for (const Tensor& t : op->inputs)
      if (t.defined() && t.grad_fn()) stack.push_back(t.grad_fn());
  }
}
}  // namespace

Tensor explain_recorded(GanDiscriminator& D, const Tensor& y, const Tensor& x_leaf, XaiMethod method,
                        const Tensor& sum_grad) {
  if (method != XaiMethod::saliency && method != XaiMethod::inputxgrad)
    throw std::invalid_argument(std::string("explain_recorded: needs saliency or inputxgrad, got ") +
                                xai_method_name(method));
  if (!y.grad_fn() || !x_leaf.requires_grad())
    throw std::invalid_argument("explain_recorded: y must be recorded from the leaf x");
  if (sum_grad.defined() && sum_grad.shape() != x_leaf.shape())
    throw std::invalid_argument("explain_recorded: sum_grad " + sum_grad.str() + " does not match x " +
                                x_leaf.str());
  EnableGradGuard eg;
  Tensor g = sum_grad.defined() ? sum_grad.detach() : grad({sum(y)}, {x_leaf})[0].detach();
  replay_batch_norm_updates(y);
  // The module counts a train-mode forward per batch-norm layer (a host-side counter, no op).
  for (const auto& b : D.buffers()) {
    if (b.name.size() < 20 || b.name.compare(b.name.size() - 20, 20, ".num_batches_tracked") != 0) continue;
    Tensor count = b.tensor;
    ++count.data<int64_t>()[0];
    count.bump_version();
  }
  NoGradGuard ng;
  return method == XaiMethod::saliency ? abs(g) : x_leaf.detach() * g;
}

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
