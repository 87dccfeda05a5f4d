// X-GAN's guided G step (train/step.cpp with StepOptions::xai) and the `xgan step --xai` /
// `xgan explain` front ends, at random weights in float64: the guidance identities of DESIGN.md
// (elementwise E * dLdimg, as-coded (sum E) * dLdimg), G's gradients coming from the guided image
// gradient, and the batch-norm order (captum updates D's running statistics, eval does not).
// Run: ctest -R test_xai_cli.
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "engine/rng.h"
#include "engine/safetensors.h"
#include "losses/losses.h"
#include "models/gan.h"
#include "train/commands.h"
#include "train/step.h"
#include "xai/xai.h"

using namespace xgan;

namespace {

const GanConfig kCfg{16, 4, 1, 8};  // image 16, width 4, one channel, z 8
constexpr int64_t kBatch = 4;
const AdamConfig kAdam{1e-4, 0.5, 0.999, 1e-8, 0.0};  // the paper's, as `xgan step` uses

struct Nets {
  GanGenerator G{kCfg};
  GanDiscriminator D;
  Adam opt_G, opt_D;
  explicit Nets(LossKind loss, uint64_t seed = 7)
      : D(kCfg, loss_uses_sigmoid(loss)), opt_G(init(seed), kAdam), opt_D(D.parameter_tensors(), kAdam) {}

 private:
  std::vector<Tensor> init(uint64_t seed) {
    Generator rng(seed);
    G.init_dcgan(rng);
    D.init_dcgan(rng);
    G.to(DType::f64, kCPU);
    D.to(DType::f64, kCPU);
    return G.parameter_tensors();
  }
};

StepInputs inputs(uint64_t seed = 11) {
  Generator rng(seed);
  StepInputs in;
  in.real = rng.uniform({kBatch, 1, 16, 16}, -1, 1, DType::f64, kCPU);
  in.z_d = rng.normal({kBatch, 8, 1, 1}, 0, 1, DType::f64, kCPU);
  in.z_g = rng.normal({kBatch, 8, 1, 1}, 0, 1, DType::f64, kCPU);
  in.alpha = rng.uniform({kBatch, 1, 1, 1}, 0, 1, DType::f64, kCPU);
  return in;
}

// Largest |a - b| relative to max |b|; float64 products of the same numbers in another order differ
// by a few ulps, so 1e-12 separates "the same formula" from any real difference (>= 1e-6 here).
double rel_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.defined());
  REQUIRE(b.defined());
  REQUIRE(a.shape() == b.shape());
  const std::vector<double> x = a.to(kCPU).to(DType::f64).to_vector(),
                            y = b.to(kCPU).to(DType::f64).to_vector();
  double scale = 0, worst = 0;
  for (double v : y) scale = std::max(scale, std::abs(v));
  for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::abs(x[i] - y[i]));
  return scale > 0 ? worst / scale : worst;
}
constexpr double kSame = 1e-12;

std::map<std::string, Tensor> buffers_of(const Module& m) {
  std::map<std::string, Tensor> b;
  for (const auto& t : m.buffers()) b[t.name] = t.tensor.clone();
  return b;
}

const LossKind kLosses[] = {LossKind::dcgan, LossKind::wgan_gp, LossKind::ragan};
const XaiMethod kMethods[] = {XaiMethod::saliency, XaiMethod::inputxgrad, XaiMethod::deeplift};

}  // namespace

TEST_CASE("guided G step: elementwise is E * dLdimg, as-coded is (sum E) * dLdimg", "[xai][step]") {
  for (LossKind loss : kLosses)
    for (XaiMethod method : kMethods)
      for (Guidance mode : {Guidance::elementwise, Guidance::as_coded}) {
        INFO(loss_name(loss) << " " << xai_method_name(method)
                             << (mode == Guidance::as_coded ? " as-coded" : ""));
        Nets n(loss);
        StepOptions opt{loss, 10.0};
        opt.xai = method;
        opt.guidance = mode;
        const StepRecord rec = train_step(n.G, n.D, n.opt_G, n.opt_D, inputs(), opt);
        REQUIRE(rec.xai_raw.defined());
        REQUIRE(rec.xai_E.shape() == rec.dLdimg.shape());
        const std::vector<double> e = rec.xai_E.to_vector();
        CHECK(*std::min_element(e.begin(), e.end()) >= 1.0);
        CHECK(*std::max_element(e.begin(), e.end()) <= 2.0);
        const Tensor want =
            mode == Guidance::elementwise ? rec.xai_E * rec.dLdimg : sum(rec.xai_E) * rec.dLdimg;
        CHECK(rel_diff(rec.dLdimg_guided, want) < kSame);
      }
}

