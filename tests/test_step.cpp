// The paper's models and one training iteration against PyTorch: three chained iterations per loss
// in float64 (every loss, penalty, fake batch, dL/dimage, gradient, updated weight and running
// statistic), one in float32, `xgan step` in process, and the models' names, shapes and errors.
// Golden data: tests/golden/step_*.safetensors from tests/golden/step_reference.py (PyTorch 1.13).
// Run: ctest -R test_step (or build/tests/test_step "[golden]").
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "engine/rng.h"
#include "engine/safetensors.h"
#include "losses/losses.h"
#include "models/gan.h"
#include "tensor_compare.h"
#include "train/commands.h"
#include "train/step.h"

#ifndef XGAN_GOLDEN_DIR
#define XGAN_GOLDEN_DIR "tests/golden"
#endif

using namespace xgan;
using xgan::test::compare;
using xgan::test::Tol;

namespace {

// ---- tolerances (the comparison itself: tests/tensor_compare.h) -----------------------------

// float64: the computation is the same formula as PyTorch's, only the order of the float64
// additions differs (GEMM blocking, reductions); the worst element over all cases and three
// iterations measures 2.1e-13 on this scale (most are ~1e-15). 1e-10 still fails on any formula difference (a
// biased variance, an eps in the wrong place, a statistic updated once too often), which all show at 1e-6 or
// more.
constexpr Tol kF64{1e-10, 1e-3};

// ---- golden cases -------------------------------------------------------------------------------

struct GoldenCase {
  std::string loss;
  int channels;
  std::string in_path, out_path;
  TensorFile in, out;
  int steps;
  double gp_lambda;

  GoldenCase(const std::string& l, int c)
      : loss(l),
        channels(c),
        in_path(std::string(XGAN_GOLDEN_DIR) + "/step_" + l + "_c" + std::to_string(c) + "_in.safetensors"),
        out_path(std::string(XGAN_GOLDEN_DIR) + "/step_" + l + "_c" + std::to_string(c) + "_out.safetensors"),
        in(load_safetensors(in_path)),
        out(load_safetensors(out_path)),
        steps(std::stoi(out.metadata.at("steps"))),
        gp_lambda(std::stod(out.metadata.at("gp_lambda"))) {}

  // The tensors PyTorch produced in iteration k (1-based), without the "s<k>." prefix and
  // without that iteration's inputs.
  std::map<std::string, Tensor> expected(int k) const {
    const std::string prefix = "s" + std::to_string(k) + ".";
    std::map<std::string, Tensor> m;
    for (const auto& [key, t] : out.tensors)
      if (key.rfind(prefix, 0) == 0) m[key.substr(prefix.size())] = t;
    for (const char* input : {"real", "z_d", "z_g", "alpha"}) m.erase(input);
    return m;
  }
  StepInputs inputs(int k) const {
    auto get = [&](const std::string& name) -> Tensor {
      const auto& src = k == 1 ? in.tensors : out.tensors;
      const std::string key = k == 1 ? name : "s" + std::to_string(k) + "." + name;
      auto it = src.find(key);
      return it == src.end() ? Tensor() : it->second.clone();
    };
    return {get("real"), get("z_d"), get("z_g"), get("alpha")};
  }
};

const std::vector<std::pair<std::string, int>> kCases = {{"dcgan", 1}, {"wgan-gp", 1}, {"ragan", 1},
                                                         {"dcgan", 3}, {"wgan-gp", 3}, {"ragan", 3}};

// Everything one iteration produces, under the names `xgan step` writes.
std::map<std::string, Tensor> step_outputs(const StepRecord& r, const GanGenerator& G,
                                           const GanDiscriminator& D) {
  std::map<std::string, Tensor> m{
      {"loss_D", r.loss_D}, {"loss_G", r.loss_G}, {"fake", r.fake}, {"dLdimg", r.dLdimg}};
  if (r.gp.defined()) m["gp"] = r.gp;
  for (const auto& [n, g] : r.grad_D) m["grad.D." + n] = g;
  for (const auto& [n, g] : r.grad_G) m["grad.G." + n] = g;
  for (const auto& [n, t] : G.state_dict()) m["G." + n] = t;
  for (const auto& [n, t] : D.state_dict()) m["D." + n] = t;
  return m;
}

std::set<std::string> keys(const std::map<std::string, Tensor>& m) {
  std::set<std::string> s;
  for (const auto& [k, _] : m) s.insert(k);
  return s;
}

// dlib's trick: leave garbage in every .grad, so a step that forgets to zero (or lets the G step's
// D gradients leak into the next D step) shows up as a wrong gradient.
void poison_grads(Module& m) {
  for (Tensor p : m.parameter_tensors()) p.set_grad(full(p.shape(), 123.0, p.dtype()));
}

// Builds G and D from a golden IN file in `dtype`, loading the raw PyTorch names.
std::pair<GanGenerator, GanDiscriminator> models_from(const GoldenCase& gc, DType dtype) {
  const GanConfig cfg = infer_generator_config(gc.in.tensors, "G.");
  GanGenerator G(cfg);
  GanDiscriminator D(cfg, loss_uses_sigmoid(parse_loss(gc.loss)));
  G.to(dtype, kCPU);
  D.to(dtype, kCPU);
  G.load_state_dict(gc.in.tensors, "G.");
  D.load_state_dict(gc.in.tensors, "D.");
  return {std::move(G), std::move(D)};
}

Adam fresh_adam(const Module& m) {
  return Adam(m.parameter_tensors(), AdamConfig{1e-4, 0.5, 0.999, 1e-8, 0.0});
}

}  // namespace

