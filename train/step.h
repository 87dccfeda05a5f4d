// One training iteration of the paper: a D step then a G step, with every intermediate kept so
// `xgan step` can write them and the trainer can log them. The order of D's train-mode forwards
// (and so of its batch-norm running-statistics updates) follows the authors' code exactly:
//   D step: G(z_d) [train], D(real), D(fake), then D(x_hat) for WGAN-GP;
//   G step: G(z_g) [train], D(fake) (then D(real) for RaGAN).
// The G step computes dLdimg = dL_G/d(fake) first; with an explainer, D is explained on the fakes
// (after the loss's D forwards), the map normalised and dLdimg weighted (xai/xai.h), and that
// is back-propagated through G.
#pragma once
#include <map>
#include <string>

#include "engine/optim.h"
#include "losses/losses.h"
#include "models/gan.h"
#include "xai/xai.h"

namespace xgan {

struct StepInputs {
  Tensor real;   // [N, C, s, s] in [-1, 1]
  Tensor z_d;    // [N, z, 1, 1] noise of the D step
  Tensor z_g;    // [N, z, 1, 1] noise of the G step
  Tensor alpha;  // [N, 1, 1, 1] ~ U(0, 1), WGAN-GP only
};

struct StepOptions {
  LossKind loss = LossKind::dcgan;
  double gp_lambda = 10.0;
  // X-GAN: explain D on the G step's fakes and weight dLdimg with the normalised map.
  XaiMethod xai = XaiMethod::none;
  Guidance guidance = Guidance::elementwise;   // the paper's text; as_coded = the authors' code
  XaiBatchNorm xai_bn = XaiBatchNorm::captum;  // what the authors' captum call did
  XaiNorm xai_norm = XaiNorm::batch;           // the authors' min-max over the whole batch
  // Copy every gradient into StepRecord::grad_D / grad_G (for `xgan step` and the tests). The
  // trainer and the benchmark turn it off: the copies cost memory traffic and nobody reads them.
  bool record_grads = true;
};

struct StepRecord {
  Tensor loss_D;                         // [] (WGAN-GP: the Wasserstein part, without lambda * gp)
  Tensor loss_G;                         // []
  Tensor gp;                             // [] unweighted penalty (WGAN-GP only)
  Tensor fake;                           // G(z_g): the G step's D input
  Tensor dLdimg;                         // dL_G / d fake
  Tensor xai_raw;                        // the explanation map before normalisation (xai != none)
  Tensor xai_E;                          // after normalisation to [1, 2]
  Tensor dLdimg_guided;                  // what was back-propagated into G (= dLdimg without xai)
  std::map<std::string, Tensor> grad_D;  // by parameter name: what the D optimiser stepped with
  std::map<std::string, Tensor> grad_G;
};

// Runs one iteration, updating G, D (weights and running statistics) and both optimisers.
// Requires optimisers built over G.parameter_tensors() / D.parameter_tensors().
StepRecord train_step(GanGenerator& G, GanDiscriminator& D, Adam& opt_G, Adam& opt_D, const StepInputs& in,
                      const StepOptions& opt);

}  // namespace xgan