TEST_CASE("guided G step: G's gradients are the backward of dLdimg_guided; loss_G stays plain",
          "[xai][step]") {
  for (LossKind loss : kLosses)
    for (XaiMethod method : {XaiMethod::none, XaiMethod::saliency, XaiMethod::deeplift}) {
      INFO(loss_name(loss) << " " << xai_method_name(method));
      Nets n(loss), copy(loss), plain(loss);
      StepOptions opt{loss, 10.0};
      opt.xai = method;
      const StepInputs in = inputs();
      const StepRecord rec = train_step(n.G, n.D, n.opt_G, n.opt_D, in, opt);
      const StepRecord rec_plain =
          train_step(plain.G, plain.D, plain.opt_G, plain.opt_D, in, StepOptions{loss, 10.0});
      // G's weights are untouched until its own step and a train-mode forward uses batch
      // statistics, so an untrained copy makes the same fakes.
      const Tensor fake = copy.G.forward(in.z_g, true);
      CHECK(rel_diff(fake, rec.fake) < kSame);
      backward({fake}, {rec.dLdimg_guided});
      for (const auto& p : copy.G.parameters()) {
        INFO(p.name);
        CHECK(rel_diff(p.tensor.grad(), rec.grad_G.at(p.name)) < kSame);
      }
      CHECK(rec.loss_G.item() == rec_plain.loss_G.item());
      CHECK(rel_diff(rec.dLdimg, rec_plain.dLdimg) < kSame);
      if (method == XaiMethod::none) {
        CHECK(!rec.xai_raw.defined());
        CHECK(!rec.xai_E.defined());
        CHECK(rel_diff(rec.dLdimg_guided, rec.dLdimg) == 0);
        for (const auto& [name, g] : rec_plain.grad_G) CHECK(rel_diff(rec.grad_G.at(name), g) == 0);
      }
    }
}

TEST_CASE("guided G step: captum batch norm moves D's running statistics, eval does not", "[xai][step]") {
  for (LossKind loss : kLosses)
    for (XaiMethod method : kMethods) {
      INFO(loss_name(loss) << " " << xai_method_name(method));
      Nets none(loss), ev(loss), cap(loss);
      const StepInputs in = inputs();
      StepOptions opt{loss, 10.0};
      train_step(none.G, none.D, none.opt_G, none.opt_D, in, opt);
      opt.xai = method;
      opt.xai_bn = XaiBatchNorm::eval;
      train_step(ev.G, ev.D, ev.opt_G, ev.opt_D, in, opt);
      opt.xai_bn = XaiBatchNorm::captum;
      train_step(cap.G, cap.D, cap.opt_G, cap.opt_D, in, opt);
      const auto b_none = buffers_of(none.D), b_eval = buffers_of(ev.D), b_cap = buffers_of(cap.D);
      bool captum_moved = false;
      for (const auto& [name, t] : b_none) {
        INFO(name);
        CHECK(rel_diff(b_eval.at(name), t) == 0);  // eval: as after the loss's forwards
        if (name.find("running_") != std::string::npos) captum_moved |= rel_diff(b_cap.at(name), t) > 1e-6;
        if (name.find("num_batches_tracked") != std::string::npos)
          CHECK(b_cap.at(name).item() == t.item() + 1);  // one extra train-mode forward
      }
      CHECK(captum_moved);
    }
}