// ---- one iteration against PyTorch ---------------------------------------------------------------

TEST_CASE("train_step matches PyTorch for three chained iterations in float64", "[golden][step]") {
  for (const auto& [loss, channels] : kCases) {
    const GoldenCase gc(loss, channels);
    auto [G, D] = models_from(gc, DType::f64);
    StepOptions opt;
    opt.loss = parse_loss(loss);
    opt.gp_lambda = gc.gp_lambda;
    for (int k = 1; k <= gc.steps; ++k) {
      INFO(loss << ", " << channels << " channel(s), iteration " << k << " of " << gc.steps);
      poison_grads(G);
      poison_grads(D);
      // A fresh Adam per iteration, as `xgan step` (and the reference) run it; weights and
      // running statistics carry over from the previous iteration.
      Adam opt_G = fresh_adam(G), opt_D = fresh_adam(D);
      const StepRecord rec = train_step(G, D, opt_G, opt_D, gc.inputs(k), opt);
      const auto got = step_outputs(rec, G, D);
      const auto want = gc.expected(k);
      REQUIRE(keys(got) == keys(want));
      for (const auto& [name, w] : want) {
        const Tensor& g = got.at(name);
        CHECK(g.dtype() == w.dtype());  // float64, and int64 for num_batches_tracked
        CHECK_CLOSE(name, g, w, kF64);
      }
    }
  }
}

