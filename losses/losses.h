// The three GAN objectives of the paper, as in the authors' code (see DESIGN.md, "Losses").
// y_r = D(real), y_f = D(fake): per-image scores ([N]); after the sigmoid for DCGAN, raw otherwise.
#pragma once
#include <string>

#include "engine/tensor.h"

namespace xgan {

enum class LossKind { dcgan, wgan_gp, ragan };
LossKind parse_loss(const std::string& name);  // "dcgan" | "wgan-gp" | "ragan"; clear error otherwise
const char* loss_name(LossKind k);
inline bool loss_uses_sigmoid(LossKind k) { return k == LossKind::dcgan; }

// DCGAN: BCE(y_r, 1) + BCE(y_f, 0).   WGAN-GP: -mean(y_r) + mean(y_f) (the Wasserstein part).
// RaGAN: (BCEwL(y_r - mean(y_f), 1) + BCEwL(y_f - mean(y_r), 0)) / 2.
Tensor discriminator_loss(LossKind k, const Tensor& y_r, const Tensor& y_f);
// DCGAN: BCE(y_f, 1).   WGAN-GP: -mean(y_f).
// RaGAN: (BCEwL(y_r - mean(y_f), 0) + BCEwL(y_f - mean(y_r), 1)) / 2 (y_r may be undefined for others).
Tensor generator_loss(LossKind k, const Tensor& y_r, const Tensor& y_f);
// mean((||g_i||_2 - 1)^2) over the per-sample gradients g = dD(x_hat)/dx_hat, [N, ...].
// Requires `grad_xhat` from grad(..., create_graph=true) so the penalty can be differentiated.
Tensor gradient_penalty(const Tensor& grad_xhat);

}  // namespace xgan
