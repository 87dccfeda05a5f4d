// `xgan step`: one training iteration from tensors in a file, every intermediate written out, so
// xgan can be compared with another implementation tensor by tensor (DESIGN.md, "The
// command-line contract"). Checked end to end against tests/golden/step_*.safetensors.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "engine/safetensors.h"
#include "models/gan.h"
#include "train/cli_device.h"
#include "train/commands.h"
#include "train/step.h"

namespace xgan::cli {

namespace {

struct StepArgs {
  std::string loss, in, out, dtype = "float32", device = "cpu";
  double gp_lambda = 10.0;
  std::string xai = "none", guidance = "elementwise", xai_bn = "captum", xai_norm = "batch";
};

// Noise may be given as [N, z] or [N, z, 1, 1]; alpha as [N] or [N, 1, 1, 1].
Tensor as_4d(const Tensor& t) {
  return t.dim() == 2 || t.dim() == 1 ? reshape(t, {t.size(0), t.dim() == 2 ? t.size(1) : 1, 1, 1}) : t;
}

int run_step(const StepArgs& a) {
  const LossKind loss = parse_loss(a.loss);
  const XaiMethod xai = parse_xai_method(a.xai);
  const DType dtype = a.dtype == "float64" ? DType::f64 : DType::f32;
  const Device device = parse_device(a.device);
  const bool wgan = loss == LossKind::wgan_gp;
  const std::string where = a.in + ": ";

  TensorFile file = load_safetensors(a.in);
  std::map<std::string, Tensor>& t = file.tensors;

  // Every name must be known: a misspelt tensor is an error, not silently ignored.
  std::vector<std::string> unknown, missing;
  for (const auto& [name, _] : t)
    if (name.rfind("G.", 0) != 0 && name.rfind("D.", 0) != 0 && name != "real" && name != "z_d" &&
        name != "z_g" && name != "alpha")
      unknown.push_back(name);
  for (const char* need : {"real", "z_d", "z_g"})
    if (!t.count(need)) missing.push_back(need);
  if (wgan && !t.count("alpha")) missing.push_back("alpha (WGAN-GP's interpolation weights, [N, 1, 1, 1])");
  auto list = [](const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
    return s;
  };
  if (!missing.empty()) throw std::runtime_error(where + "missing tensor(s): " + list(missing));
  if (!unknown.empty())
    throw std::runtime_error(where + "unknown tensor(s): " + list(unknown) +
                             " (expected G.<param>, D.<param>, real, z_d, z_g, alpha)");

  GanConfig cfg;
  try {
    cfg = infer_generator_config(t, "G.");
  } catch (const std::exception& e) {
    throw std::runtime_error(where + e.what());
  }
  const Tensor real = t.at("real"), z_d = as_4d(t.at("z_d")), z_g = as_4d(t.at("z_g"));
  const int64_t n = real.dim() == 4 ? real.size(0) : 0;
  const Shape img{n, cfg.channels, cfg.image_size, cfg.image_size}, noise{n, cfg.z_dim, 1, 1};
  auto check_shape = [&](const char* name, const Tensor& x, const Shape& want, const char* what) {
    if (x.shape() != want || n < 1)
      throw std::runtime_error(where + name + " is " + shape_str(t.at(name).shape()) + ", expected " + what +
                               " (the weights give C=" + std::to_string(cfg.channels) + ", size " +
                               std::to_string(cfg.image_size) + ", z=" + std::to_string(cfg.z_dim) + ")");
  };
  check_shape("real", real, img, "[N, C, size, size]");
  check_shape("z_d", z_d, noise, "[N, z, 1, 1] with N from real");
  check_shape("z_g", z_g, noise, "[N, z, 1, 1] with N from real");
  Tensor alpha;
  if (wgan) {
    alpha = as_4d(t.at("alpha"));
    check_shape("alpha", alpha, {n, 1, 1, 1}, "[N, 1, 1, 1] with N from real");
  }

  GanGenerator G(cfg);
  GanDiscriminator D(cfg, loss_uses_sigmoid(loss));
  G.to(dtype, device);
  D.to(dtype, device);
  try {
    G.load_state_dict(t, "G.");
    D.load_state_dict(t, "D.");
  } catch (const std::exception& e) {
    throw std::runtime_error(where + e.what());
  }

  // A fresh optimiser per run, the paper's settings for both nets.
  const AdamConfig adam{1e-4, 0.5, 0.999, 1e-8, 0.0};
  Adam opt_G(G.parameter_tensors(), adam), opt_D(D.parameter_tensors(), adam);
  StepOptions options;
  options.loss = loss;
  options.gp_lambda = a.gp_lambda;
  options.xai = xai;
  options.guidance = parse_guidance(a.guidance);
  options.xai_bn = parse_xai_bn(a.xai_bn);
  options.xai_norm = parse_xai_norm(a.xai_norm);
  const StepRecord rec = train_step(G, D, opt_G, opt_D, {real, z_d, z_g, alpha}, options);

  // Float tensors are written in --dtype; num_batches_tracked stays int64.
  std::map<std::string, Tensor> out;
  auto put = [&](const std::string& name, const Tensor& x) {
    out[name] = x.dtype() == DType::i64 ? x.to(kCPU) : x.to(kCPU).to(dtype);
  };
  put("loss_D", rec.loss_D);
  put("loss_G", rec.loss_G);
  if (wgan) put("gp", rec.gp);
  put("fake", rec.fake);
  put("dLdimg", rec.dLdimg);
  if (xai != XaiMethod::none) {
    put("xai.raw", rec.xai_raw);
    put("xai.E", rec.xai_E);
    put("dLdimg_guided", rec.dLdimg_guided);
  }
  for (const auto& [name, g] : rec.grad_D) put("grad.D." + name, g);
  for (const auto& [name, g] : rec.grad_G) put("grad.G." + name, g);
  for (const auto& [name, x] : G.state_dict()) put("G." + name, x);
  for (const auto& [name, x] : D.state_dict()) put("D." + name, x);
  char lambda[32];
  std::snprintf(lambda, sizeof lambda, "%.17g", a.gp_lambda);
  const std::map<std::string, std::string> meta{{"loss", loss_name(loss)},
                                                {"gp_lambda", lambda},
                                                {"dtype", dtype_name(dtype)},
                                                {"device", device.str()},
                                                {"batch", std::to_string(n)},
                                                {"image_size", std::to_string(cfg.image_size)},
                                                {"width", std::to_string(cfg.width)},
                                                {"channels", std::to_string(cfg.channels)},
                                                {"z_dim", std::to_string(cfg.z_dim)},
                                                {"xai", a.xai},
                                                {"guidance", a.guidance},
                                                {"xai_bn", a.xai_bn},
                                                {"xai_norm", a.xai_norm},
                                                {"xgan", XGAN_VERSION}};
  save_safetensors(a.out, out, meta);

  std::printf("xgan step: %s, %s on %s, batch %lld, %dx%dx%d images: loss_D %.9g, loss_G %.9g",
              loss_name(loss), dtype_name(dtype), device.str().c_str(), static_cast<long long>(n),
              cfg.channels, cfg.image_size, cfg.image_size, rec.loss_D.item(), rec.loss_G.item());
  if (wgan) std::printf(", gp %.9g", rec.gp.item());
  if (xai != XaiMethod::none)
    std::printf(", guided by %s (%s, bn %s, norm %s)", a.xai.c_str(), a.guidance.c_str(), a.xai_bn.c_str(),
                a.xai_norm.c_str());
  std::printf(" -> %s\n", a.out.c_str());
  return 0;
}

}  // namespace

Run add_step(CLI::App& app) {
  auto args = std::make_shared<StepArgs>();
  CLI::App* sub = app.add_subcommand(
      "step",
      "Run one training iteration (a D step, then a G step) from the weights and batches in a tensor file "
      "and\n"
      "write every intermediate, to compare xgan with another implementation tensor by tensor.");
  sub->add_option("--loss", args->loss,
                  "GAN objective: dcgan (D ends in a sigmoid, BCE), wgan-gp (Wasserstein loss plus gradient\n"
                  "penalty on x_hat = alpha*real + (1-alpha)*fake) or ragan (relativistic average GAN)")
      ->required()
      ->check(CLI::IsMember({"dcgan", "wgan-gp", "ragan"}));
  sub->add_option("--in", args->in,
                  "Input safetensors file: G.<param> and D.<param> (state_dict names, canonical or raw\n"
                  "PyTorch form; batch-norm running statistics included, num_batches_tracked optional),\n"
                  "real [N, C, S, S], z_d and z_g [N, z, 1, 1] (the D and G steps' noise) and, for\n"
                  "wgan-gp, alpha [N, 1, 1, 1]. Image size, width, channels and z come from the tensors.")
      ->required()
      ->check(CLI::ExistingFile);
  sub->add_option("--out", args->out,
                  "Output safetensors file: loss_D (WGAN-GP: without lambda*gp), loss_G, gp (wgan-gp,\n"
                  "unweighted), fake (the G step's G(z_g)), dLdimg (dloss_G/dfake), grad.D.<param>,\n"
                  "grad.G.<param> (what Adam stepped with) and the updated G.<param>, D.<param> with\n"
                  "running statistics and num_batches_tracked (int64); canonical names. With --xai also\n"
                  "xai.raw (the explainer's map of D on fake), xai.E (normalised to [1, 2]) and\n"
                  "dLdimg_guided (what was back-propagated into G; grad.G.* come from it)")
      ->required();
  sub->add_option("--gp-lambda", args->gp_lambda,
                  "Weight of the gradient penalty in D's WGAN-GP loss (the authors' code effectively used 1)")
      ->capture_default_str()
      ->check(CLI::Validator(
          [](std::string& v) -> std::string {
            // CLI's NonNegativeNumber prints DBL_MAX in full; say it plainly.
            char* end = nullptr;
            const double x = std::strtod(v.c_str(), &end);
            if (end != v.c_str() && *end == '\0' && std::isfinite(x) && x >= 0) return "";
            return "expected a number >= 0, got '" + v + "'";
          },
          "NONNEGATIVE"));
  sub->add_option("--dtype", args->dtype,
                  "Compute and write in this type; float64 (CPU) gives an exact comparison with a reference")
      ->capture_default_str()
      ->check(CLI::IsMember({"float32", "float64"}));
  sub->add_option("--device", args->device, kDeviceHelp)->capture_default_str();
  add_xai_options(sub, args->xai, args->guidance, args->xai_bn, args->xai_norm);
  sub->footer(
      "Adam starts fresh (lr 1e-4, betas (0.5, 0.999)) for both nets. Batch-norm statistics update in the\n"
      "authors' order: D step G(z_d), D(real), D(fake), D(x_hat); G step G(z_g), D(fake), D(real) for "
      "ragan,\n"
      "then the explainer's forward with --xai-bn captum. loss_G is the plain loss also when --xai guides "
      "the step.");
  return [args] { return run_step(*args); };
}

}  // namespace xgan::cli