TEST_CASE("train_step in float32 stays close to the float64 PyTorch iteration", "[golden][step]") {
  for (const auto& [loss, channels] : kCases) {
    const GoldenCase gc(loss, channels);
    INFO(loss << ", " << channels << " channel(s), iteration 1 in float32");
    auto [G, D] = models_from(gc, DType::f32);
    StepOptions opt;
    opt.loss = parse_loss(loss);
    opt.gp_lambda = gc.gp_lambda;
    Adam opt_G = fresh_adam(G), opt_D = fresh_adam(D);
    const StepRecord rec = train_step(G, D, opt_G, opt_D, gc.inputs(1), opt);
    const auto got = step_outputs(rec, G, D);
    const auto want = gc.expected(1);
    REQUIRE(keys(got) == keys(want));
    for (const auto& [name, w] : want) {
      const Tensor& g = got.at(name);
      if (w.dtype() == DType::i64) {
        CHECK(g.to_vector() == w.to_vector());
        continue;
      }
      CHECK(g.dtype() == DType::f32);
      const bool weight = name.rfind("G.", 0) == 0 || name.rfind("D.", 0) == 0;
      if (!weight) {
        // Values and gradients: the inputs are exact in float32, so the error is float32
        // rounding through the forward (4 layers, batch statistics over <= 256 terms) and the
        // backward (up to a second derivative for WGAN-GP). Measured against the float64
        // result: PyTorch's own float32 run of these cases is off by up to 2.6e-5, ours by
        // 1.6e-5; 1e-4 leaves room for both. A formula error shows at 1e-3 or more.
        CHECK_CLOSE(name, g.to(DType::f64), w, (Tol{1e-4, 1e-2}));
        continue;
      }
      // Updated weights and running statistics: Adam's first step moves each weight by
      // lr * g / (|g| + eps), i.e. by ~lr with the sign of g, so where a gradient element is
      // within float32 noise of zero its sign may flip and the weight may land 2 lr away.
      // Elsewhere only float32 rounding of the weight (~6e-8 relative) and of the step remain.
      const std::string grad_name = "grad." + name;
      const auto grad_it = want.find(grad_name);
      const std::vector<double> a = g.to_vector(), b = w.to_vector();
      std::vector<double> gw = grad_it != want.end() ? grad_it->second.to_vector() : std::vector<double>();
      double gscale = 0;
      for (double v : gw) gscale = std::max(gscale, std::abs(v));
      double bscale = 0;
      for (double v : b) bscale = std::max(bscale, std::abs(v));
      size_t bad = 0;
      for (size_t i = 0; i < a.size(); ++i) {
        const bool noisy = !gw.empty() && std::abs(gw[i]) < 1e-3 * gscale;  // below float32 gradient noise
        const double lr = 1e-4;
        // 1e-5 of the scale covers float32 rounding of weights and of running statistics (means
        // over <= 256 float32 terms; measured up to 1.1e-7); a noisy gradient adds up to 2 lr.
        const double allowed = 1e-5 * bscale + (noisy ? 2.0 * lr : 2e-3 * lr);
        if (!(std::abs(a[i] - b[i]) <= allowed)) ++bad;
      }
      INFO(name << ": " << bad << " of " << a.size() << " elements outside the allowance");
      CHECK(bad == 0);
    }
  }
}

TEST_CASE("xgan step, run in process, writes what PyTorch computed", "[golden][step][cli]") {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("xgan_test_step_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto run_cli = [](const std::vector<std::string>& argv) {
    CLI::App app{"xgan"};
    cli::Run run = cli::add_step(app);
    std::vector<std::string> args(argv.rbegin(), argv.rend());  // CLI11 parses a reversed vector
    app.parse(args);
    return run();
  };
  for (const auto& [loss, channels] : kCases) {
    const GoldenCase gc(loss, channels);
    const std::string out = (dir / (loss + std::to_string(channels) + ".safetensors")).string();
    INFO("xgan step --loss " << loss << " --in " << gc.in_path << " --dtype float64");
    REQUIRE(run_cli({"step", "--loss", loss, "--in", gc.in_path, "--out", out, "--dtype", "float64"}) == 0);
    const TensorFile got = load_safetensors(out);
    const auto want = gc.expected(1);
    REQUIRE(keys(got.tensors) == keys(want));
    for (const auto& [name, w] : want) {
      CHECK(got.tensors.at(name).dtype() == w.dtype());
      CHECK_CLOSE(name, got.tensors.at(name), w, kF64);
    }
    CHECK(got.tensors.at("loss_D").shape().empty());  // scalars are shape []
    CHECK(got.metadata.at("loss") == loss);
  }

  SECTION("float32 is the default output type") {
    const GoldenCase gc("dcgan", 1);
    const std::string out = (dir / "f32.safetensors").string();
    REQUIRE(run_cli({"step", "--loss", "dcgan", "--in", gc.in_path, "--out", out}) == 0);
    const TensorFile got = load_safetensors(out);
    CHECK(got.tensors.at("loss_G").dtype() == DType::f32);
    CHECK(got.tensors.at("G.main.Start-BatchNorm2d.num_batches_tracked").dtype() == DType::i64);
  }

  SECTION("errors name what is wrong") {
    const GoldenCase gc("wgan-gp", 1);
    std::map<std::string, Tensor> t = gc.in.tensors;
    t.erase("alpha");
    t.erase("z_g");
    const std::string bad = (dir / "bad.safetensors").string();
    save_safetensors(bad, t);
    const std::string out = (dir / "never.safetensors").string();
    CHECK_THROWS_WITH(run_cli({"step", "--loss", "wgan-gp", "--in", bad, "--out", out}),
                      Catch::Contains("missing tensor(s): z_g, alpha"));
    // The same file is fine for DCGAN apart from z_g.
    CHECK_THROWS_WITH(run_cli({"step", "--loss", "dcgan", "--in", bad, "--out", out}),
                      Catch::Contains("missing tensor(s): z_g") && !Catch::Contains("alpha"));

    t = gc.in.tensors;
    t["real"] = zeros({4, 1, 8, 8});
    save_safetensors(bad, t);
    CHECK_THROWS_WITH(run_cli({"step", "--loss", "wgan-gp", "--in", bad, "--out", out}),
                      Catch::Contains("real is [4, 1, 8, 8], expected [N, C, size, size]"));

    t = gc.in.tensors;
    t.erase("D.main.End-Conv2d.weight");
    t["D.main.Extra.weight"] = zeros({1});
    save_safetensors(bad, t);
    CHECK_THROWS_WITH(run_cli({"step", "--loss", "wgan-gp", "--in", bad, "--out", out}),
                      Catch::Contains("D.main.End-Conv2d.weight") && Catch::Contains("D.main.Extra.weight"));

    t = gc.in.tensors;
    t["z_D"] = zeros({4, 8, 1, 1});
    save_safetensors(bad, t);
    CHECK_THROWS_WITH(run_cli({"step", "--loss", "wgan-gp", "--in", bad, "--out", out}),
                      Catch::Contains("unknown tensor(s): z_D"));
    CHECK(!std::filesystem::exists(out));

    CHECK_THROWS_AS(run_cli({"step", "--loss", "lsgan", "--in", gc.in_path, "--out", out}),
                    CLI::ValidationError);
    CHECK_THROWS_AS(
        run_cli({"step", "--loss", "dcgan", "--in", gc.in_path, "--out", out, "--dtype", "float16"}),
        CLI::ValidationError);
    CHECK_THROWS_AS(run_cli({"step", "--loss", "dcgan", "--out", out}), CLI::RequiredError);
    CHECK_THROWS_WITH(
        run_cli({"step", "--loss", "dcgan", "--in", gc.in_path, "--out", out, "--device", "tpu"}),
        Catch::Contains("--device"));
  }
  std::filesystem::remove_all(dir);
}

