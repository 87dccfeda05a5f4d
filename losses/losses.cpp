// The DCGAN, WGAN-GP and RaGAN objectives (losses/losses.h), written as the authors' train.py
// computes them: BCE against full label tensors of 1 / 0, means over the batch, and the penalty
// on the per-sample L2 norm of the flattened input gradient.
// Tested by tests/test_step.cpp (one training iteration per loss against PyTorch).
#include "losses/losses.h"

#include <stdexcept>

#include "engine/ops.h"

namespace xgan {

LossKind parse_loss(const std::string& name) {
  if (name == "dcgan") return LossKind::dcgan;
  if (name == "wgan-gp") return LossKind::wgan_gp;
  if (name == "ragan") return LossKind::ragan;
  throw std::invalid_argument("unknown loss '" + name + "' (expected dcgan, wgan-gp or ragan)");
}

const char* loss_name(LossKind k) {
  switch (k) {
    case LossKind::dcgan:
      return "dcgan";
    case LossKind::wgan_gp:
      return "wgan-gp";
    case LossKind::ragan:
      return "ragan";
  }
  return "?";
}

namespace {

void check_scores(const char* what, const Tensor& y) {
  if (!y.defined()) throw std::invalid_argument(std::string(what) + " is undefined");
  if (y.dim() != 1 || y.numel() == 0)
    throw std::invalid_argument(std::string(what) + " must be one score per image, [N], got " + y.str());
}

// The label tensors of train.py: torch.full((N,), 1.0 or 0.0).
Tensor labels(const Tensor& like, double value) {
  return full(like.shape(), value, like.dtype(), like.device());
}

// (BCEwL(a - mean(b), ta) + BCEwL(b - mean(a), tb)) / 2: the relativistic average pair.
Tensor relativistic_pair(const Tensor& a, const Tensor& b, double ta, double tb) {
  Tensor first = binary_cross_entropy_with_logits(a - mean(b), labels(a, ta));
  Tensor second = binary_cross_entropy_with_logits(b - mean(a), labels(b, tb));
  return (first + second) / 2.0;
}

}  // namespace

Tensor discriminator_loss(LossKind k, const Tensor& y_r, const Tensor& y_f) {
  check_scores("discriminator_loss: y_r", y_r);
  check_scores("discriminator_loss: y_f", y_f);
  switch (k) {
    case LossKind::dcgan:
      return binary_cross_entropy(y_r, labels(y_r, 1.0)) + binary_cross_entropy(y_f, labels(y_f, 0.0));
    case LossKind::wgan_gp:
      return -mean(y_r) + mean(y_f);
    case LossKind::ragan:
      return relativistic_pair(y_r, y_f, 1.0, 0.0);
  }
  throw std::logic_error("discriminator_loss: unknown loss");
}

Tensor generator_loss(LossKind k, const Tensor& y_r, const Tensor& y_f) {
  check_scores("generator_loss: y_f", y_f);
  switch (k) {
    case LossKind::dcgan:
      return binary_cross_entropy(y_f, labels(y_f, 1.0));
    case LossKind::wgan_gp:
      return -mean(y_f);
    case LossKind::ragan:
      check_scores("generator_loss (ragan): y_r", y_r);
      return relativistic_pair(y_r, y_f, 0.0, 1.0);
  }
  throw std::logic_error("generator_loss: unknown loss");
}

Tensor gradient_penalty(const Tensor& grad_xhat) {
  if (!grad_xhat.defined() || grad_xhat.dim() < 2 || grad_xhat.numel() == 0)
    throw std::invalid_argument("gradient_penalty: expected per-sample gradients [N, ...], got " +
                                grad_xhat.str());
  // gradient.view(N, -1).norm(2, dim=1), then mean((norm - 1)^2).
  Tensor flat = reshape(grad_xhat, {grad_xhat.size(0), -1});
  Tensor norm = sqrt(sum(square(flat), {1}));
  return mean(square(norm - 1.0));
}

}  // namespace xgan
