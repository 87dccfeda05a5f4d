// One full training iteration (train/step.h) on the CPU and on the GPU from the same weights,
// batch and noise, for every loss x explainer: losses, the image gradients, the explanation maps,
// the gradients each optimiser stepped with, and the updated weights and running statistics must
// agree. Needs a GPU: exits 77 (skipped) elsewhere (tests/cuda_main.cpp).
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>

#include "engine/backend.h"
#include "engine/ops.h"
#include "engine/rng.h"
#include "train/step.h"

using namespace xgan;

namespace {

const Device kGPU{DeviceType::cuda, 0};

double normalised_error(const Tensor& got, const Tensor& want) {
  const std::vector<double> a = got.to(kCPU).to_vector(), b = want.to(kCPU).to_vector();
  double err = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return std::numeric_limits<double>::infinity();
    err = std::max(err, std::abs(a[i] - b[i]));
    scale = std::max(scale, std::abs(b[i]));
  }
  return err / std::max(scale, 1e-30);
}

void check_close(const std::string& what, const Tensor& gpu, const Tensor& cpu, double tol) {
  INFO(what << ": gpu " << (gpu.defined() ? gpu.str() : "undefined") << ", cpu "
            << (cpu.defined() ? cpu.str() : "undefined"));
  REQUIRE(gpu.defined() == cpu.defined());
  if (!cpu.defined()) return;
  REQUIRE(gpu.shape() == cpu.shape());
  const double e = normalised_error(gpu, cpu);
  INFO("normalised error " << e << ", allowed " << tol);
  CHECK(e <= tol);
}

// Tolerances (normalised: max|gpu - cpu| / max|cpu|).
// Losses and image gradients: a few float32 layers (cuDNN vs Eigen summation order, batch norm's
// statistics) each add ~1e-6; the WGAN-GP penalty and DeepLIFT go through a second backward.
constexpr double kLossTol = 1e-4;
// Gradients of the weights: the same chains once more (the weight-gradient convolutions sum over
// the batch and the map); batch norm's backward subtracts means, which cancels leading digits.
constexpr double kGradTol = 1e-3;
// Weights after one Adam step: each moves by lr * m / (sqrt(v) + eps), about lr = 1e-4 whatever
// the gradient's size, so a gradient near zero whose sign rounding flips moves its weight by up
// to 2 lr the other way. Weights are N(0, 0.02) (max ~0.08): 2 lr / 0.08 = 2.5e-3.
constexpr double kWeightTol = 3e-3;
// Running statistics: momentum 0.1 times batch statistics computed in double on both devices.
constexpr double kStatTol = 1e-4;

}  // namespace

TEST_CASE("one training step on the GPU matches the CPU for every loss and explainer", "[cuda]") {
  const GanConfig gc{16, 8, 1, 16};  // 16x16 images, width 8, 1 channel, z 16: every layer kind, small
  const int64_t n = 8;
  for (LossKind loss : {LossKind::dcgan, LossKind::wgan_gp, LossKind::ragan}) {
    for (XaiMethod xai : {XaiMethod::none, XaiMethod::saliency, XaiMethod::inputxgrad, XaiMethod::deeplift}) {
      const std::string tag = std::string(loss_name(loss)) + " / " + xai_method_name(xai);
      SECTION(tag) {
        const bool sig = loss_uses_sigmoid(loss);
        GanGenerator Gc(gc), Gg(gc);
        GanDiscriminator Dc(gc, sig), Dg(gc, sig);
        Generator init(7);
        Gc.init_dcgan(init);
        Dc.init_dcgan(init);
        Gg.load_state_dict(Gc.state_dict());
        Dg.load_state_dict(Dc.state_dict());
        Gg.to(DType::f32, kGPU);
        Dg.to(DType::f32, kGPU);
        const AdamConfig adam{1e-4, 0.5, 0.999, 1e-8, 0.0};
        Adam oGc(Gc.parameter_tensors(), adam), oDc(Dc.parameter_tensors(), adam);
        Adam oGg(Gg.parameter_tensors(), adam), oDg(Dg.parameter_tensors(), adam);

        Generator data(11);
        StepInputs in{data.uniform({n, 1, 16, 16}, -1, 1), data.normal({n, 16, 1, 1}),
                      data.normal({n, 16, 1, 1}), data.uniform({n, 1, 1, 1})};
        StepOptions opt;
        opt.loss = loss;
        opt.xai = xai;
        const StepRecord rc = train_step(Gc, Dc, oGc, oDc, in, opt);
        const StepRecord rg = train_step(Gg, Dg, oGg, oDg, in, opt);

        check_close(tag + " loss_D", rg.loss_D, rc.loss_D, kLossTol);
        check_close(tag + " loss_G", rg.loss_G, rc.loss_G, kLossTol);
        check_close(tag + " gp", rg.gp, rc.gp, kLossTol);
        check_close(tag + " fake", rg.fake, rc.fake, kLossTol);
        check_close(tag + " dLdimg", rg.dLdimg, rc.dLdimg, kLossTol);
        check_close(tag + " xai_raw", rg.xai_raw, rc.xai_raw, kGradTol);
        check_close(tag + " xai_E", rg.xai_E, rc.xai_E, kGradTol);
        check_close(tag + " dLdimg_guided", rg.dLdimg_guided, rc.dLdimg_guided, kGradTol);
        for (const auto& [name, g] : rc.grad_D)
          check_close(tag + " grad D." + name, rg.grad_D.at(name), g, kGradTol);
        for (const auto& [name, g] : rc.grad_G)
          check_close(tag + " grad G." + name, rg.grad_G.at(name), g, kGradTol);
        const auto sc = Gc.state_dict(), sg = Gg.state_dict();
        const auto dc = Dc.state_dict(), dg = Dg.state_dict();
        for (const auto* maps : {&sc, &dc}) {
          const auto& other = maps == &sc ? sg : dg;
          const std::string prefix = maps == &sc ? "G." : "D.";
          for (const auto& [name, t] : *maps) {
            const Tensor& u = other.at(name);
            if (t.dtype() == DType::i64) {
              CHECK(u.to_vector() == t.to_vector());  // num_batches_tracked counts forwards exactly
            } else {
              const bool stat = name.find("running_") != std::string::npos;
              check_close(tag + " " + prefix + name, u, t, stat ? kStatTol : kWeightTol);
            }
          }
        }
      }
    }
  }
}