// ---- the models ------------------------------------------------------------------------------------

namespace {
std::vector<std::string> names(const std::vector<NamedTensor>& v) {
  std::vector<std::string> n;
  for (const auto& t : v) n.push_back(t.name);
  return n;
}
}  // namespace

TEST_CASE("parameter names follow the authors' state_dict at 32x32, width 128", "[models]") {
  GanConfig cfg;  // image 32, width 128, z 128
  cfg.channels = 3;
  const GanGenerator G(cfg);
  CHECK(names(G.parameters()) == std::vector<std::string>{
                                     "main.Start-ConvTranspose2d.weight",
                                     "main.Start-BatchNorm2d.weight",
                                     "main.Start-BatchNorm2d.bias",
                                     "main.Middle-ConvTranspose2d_1.weight",
                                     "main.Middle-BatchNorm2d_1.weight",
                                     "main.Middle-BatchNorm2d_1.bias",
                                     "main.Middle-ConvTranspose2d_2.weight",
                                     "main.Middle-BatchNorm2d_2.weight",
                                     "main.Middle-BatchNorm2d_2.bias",
                                     "main.End-ConvTranspose2d.weight",
                                 });
  CHECK(names(G.buffers()) == std::vector<std::string>{
                                  "main.Start-BatchNorm2d.running_mean",
                                  "main.Start-BatchNorm2d.running_var",
                                  "main.Start-BatchNorm2d.num_batches_tracked",
                                  "main.Middle-BatchNorm2d_1.running_mean",
                                  "main.Middle-BatchNorm2d_1.running_var",
                                  "main.Middle-BatchNorm2d_1.num_batches_tracked",
                                  "main.Middle-BatchNorm2d_2.running_mean",
                                  "main.Middle-BatchNorm2d_2.running_var",
                                  "main.Middle-BatchNorm2d_2.num_batches_tracked",
                              });
  // 128 -> 512 (4x4) -> 256 (8x8) -> 128 (16x16) -> C (32x32); ConvTranspose2d weights are [in, out, k, k].
  const auto gs = G.state_dict();
  CHECK(gs.at("main.Start-ConvTranspose2d.weight").shape() == Shape{128, 512, 4, 4});
  CHECK(gs.at("main.Middle-ConvTranspose2d_1.weight").shape() == Shape{512, 256, 4, 4});
  CHECK(gs.at("main.Middle-ConvTranspose2d_2.weight").shape() == Shape{256, 128, 4, 4});
  CHECK(gs.at("main.End-ConvTranspose2d.weight").shape() == Shape{128, 3, 4, 4});
  CHECK(gs.at("main.Middle-BatchNorm2d_2.running_var").shape() == Shape{128});
  CHECK(gs.at("main.Start-BatchNorm2d.num_batches_tracked").shape() == Shape{});
  CHECK(gs.at("main.Start-BatchNorm2d.num_batches_tracked").dtype() == DType::i64);

  const GanDiscriminator D(cfg, true);
  CHECK(names(D.parameters()) == std::vector<std::string>{
                                     "main.Start-Conv2d.weight",
                                     "main.Middle-Conv2d_0.weight",
                                     "main.Middle-BatchNorm2d_0.weight",
                                     "main.Middle-BatchNorm2d_0.bias",
                                     "main.Middle-Conv2d_1.weight",
                                     "main.Middle-BatchNorm2d_1.weight",
                                     "main.Middle-BatchNorm2d_1.bias",
                                     "main.End-Conv2d.weight",
                                 });
  CHECK(names(D.buffers()) == std::vector<std::string>{
                                  "main.Middle-BatchNorm2d_0.running_mean",
                                  "main.Middle-BatchNorm2d_0.running_var",
                                  "main.Middle-BatchNorm2d_0.num_batches_tracked",
                                  "main.Middle-BatchNorm2d_1.running_mean",
                                  "main.Middle-BatchNorm2d_1.running_var",
                                  "main.Middle-BatchNorm2d_1.num_batches_tracked",
                              });
  // C -> 128 (16) -> 256 (8) -> 512 (4) -> 1; Conv2d weights are [out, in, k, k].
  const auto ds = D.state_dict();
  CHECK(ds.at("main.Start-Conv2d.weight").shape() == Shape{128, 3, 4, 4});
  CHECK(ds.at("main.Middle-Conv2d_0.weight").shape() == Shape{256, 128, 4, 4});
  CHECK(ds.at("main.Middle-Conv2d_1.weight").shape() == Shape{512, 256, 4, 4});
  CHECK(ds.at("main.End-Conv2d.weight").shape() == Shape{1, 512, 4, 4});
  for (const auto& p : G.parameters()) CHECK(p.tensor.requires_grad());
  for (const auto& p : D.parameters()) CHECK(p.tensor.requires_grad());
}