TEST_CASE("xgan step --xai and xgan explain, run in process", "[xai][cli]") {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("xgan_test_xai_cli_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto run_cli = [](cli::Run (*adder)(CLI::App&), const std::vector<std::string>& argv) {
    CLI::App app{"xgan"};
    cli::Run run = adder(app);
    std::vector<std::string> args(argv.rbegin(), argv.rend());  // CLI11 parses a reversed vector
    app.parse(args);
    return run();
  };

  // An input file for `step` from random weights.
  Nets n(LossKind::ragan);
  const StepInputs in = inputs();
  std::map<std::string, Tensor> t;
  for (const auto& [name, x] : n.G.state_dict()) t["G." + name] = x;
  for (const auto& [name, x] : n.D.state_dict()) t["D." + name] = x;
  t["real"] = in.real;
  t["z_d"] = in.z_d;
  t["z_g"] = in.z_g;
  const std::string in_path = (dir / "in.safetensors").string(), out = (dir / "out.safetensors").string();
  save_safetensors(in_path, t);

  SECTION("step --xai writes the map, E and the guided gradient, equal to train_step's") {
    REQUIRE(run_cli(cli::add_step, {"step", "--loss", "ragan", "--in", in_path, "--out", out, "--dtype",
                                    "float64", "--xai", "inputxgrad", "--guidance", "as-coded", "--xai-bn",
                                    "eval", "--xai-norm", "sample"}) == 0);
    const TensorFile got = load_safetensors(out);
    StepOptions opt{LossKind::ragan, 10.0};
    opt.xai = XaiMethod::inputxgrad;
    opt.guidance = Guidance::as_coded;
    opt.xai_bn = XaiBatchNorm::eval;
    opt.xai_norm = XaiNorm::sample;
    const StepRecord rec = train_step(n.G, n.D, n.opt_G, n.opt_D, in, opt);
    CHECK(rel_diff(got.tensors.at("xai.raw"), rec.xai_raw) < kSame);
    CHECK(rel_diff(got.tensors.at("xai.E"), rec.xai_E) < kSame);
    CHECK(rel_diff(got.tensors.at("dLdimg_guided"), rec.dLdimg_guided) < kSame);
    for (const auto& [name, g] : rec.grad_G) CHECK(rel_diff(got.tensors.at("grad.G." + name), g) < kSame);
    CHECK(got.metadata.at("xai") == "inputxgrad");
    CHECK(got.metadata.at("guidance") == "as-coded");
  }

  SECTION("step without --xai writes no XAI tensors") {
    REQUIRE(run_cli(cli::add_step, {"step", "--loss", "ragan", "--in", in_path, "--out", out}) == 0);
    const TensorFile got = load_safetensors(out);
    CHECK(!got.tensors.count("xai.raw"));
    CHECK(!got.tensors.count("xai.E"));
    CHECK(!got.tensors.count("dLdimg_guided"));
    CHECK_THROWS_AS(run_cli(cli::add_step,
                            {"step", "--loss", "ragan", "--in", in_path, "--out", out, "--xai", "gradcam"}),
                    CLI::ValidationError);
  }

  SECTION("explain takes D's weights with or without the D. prefix and writes maps") {
    const std::string images = (dir / "images.safetensors").string(), png = (dir / "maps.png").string();
    save_safetensors(images, {{"images", in.real}});
    std::map<std::string, Tensor> bare;
    for (const auto& [name, x] : n.D.state_dict()) bare[name] = x;
    const std::string d_bare = (dir / "d.safetensors").string();
    save_safetensors(d_bare, bare);
    for (const std::string& d : {d_bare, in_path})  // in_path holds D.<name> (and G.<name>)
      for (const std::string method : {"saliency", "inputxgrad", "deeplift"}) {
        INFO(d << " " << method);
        REQUIRE(
            run_cli(cli::add_explain, {"explain", "--d", d, "--images", images, "--loss", "ragan", "--method",
                                       method, "--xai-bn", "eval", "--out", out, "--png", png}) == 0);
        const TensorFile got = load_safetensors(out);
        REQUIRE(got.tensors.count("maps"));
        CHECK(got.tensors.at("maps").dtype() == DType::f32);
        GanDiscriminator D(kCfg, false);
        D.load_state_dict(bare);
        const Tensor want = explain(D, in.real.to(DType::f32), parse_xai_method(method), XaiBatchNorm::eval);
        CHECK(rel_diff(got.tensors.at("maps"), want) < 1e-6);  // the same float32 computation
        CHECK(std::filesystem::file_size(png) > 100);
      }
    save_safetensors(images, {{"x", in.real}});
    CHECK_THROWS_WITH(run_cli(cli::add_explain, {"explain", "--d", d_bare, "--images", images, "--loss",
                                                 "ragan", "--method", "saliency", "--out", out}),
                      Catch::Contains("no tensor 'images'"));
    save_safetensors(images, {{"images", zeros({2, 3, 16, 16})}});
    CHECK_THROWS_WITH(run_cli(cli::add_explain, {"explain", "--d", d_bare, "--images", images, "--loss",
                                                 "ragan", "--method", "saliency", "--out", out}),
                      Catch::Contains("takes [N, 1, 16, 16]"));
  }
  std::filesystem::remove_all(dir);
}
