// One training iteration (train/step.h): the D step, then the G step, in the authors' order, with
// every intermediate kept for `xgan step` and the trainer's logs.
// Tested by tests/test_step.cpp against tests/golden/step_reference.py (PyTorch 1.13).
#include "train/step.h"

#include <optional>
#include <stdexcept>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/ops.h"

namespace xgan {

namespace {

// Brings an input to the models' dtype and device, after checking it is there and its shape.
Tensor prepare(const Tensor& t, const char* name, const Shape& want, const Module& like) {
  if (!t.defined()) throw std::invalid_argument(std::string("train_step: input '") + name + "' is missing");
  if (t.shape() != want)
    throw std::invalid_argument(std::string("train_step: input '") + name + "' must be " + shape_str(want) +
                                ", got " + t.str());
  return t.to(like.device()).to(like.dtype()).detach();
}

std::map<std::string, Tensor> snapshot_grads(const Module& m) {
  std::map<std::string, Tensor> g;
  for (const auto& p : m.parameters()) {
    const Tensor grad = p.tensor.grad();
    // Every parameter reaches the loss, so a missing gradient would be a bug upstream; record zeros
    // rather than hide the entry.
    g[p.name] = grad.defined() ? grad.clone() : zeros_like(p.tensor);
  }
  return g;
}

}  // namespace

StepRecord train_step(GanGenerator& G, GanDiscriminator& D, Adam& opt_G, Adam& opt_D, const StepInputs& in,
                      const StepOptions& opt) {
  const GanConfig& gc = G.config();
  const GanConfig& dc = D.config();
  if (gc.image_size != dc.image_size || gc.channels != dc.channels)
    throw std::invalid_argument("train_step: G makes " + std::to_string(gc.channels) + "x" +
                                std::to_string(gc.image_size) + "x" + std::to_string(gc.image_size) +
                                " images but D takes " + std::to_string(dc.channels) + "x" +
                                std::to_string(dc.image_size) + "x" + std::to_string(dc.image_size));
  if (D.has_sigmoid() != loss_uses_sigmoid(opt.loss))
    throw std::invalid_argument(std::string("train_step: loss ") + loss_name(opt.loss) +
                                (loss_uses_sigmoid(opt.loss) ? " needs a D ending in a sigmoid"
                                                             : " needs a D without the final sigmoid"));
  if (G.dtype() != D.dtype() || G.device() != D.device())
    throw std::invalid_argument("train_step: G and D differ in dtype or device");
  if (!in.real.defined() || in.real.dim() != 4)
    throw std::invalid_argument("train_step: real must be [N, C, H, W], got " + in.real.str());
  const int64_t n = in.real.size(0), c = gc.channels, s = gc.image_size, z = gc.z_dim;
  const Tensor real = prepare(in.real, "real", {n, c, s, s}, G);
  const Tensor z_d = prepare(in.z_d, "z_d", {n, z, 1, 1}, G);
  const Tensor z_g = prepare(in.z_g, "z_g", {n, z, 1, 1}, G);
  const bool wgan = opt.loss == LossKind::wgan_gp;
  const Tensor alpha = wgan ? prepare(in.alpha, "alpha", {n, 1, 1, 1}, G) : Tensor();

  StepRecord rec;

  // ---- D step. The fake batch only feeds D, so G records no graph; its BN statistics still move.
  opt_D.zero_grad();  // drops anything left from the previous G step
  // No weight changes until the optimiser steps: kernels may reuse what they derive from them.
  std::optional<FrozenParameters> frozen;
  frozen.emplace();
  Tensor fake_d;
  {
    NoGradGuard no_grad;
    fake_d = G.forward(z_d, true);
  }
  Tensor y_r = D.forward(real, true);
  Tensor y_f = D.forward(fake_d, true);
  rec.loss_D = discriminator_loss(opt.loss, y_r, y_f);
  Tensor total_D = rec.loss_D;
  if (wgan) {
    // x_hat = a real + (1 - a) fake, a leaf: the penalty differentiates D's input gradient.
    Tensor x_hat = (real * alpha + fake_d * (1.0 - alpha)).detach();
    x_hat.set_requires_grad(true);
    Tensor y_hat = D.forward(x_hat, true);
    Tensor g = grad({y_hat}, {x_hat}, {ones_like(y_hat)}, /*create_graph=*/true)[0];
    rec.gp = gradient_penalty(g);
    total_D = total_D + rec.gp * opt.gp_lambda;
  }
  backward(total_D);
  if (opt.record_grads) rec.grad_D = snapshot_grads(D);
  frozen.reset();
  opt_D.step();
  rec.loss_D = rec.loss_D.detach();
  if (rec.gp.defined()) rec.gp = rec.gp.detach();

  // ---- G step. dL_G/d(fake) first (where explanations will weigh it), then back through G.
  opt_G.zero_grad();
  frozen.emplace();
  Tensor fake = G.forward(z_g, true);
  Tensor fake_leaf = fake.detach();
  fake_leaf.set_requires_grad(true);
  Tensor y_f_g = D.forward(fake_leaf, true);
  Tensor y_r_g = opt.loss == LossKind::ragan ? D.forward(real, true) : Tensor();
  Tensor loss_G = generator_loss(opt.loss, y_r_g, y_f_g);
  rec.dLdimg = grad({loss_G}, {fake_leaf})[0];
  rec.dLdimg_guided = rec.dLdimg;
  if (opt.xai != XaiMethod::none) {
    // After the loss's D forwards, as the authors' order has it: with captum BN this forward
    // moves D's running statistics too. loss_G stays the plain loss; only what flows into G changes.
    // Saliency and input x gradient in captum mode reuse D's forward just above (same batch, same
    // weights, train mode): the same map and running statistics, one forward of D fewer.
    const bool reuse = opt.xai_bn == XaiBatchNorm::captum &&
                       (opt.xai == XaiMethod::saliency || opt.xai == XaiMethod::inputxgrad);
    // WGAN-GP's loss is -mean(y): its gradient is already the explainers' gradient of sum(y),
    // scaled by -1/n, which is exact (no rounding in any op of the backward) when n is a power of two.
    Tensor sum_grad;
    if (reuse && wgan && (n & (n - 1)) == 0) sum_grad = rec.dLdimg * -static_cast<double>(n);
    rec.xai_raw = reuse ? explain_recorded(D, y_f_g, fake_leaf, opt.xai, sum_grad)
                        : explain(D, fake.detach(), opt.xai, opt.xai_bn);
    GuidanceResult r = educational_grad(rec.xai_raw, rec.dLdimg, opt.xai_norm, opt.guidance);
    rec.xai_E = r.E;
    rec.dLdimg_guided = r.guided;
  }
  backward({fake}, {rec.dLdimg_guided});
  if (opt.record_grads) rec.grad_G = snapshot_grads(G);
  frozen.reset();
  opt_G.step();
  rec.loss_G = loss_G.detach();
  rec.fake = fake.detach();
  return rec;
}

}  // namespace xgan