TEST_CASE("models give the right shapes at 16, 32 and 64 pixels", "[models]") {
  for (int s : {16, 32, 64}) {
    for (int c : {1, 3}) {
      INFO("image " << s << ", channels " << c);
      GanConfig cfg{s, 4, c, 8};
      GanGenerator G(cfg);
      GanDiscriminator D(cfg, false);
      Generator rng(s);
      G.init_dcgan(rng);
      D.init_dcgan(rng);
      // log2(s) - 3 middle blocks in each (4 and 4 layers with weights at 32, 5 and 5 at 64).
      const size_t middle = s == 16 ? 1 : s == 32 ? 2 : 3;
      CHECK(G.parameters().size() == 1 + 2 + 3 * middle + 1);  // start conv + BN, middle blocks, end
      CHECK(D.parameters().size() == 1 + 3 * middle + 1);      // start conv, middle blocks, end
      const Tensor x = G.forward(rng.normal({2, 8, 1, 1}), true);
      CHECK(x.shape() == Shape{2, c, s, s});
      double lo = 0, hi = 0;
      for (double v : x.to_vector()) lo = std::min(lo, v), hi = std::max(hi, v);
      CHECK(lo > -1.0);  // tanh
      CHECK(hi < 1.0);
      CHECK(D.forward(x, true).shape() == Shape{2});
      // The noise may also come as [N, z].
      CHECK(G.forward(rng.normal({3, 8}), false).shape() == Shape{3, c, s, s});
      // The inferred config is the one that built G.
      const GanConfig back = infer_generator_config(G.state_dict(), "");
      CHECK(back.image_size == s);
      CHECK(back.width == 4);
      CHECK(back.channels == c);
      CHECK(back.z_dim == 8);
    }
  }
  GanConfig cfg{16, 4, 1, 8};
  GanDiscriminator Ds(cfg, true);
  Generator rng(1);
  Ds.init_dcgan(rng);
  for (double v : Ds.forward(rng.normal({5, 1, 16, 16}), false).to_vector()) {
    CHECK(v > 0.0);  // after the sigmoid
    CHECK(v < 1.0);
  }
  CHECK_THROWS_WITH(Ds.forward(zeros({2, 1, 32, 32})), Catch::Contains("[N, 1, 16, 16]"));
  GanGenerator Gs(cfg);
  CHECK_THROWS_WITH(Gs.forward(zeros({2, 7, 1, 1})), Catch::Contains("[N, 8, 1, 1]"));
}

