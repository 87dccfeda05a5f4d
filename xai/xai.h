// Explanations of the discriminator (X-GAN's XAI maps) and the educational guidance of the
// generator step. See DESIGN.md "Explanations and educational training" and docs/xai.md.
//   saliency:    |dT/dx|            input x gradient: x * dT/dx
//   deeplift:    rescale rule against a zero baseline, a custom backward pass over the same
//                graph (engine/autograd.h VjpOverrideGuard): each LeakyReLU/ReLU/Sigmoid/Tanh
//                uses (f(x) - f(x0)) / (x - x0) instead of f'(x), or f'(x) where |x - x0| < 1e-10
// with T = sum_i D(x_i) (D's output as built: after the sigmoid for DCGAN, raw otherwise).
#pragma once
#include <string>

#include "engine/tensor.h"
#include "models/gan.h"

namespace xgan {

enum class XaiMethod { none, saliency, inputxgrad, deeplift };
// How D's batch norm behaves while explaining:
//   eval:   running statistics, per sample; nothing is updated (DeepLIFT completeness holds)
//   captum: train mode, as the authors' captum call ran it: batch statistics over the N images
//           (saliency, input x gradient) or over the 2N batch [x; x0] (DeepLIFT), and D's running
//           statistics are updated by that forward.
enum class XaiBatchNorm { eval, captum };
enum class XaiNorm { batch, sample };           // min-max over the whole batch / over C,H,W of each sample
enum class Guidance { elementwise, as_coded };  // E (.) g  /  (sum E) * g

XaiMethod parse_xai_method(const std::string& s);  // none|saliency|inputxgrad|deeplift
XaiBatchNorm parse_xai_bn(const std::string& s);   // eval|captum
XaiNorm parse_xai_norm(const std::string& s);      // batch|sample
Guidance parse_guidance(const std::string& s);     // elementwise|as-coded
const char* xai_method_name(XaiMethod m);

// The raw explanation maps of D at images x [N, C, H, W] (same shape, no history). Requires
// method != none. With XaiBatchNorm::captum, D's running statistics change (see above).
Tensor explain(GanDiscriminator& D, const Tensor& x, XaiMethod method, XaiBatchNorm bn);

// Saliency or input x gradient from a forward already on the tape: y = D(x_leaf) in train mode
// (the G step's own loss forward on the fakes). With captum batch norm, explain() would run that
// same forward again: the same values, so the same gradient, plus one more update of each batch
// norm's running statistics. Here the map comes from the recorded graph and that update is
// replayed from the recorded batch-norm ops (and D's num_batches_tracked counted), so the result,
// maps and buffers, equals explain(D, x, method, captum) with one forward of D fewer. Requires
// method saliency or inputxgrad, and y recorded by D.forward(x_leaf, true).
// `sum_grad`, when given, is the gradient of sum(y) in x_leaf, which the caller already has: then
// no backward runs at all. WGAN-GP's generator loss -mean(y) has dL/dx = -(1/N) times it, and
// with N a power of two that scaling is exact in every op of the backward, so -N dL/dx is that
// gradient bit for bit (train/step.cpp takes this path).
Tensor explain_recorded(GanDiscriminator& D, const Tensor& y, const Tensor& x_leaf, XaiMethod method,
                        const Tensor& sum_grad = Tensor());

// The normalise-and-weight step, one fused kernel (engine/backend.h xai_guidance):
//   E = 1 + (M - min) / (max - min), min/max over the batch or per sample; where max == min the
//   map carries no information and E = 1 (no reweighting);
//   guided = E (.) g (elementwise) or (sum of E over the batch) * g (as-coded).
struct GuidanceResult {
  Tensor E;       // [N, C, H, W] in [1, 2]
  Tensor guided;  // what is back-propagated into G
};
GuidanceResult educational_grad(const Tensor& raw_map, const Tensor& dLdimg, XaiNorm norm, Guidance mode);

}  // namespace xgan