TEST_CASE("an image size that is not a power of two >= 16 is refused", "[models]") {
  for (int s : {0, 8, 24, 28, 48, 100}) {
    INFO("image size " << s);
    CHECK_THROWS_WITH(GanGenerator(GanConfig{s, 8, 1, 8}), Catch::Contains("power of two >= 16"));
    CHECK_THROWS_WITH(GanDiscriminator(GanConfig{s, 8, 1, 8}, true), Catch::Contains("power of two >= 16"));
  }
  CHECK_THROWS_WITH(GanGenerator(GanConfig{32, 0, 1, 8}), Catch::Contains("width"));
}

TEST_CASE("batch norm: train mode updates the running statistics and counts, eval mode uses them",
          "[models]") {
  GanConfig cfg{16, 4, 1, 8};
  GanGenerator G(cfg);
  Generator rng(3);
  G.init_dcgan(rng);
  const Tensor z = rng.normal({4, 8, 1, 1});
  auto count = [&] { return G.state_dict().at("main.Start-BatchNorm2d.num_batches_tracked").item(); };
  auto mean0 = [&] { return G.state_dict().at("main.Start-BatchNorm2d.running_mean").to_vector(); };
  const auto before = mean0();
  const Tensor eval1 = G.forward(z, false);
  CHECK(count() == 0);
  CHECK(mean0() == before);
  G.forward(z, true);
  G.forward(z, true);
  CHECK(count() == 2);
  CHECK(mean0() != before);
  // Eval output now differs (new running statistics) but is a function of them only.
  const Tensor eval2 = G.forward(z, false);
  CHECK(eval2.to_vector() == G.forward(z, false).to_vector());
  CHECK(eval2.to_vector() != eval1.to_vector());
}

TEST_CASE("load_state_dict: raw PyTorch names, prefixes, dtypes and one error listing everything",
          "[models]") {
  CHECK(canonical_param_name("main.Middle-Conv2d [0].weight") == "main.Middle-Conv2d_0.weight");
  CHECK(canonical_param_name("main.Middle-BatchNorm2d [12].running_mean") ==
        "main.Middle-BatchNorm2d_12.running_mean");
  CHECK(canonical_param_name("main.End-Conv2d.weight") == "main.End-Conv2d.weight");

  GanConfig cfg{16, 4, 1, 8};
  GanDiscriminator src(cfg, false);
  Generator rng(5);
  src.init_dcgan(rng);
  std::map<std::string, Tensor> raw;  // float64, PyTorch spelling, prefix "D."
  for (const auto& [name, t] : src.state_dict()) {
    std::string r = name;
    const auto at = r.find("_0.");
    if (at != std::string::npos) r = r.substr(0, at) + " [0]." + r.substr(at + 3);
    raw["D." + r] = t.dtype() == DType::i64 ? t.clone() : t.to(DType::f64);
  }
  REQUIRE(raw.count("D.main.Middle-Conv2d [0].weight"));
  raw["real"] = zeros({1});  // other prefixes are none of this module's business

  GanDiscriminator dst(cfg, false);
  const Tensor w_before = dst.parameters()[0].tensor;
  dst.load_state_dict(raw, "D.");
  for (const auto& [name, t] : src.state_dict()) {
    INFO(name);
    CHECK(dst.state_dict().at(name).dtype() == t.dtype());  // converted to the module's float32
    CHECK(dst.state_dict().at(name).to_vector() == t.to_vector());
  }
  CHECK(dst.parameters()[0].tensor.impl() == w_before.impl());  // loaded in place: optimisers stay valid
  CHECK(dst.parameters()[0].tensor.requires_grad());

  // num_batches_tracked is optional.
  auto no_count = raw;
  no_count.erase("D.main.Middle-BatchNorm2d [0].num_batches_tracked");
  CHECK_NOTHROW(dst.load_state_dict(no_count, "D."));

  // One error naming every problem.
  auto broken = raw;
  broken.erase("D.main.End-Conv2d.weight");
  broken.erase("D.main.Middle-BatchNorm2d [0].running_var");
  broken["D.main.Start-Conv2d.bias"] = zeros({4});
  broken["D.main.Middle-Conv2d [0].weight"] = zeros({8, 4, 3, 3});
  try {
    dst.load_state_dict(broken, "D.");
    FAIL("no error");
  } catch (const std::exception& e) {
    const std::string msg = e.what();
    INFO(msg);
    CHECK_THAT(
        msg, Catch::Contains("missing 2: D.main.End-Conv2d.weight, D.main.Middle-BatchNorm2d_0.running_var"));
    CHECK_THAT(msg, Catch::Contains("unexpected 1: D.main.Start-Conv2d.bias"));
    CHECK_THAT(msg,
               Catch::Contains("D.main.Middle-Conv2d_0.weight (expected [8, 4, 4, 4], got [8, 4, 3, 3])"));
  }
  // A failed load changes nothing.
  CHECK(dst.state_dict().at("main.Start-Conv2d.weight").to_vector() ==
        src.state_dict().at("main.Start-Conv2d.weight").to_vector());

  auto twice = raw;
  twice["D.main.Middle-Conv2d_0.weight"] = raw.at("D.main.Middle-Conv2d [0].weight");
  CHECK_THROWS_WITH(dst.load_state_dict(twice, "D."), Catch::Contains("given twice"));
}

TEST_CASE("module dtype conversion keeps parameters as leaves and the counter as int64", "[models]") {
  GanConfig cfg{16, 4, 3, 8};
  GanGenerator G(cfg);
  Generator rng(9);
  G.init_dcgan(rng);
  const auto before = G.state_dict().at("main.End-ConvTranspose2d.weight").to_vector();
  G.to(DType::f64, kCPU);
  CHECK(G.dtype() == DType::f64);
  for (const auto& p : G.parameters()) {
    CHECK(p.tensor.dtype() == DType::f64);
    CHECK(p.tensor.is_leaf());
    CHECK(p.tensor.requires_grad());
  }
  CHECK(G.state_dict().at("main.Start-BatchNorm2d.num_batches_tracked").dtype() == DType::i64);
  CHECK(G.state_dict().at("main.End-ConvTranspose2d.weight").to_vector() ==
        before);  // float32 -> float64 is exact
  CHECK(G.forward(rng.normal({2, 8, 1, 1}, 0.0, 1.0, DType::f64)).dtype() == DType::f64);
}

TEST_CASE("losses: names and the penalty's definition", "[losses]") {
  CHECK(parse_loss("dcgan") == LossKind::dcgan);
  CHECK(parse_loss("wgan-gp") == LossKind::wgan_gp);
  CHECK(parse_loss("ragan") == LossKind::ragan);
  CHECK_THROWS_WITH(parse_loss("wgan"), Catch::Contains("dcgan, wgan-gp or ragan"));
  CHECK(std::string(loss_name(LossKind::wgan_gp)) == "wgan-gp");
  // Per-sample norms 5 and 0 (a 3-4-5 gradient and a zero one): ((5-1)^2 + (0-1)^2) / 2 = 8.5.
  const Tensor g = from_vector(std::vector<double>{3, 0, 4, 0, 0, 0, 0, 0}, {2, 1, 2, 2}, DType::f64);
  CHECK(gradient_penalty(g).item() == Approx(8.5).epsilon(1e-15));
  // WGAN-GP: -mean(y_r) + mean(y_f); the generator's loss is -mean(y_f).
  const Tensor yr = from_vector(std::vector<double>{1, 2}, {2}, DType::f64);
  const Tensor yf = from_vector(std::vector<double>{-1, 4}, {2}, DType::f64);
  CHECK(discriminator_loss(LossKind::wgan_gp, yr, yf).item() == Approx(0.0).margin(1e-15));
  CHECK(generator_loss(LossKind::wgan_gp, Tensor(), yf).item() == Approx(-1.5));
  CHECK_THROWS(generator_loss(LossKind::ragan, Tensor(), yf));  // RaGAN needs y_r
}
