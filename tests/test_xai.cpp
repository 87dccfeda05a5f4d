// Tests of xai/: the explainers against PyTorch 1.13.1 (tests/golden/xai_reference.py writes
// xai_sigmoid.safetensors and xai_raw.safetensors), DeepLIFT's completeness, the fused
// normalise-and-weight kernel (educational_grad) and the option parsers.
// Run: ./build/tests/test_xai   (Catch2; "[golden]", "[deeplift]", "[guidance]" filter)
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/ops.h"
#include "engine/rng.h"
#include "engine/safetensors.h"
#include "models/gan.h"
#include "xai/xai.h"

#ifndef XGAN_GOLDEN_DIR
#define XGAN_GOLDEN_DIR "tests/golden"
#endif

using namespace xgan;

namespace {

// float64 throughout: the engine and PyTorch differ only in the order of the conv and batch-norm
// sums (~1e-15 relative), so 1e-10 of the map's scale catches any formula difference (a wrong
// multiplier, a missed fallback, eval/train statistics) while never failing on rounding.
constexpr double kRtol = 1e-10;

// |got - want| <= kRtol * (|want| + 1e-3 * max|want|): the floor keeps elements far below the
// tensor's scale (where cancellation leaves an error relative to the scale) from dominating.
void check_close(const Tensor& got, const Tensor& want, const std::string& what) {
  INFO(what << ": got " << got.str() << ", want " << want.str());
  REQUIRE(got.shape() == want.shape());
  const auto g = got.to_vector(), w = want.to_vector();
  double scale = 0.0;
  for (double v : w) scale = std::max(scale, std::abs(v));
  size_t bad = 0, first = 0;
  for (size_t i = 0; i < w.size(); ++i)
    if (!(std::abs(g[i] - w[i]) <= kRtol * (std::abs(w[i]) + 1e-3 * scale))) {
      if (bad++ == 0) first = i;
    }
  INFO("mismatches: " << bad << " of " << w.size()
                      << (bad ? ", first at " + std::to_string(first) + ": got " + std::to_string(g[first]) +
                                    " want " + std::to_string(w[first])
                              : std::string()));
  CHECK(bad == 0);
}

struct Golden {
  TensorFile file;
  std::map<std::string, Tensor> weights;  // "D."-prefixed raw PyTorch keys
  GanConfig cfg;
  bool sigmoid = false;
};

Golden load_golden(const std::string& name) {
  Golden g;
  g.file = load_safetensors(std::string(XGAN_GOLDEN_DIR) + "/" + name + ".safetensors");
  for (const auto& [k, t] : g.file.tensors)
    if (k.rfind("D.", 0) == 0) g.weights[k] = t;
  g.cfg.image_size = std::stoi(g.file.metadata.at("image"));
  g.cfg.width = std::stoi(g.file.metadata.at("width"));
  g.cfg.channels = std::stoi(g.file.metadata.at("channels"));
  g.sigmoid = g.file.metadata.at("sigmoid") == "1";
  return g;
}

// A fresh float64 D with the golden weights and running statistics.
GanDiscriminator make_d(const Golden& g) {
  GanDiscriminator D(g.cfg, g.sigmoid);
  D.to(DType::f64, kCPU);
  D.load_state_dict(g.weights, "D.");
  return D;
}

const XaiMethod kMethods[] = {XaiMethod::saliency, XaiMethod::inputxgrad, XaiMethod::deeplift};

}  // namespace

TEST_CASE("explanations match PyTorch (both batch-norm modes, with and without sigmoid)", "[xai][golden]") {
  for (const char* file : {"xai_sigmoid", "xai_raw"}) {
    const Golden g = load_golden(file);
    const Tensor x = g.file.tensors.at("x");
    REQUIRE(x.dtype() == DType::f64);
    for (XaiBatchNorm bn : {XaiBatchNorm::eval, XaiBatchNorm::captum}) {
      const std::string bn_name = bn == XaiBatchNorm::eval ? "eval" : "captum";
      for (XaiMethod m : kMethods) {
        const std::string key = bn_name + "." + xai_method_name(m);
        SECTION(std::string(file) + " " + key) {
          GanDiscriminator D = make_d(g);
          const auto before = D.state_dict();
          const Tensor map = explain(D, x, m, bn);
          CHECK_FALSE(map.requires_grad());
          check_close(map, g.file.tensors.at(key), std::string(file) + " " + key);
          const auto after = D.state_dict();
          for (const auto& b : D.buffers()) {
            INFO(b.name);
            if (bn == XaiBatchNorm::eval) {
              // eval mode updates nothing
              CHECK(after.at(b.name).to_vector() == before.at(b.name).to_vector());
              continue;
            }
            // captum: the running statistics after that one forward (N or 2N rows) match PyTorch's
            const std::string raw = "captum." + std::string(xai_method_name(m)) + ".D." + [&] {
              std::string s = b.name;  // canonical -> raw PyTorch key
              auto p = s.find("_0.");
              if (p != std::string::npos) s.replace(p, 3, " [0].");
              return s;
            }();
            REQUIRE(g.file.tensors.count(raw) == 1);
            if (b.tensor.dtype() == DType::i64)
              CHECK(after.at(b.name).to_vector() == g.file.tensors.at(raw).to_vector());
            else
              check_close(after.at(b.name), g.file.tensors.at(raw), raw);
          }
        }
      }
    }
  }
}

TEST_CASE("DeepLIFT completeness in eval mode: sum of attributions = D(x) - D(0) per sample",
          "[xai][deeplift]") {
  for (const char* file : {"xai_sigmoid", "xai_raw"}) {
    const Golden g = load_golden(file);
    GanDiscriminator D = make_d(g);
    // the golden images and fresh ones of a wider range, so both LeakyReLU sides and the
    // sigmoid's curvature are exercised
    Generator rng(7);
    const Tensor xr =
        rng.normal({4, g.cfg.channels, g.cfg.image_size, g.cfg.image_size}, 0.0, 2.0, DType::f64);
    for (const Tensor& x : {g.file.tensors.at("x"), xr}) {
      const Tensor attr = explain(D, x, XaiMethod::deeplift, XaiBatchNorm::eval);
      Tensor dx, d0;
      {
        NoGradGuard ng;
        dx = D.forward(x, false);
        d0 = D.forward(zeros_like(x), false);
      }
      const auto a = sum(attr, {1, 2, 3}).to_vector(), yx = dx.to_vector(), y0 = d0.to_vector();
      for (size_t i = 0; i < a.size(); ++i) {
        INFO(file << " sample " << i << ": sum attr " << a[i] << ", D(x) - D(0) " << yx[i] - y0[i]);
        // float64 telescoping: each layer's multiplier reproduces its exact forward difference,
        // so only rounding of the sums remains (~1e-15 of the outputs' size)
        CHECK(std::abs(a[i] - (yx[i] - y0[i])) <= 1e-10 * std::max({std::abs(yx[i]), std::abs(y0[i]), 1e-3}));
      }
    }
  }
}

TEST_CASE("explain checks its arguments", "[xai]") {
  const Golden g = load_golden("xai_raw");
  GanDiscriminator D = make_d(g);
  const Tensor x = g.file.tensors.at("x");
  CHECK_THROWS_WITH(explain(D, x, XaiMethod::none, XaiBatchNorm::eval), Catch::Contains("none"));
  CHECK_THROWS(explain(D, zeros({3, 16, 16}, DType::f64), XaiMethod::saliency, XaiBatchNorm::eval));
  // works under NoGradGuard too (the training step calls it from there), and x's history is untouched
  NoGradGuard ng;
  const Tensor m = explain(D, x, XaiMethod::saliency, XaiBatchNorm::eval);
  check_close(m, g.file.tensors.at("eval.saliency"), "saliency under NoGradGuard");
}

namespace {

Tensor random_tensor(const Shape& s, DType dt, uint64_t seed) {
  Generator rng(seed);
  return rng.normal(s, 0.0, 1.0, dt);
}

template <class T>
void check_guidance(DType dt) {
  const Shape s{4, 2, 5, 3};
  const int64_t per = 2 * 5 * 3;
  const Tensor M = random_tensor(s, dt, 11), g = random_tensor(s, dt, 12);
  const auto m = M.to_vector(), gv = g.to_vector();
  for (XaiNorm norm : {XaiNorm::batch, XaiNorm::sample}) {
    const auto ge = educational_grad(M, g, norm, Guidance::elementwise);
    const auto ga = educational_grad(M, g, norm, Guidance::as_coded);
    REQUIRE(ge.E.shape() == s);
    REQUIRE(ge.guided.dtype() == dt);
    const T* E = ge.E.template data<T>();
    // E is the same in both modes
    CHECK(ge.E.to_vector() == ga.E.to_vector());
    // E in [1, 2], min 1 and max 2 over each normalisation group, and the affine map of M
    const int64_t groups = norm == XaiNorm::batch ? 1 : s[0], n = M.numel() / groups;
    for (int64_t k = 0; k < groups; ++k) {
      const auto lo = std::min_element(m.begin() + k * n, m.begin() + (k + 1) * n);
      const auto hi = std::max_element(m.begin() + k * n, m.begin() + (k + 1) * n);
      T emin = 3, emax = 0;
      for (int64_t i = k * n; i < (k + 1) * n; ++i) {
        CHECK(E[i] >= T(1));
        CHECK(E[i] <= T(2));
        emin = std::min(emin, E[i]);
        emax = std::max(emax, E[i]);
        // the formula itself, evaluated as the kernel does in T
        const T want = T(1) + (T(m[i]) - T(*lo)) / (T(*hi) - T(*lo));
        CHECK(E[i] == want);
      }
      CHECK(emin == T(1));
      CHECK(emax == T(2));
    }
    if (norm == XaiNorm::sample) CHECK(per == n);
    // elementwise: exactly E (.) g
    const T* G = ge.guided.template data<T>();
    for (int64_t i = 0; i < M.numel(); ++i) CHECK(G[i] == E[i] * T(gv[i]));
    // as-coded: (sum of E over the whole batch, accumulated in double) * g
    double sum_e = 0.0;
    for (int64_t i = 0; i < M.numel(); ++i) sum_e += static_cast<double>(E[i]);
    const T* A = ga.guided.template data<T>();
    for (int64_t i = 0; i < M.numel(); ++i) CHECK(A[i] == static_cast<T>(sum_e) * T(gv[i]));
  }
}

}  // namespace

namespace {
// The rescale rule written with engine ops, one elementwise op at a time (how xai.cpp computed it
// before the fused kernel): G * M, M = (f(a) - f(b)) / (a - b) on both halves, f' of each half
// where |a - b| < 1e-10; the masks make each branch exact (x * 1 + y * 0 == x).
Tensor rescale_with_ops(const Tensor& I, const Tensor& G, DeepLiftNonlinearity f, double slope) {
  Tensor fI, dfI;
  if (f == DeepLiftNonlinearity::leaky_relu) {
    fI = leaky_relu(I, slope);
    dfI = leaky_relu_grad(I, ones_like(I), slope);
  } else if (f == DeepLiftNonlinearity::sigmoid) {
    fI = sigmoid(I);
    dfI = fI * (1.0 - fI);
  } else {
    fI = tanh(I);
    dfI = 1.0 - fI * fI;
  }
  const int64_t half = I.numel() / 2;
  auto halves = [half](const Tensor& t) {
    Tensor t2 = reshape(t, {2, half});
    return std::make_pair(slice(t2, 0, 0, 1), slice(t2, 0, 1, 1));
  };
  auto [a, b] = halves(I);
  auto [fa, fb] = halves(fI);
  auto [da, db] = halves(dfI);
  const Tensor din = a - b;
  const Tensor tiny = equal(sign(abs(din) - 1e-10), full({}, -1.0, din.dtype()));
  const Tensor kept = 1.0 - tiny;
  const Tensor m = (fa - fb) / (din * kept + tiny);
  return G * reshape(concat({m * kept + da * tiny, m * kept + db * tiny}, 0), I.shape());
}
}  // namespace

TEST_CASE("the fused DeepLIFT rescale kernel equals the rule written with engine ops, bit for bit",
          "[xai][deeplift]") {
  for (DType dt : {DType::f32, DType::f64}) {
    // Pairs (I[j], I[j + 12]): equal, 1e-12 apart (the f' fallback), either side of LeakyReLU's
    // kink, saturated sigmoid/tanh, then random ones.
    std::vector<double> a = {0.5, -0.3, 0.0, 0.0, -1e-3, 2.0, 40.0, -40.0, 0.0, 1.5, -2.5, 3.0};
    std::vector<double> b = {0.5,  -0.3 + 1e-12, 0.0,   -1.0, 1e-3, 2.0 + 1e-12,
                             35.0, -45.0,        1e-11, -1.5, 0.1,  0.0};
    const Tensor r = random_tensor({12}, DType::f64, 21);
    for (double v : r.to_vector()) a.push_back(v), b.push_back(v * 0.5 - 0.2);
    std::vector<double> pairs = a;
    pairs.insert(pairs.end(), b.begin(), b.end());
    const int64_t n = static_cast<int64_t>(a.size());
    const Tensor I = from_vector(pairs, {2, n}, dt);
    const Tensor G = random_tensor({2, n}, dt, 22);
    for (auto f :
         {DeepLiftNonlinearity::leaky_relu, DeepLiftNonlinearity::sigmoid, DeepLiftNonlinearity::tanh}) {
      INFO("dtype " << dtype_name(dt) << " nonlinearity " << static_cast<int>(f));
      Tensor out = empty(I.shape(), dt);
      cpu::deeplift_rescale(I, G, f, 0.2, out);
      const auto got = out.to_vector(), want = rescale_with_ops(I, G, f, 0.2).to_vector();
      REQUIRE(got.size() == want.size());
      for (size_t i = 0; i < got.size(); ++i) {
        INFO("element " << i);
        CHECK(got[i] == want[i]);
      }
    }
  }
  Tensor out = empty({3, 2});
  CHECK_THROWS_WITH(cpu::deeplift_rescale(zeros({3, 2}), zeros({3, 2}), DeepLiftNonlinearity::tanh, 0.0, out),
                    Catch::Contains("2N batch"));
}

TEST_CASE("educational_grad: E in [1, 2], elementwise and as-coded guidance", "[xai][guidance]") {
  SECTION("float32") { check_guidance<float>(DType::f32); }
  SECTION("float64") { check_guidance<double>(DType::f64); }
}

TEST_CASE("educational_grad: a constant map gives E = 1 (no division by zero)", "[xai][guidance]") {
  const Tensor g = random_tensor({2, 1, 3, 3}, DType::f32, 5);
  for (XaiNorm norm : {XaiNorm::batch, XaiNorm::sample}) {
    const auto r = educational_grad(full({2, 1, 3, 3}, 0.25), g, norm, Guidance::elementwise);
    for (double e : r.E.to_vector()) CHECK(e == 1.0);
    CHECK(r.guided.to_vector() == g.to_vector());
    const auto a = educational_grad(zeros({2, 1, 3, 3}), g, norm, Guidance::as_coded);
    const auto gv = g.to_vector(), av = a.guided.to_vector();
    for (size_t i = 0; i < gv.size(); ++i)
      CHECK(av[i] == static_cast<double>(static_cast<float>(18.0 * gv[i])));
  }
  // per sample: one constant sample among varying ones gets E = 1, the others still span [1, 2]
  Tensor M = random_tensor({3, 1, 2, 2}, DType::f64, 9);
  for (int i = 4; i < 8; ++i) M.data<double>()[i] = -0.5;
  const auto r = educational_grad(M, zeros_like(M), XaiNorm::sample, Guidance::elementwise);
  const auto e = r.E.to_vector();
  for (int i = 4; i < 8; ++i) CHECK(e[static_cast<size_t>(i)] == 1.0);
  CHECK(*std::max_element(e.begin(), e.begin() + 4) == 2.0);
  CHECK(*std::max_element(e.begin() + 8, e.end()) == 2.0);
}

TEST_CASE("educational_grad checks shapes and dtypes", "[xai][guidance]") {
  CHECK_THROWS_WITH(
      educational_grad(zeros({2, 1, 3, 3}), zeros({2, 1, 3, 2}), XaiNorm::batch, Guidance::elementwise),
      Catch::Contains("differ in shape"));
  CHECK_THROWS(educational_grad(zeros({2, 1, 3, 3}), zeros({2, 1, 3, 3}, DType::f64), XaiNorm::batch,
                                Guidance::elementwise));
}

TEST_CASE("option parsers accept the documented names and list them on error", "[xai]") {
  CHECK(parse_xai_method("none") == XaiMethod::none);
  CHECK(parse_xai_method("saliency") == XaiMethod::saliency);
  CHECK(parse_xai_method("inputxgrad") == XaiMethod::inputxgrad);
  CHECK(parse_xai_method("deeplift") == XaiMethod::deeplift);
  for (XaiMethod m : {XaiMethod::none, XaiMethod::saliency, XaiMethod::inputxgrad, XaiMethod::deeplift})
    CHECK(parse_xai_method(xai_method_name(m)) == m);
  CHECK(parse_xai_bn("eval") == XaiBatchNorm::eval);
  CHECK(parse_xai_bn("captum") == XaiBatchNorm::captum);
  CHECK(parse_xai_norm("batch") == XaiNorm::batch);
  CHECK(parse_xai_norm("sample") == XaiNorm::sample);
  CHECK(parse_guidance("elementwise") == Guidance::elementwise);
  CHECK(parse_guidance("as-coded") == Guidance::as_coded);
  CHECK_THROWS_WITH(parse_xai_method("lime"),
                    Catch::Contains("lime") && Catch::Contains("saliency, inputxgrad, deeplift"));
  CHECK_THROWS_WITH(parse_xai_bn("train"), Catch::Contains("eval, captum"));
  CHECK_THROWS_WITH(parse_xai_norm("global"), Catch::Contains("batch, sample"));
  CHECK_THROWS_WITH(parse_guidance("as_coded"), Catch::Contains("elementwise, as-coded"));
}

TEST_CASE("explanations in float32 (the training dtype) agree with the float64 golden maps",
          "[xai][golden]") {
  const Golden g = load_golden("xai_sigmoid");
  const Tensor x = g.file.tensors.at("x").to(DType::f32);
  for (XaiMethod m : kMethods) {
    GanDiscriminator D(g.cfg, g.sigmoid);
    D.to(DType::f32, kCPU);
    D.load_state_dict(g.weights, "D.");
    const Tensor map = explain(D, x, m, XaiBatchNorm::eval);
    REQUIRE(map.dtype() == DType::f32);
    const auto got = map.to_vector(),
               want = g.file.tensors.at(std::string("eval.") + xai_method_name(m)).to_vector();
    double scale = 0.0, err = 0.0;
    for (size_t i = 0; i < want.size(); ++i) {
      scale = std::max(scale, std::abs(want[i]));
      err = std::max(err, std::abs(got[i] - want[i]));
    }
    INFO(xai_method_name(m) << ": max error " << err << " of scale " << scale);
    // float32 through three convs and the rescale ratios (f(a) - f(b)) / (a - b), which lose
    // digits where a and b are close (DeepLIFT measured 6e-5 of the scale here, the gradient
    // maps 6e-7); 5e-4 leaves room for another summation order (threads) and is still far
    // below the differences between methods and batch-norm modes (> 20% of the scale)
    CHECK(err <= 5e-4 * scale);
  }
}

TEST_CASE("explain_recorded equals a second captum forward: same maps, same buffers, bit for bit", "[xai]") {
  // The G step's shortcut (train/step.cpp) must not change a single number: two Ds with the same
  // state each run the loss's forward D(x); one is then explained from a fresh forward (explain),
  // the other from the recorded graph with the batch-norm update replayed (explain_recorded).
  // With `wgan`, the map's gradient comes from WGAN-GP's loss instead: -N times the gradient of
  // -mean(y) is the gradient of sum(y), exactly for a batch of 2^k (so the first two samples).
  for (const char* name : {"xai_sigmoid", "xai_raw"})
    for (bool wgan : {false, true}) {
      const Golden g = load_golden(name);
      const Tensor x = wgan ? slice(g.file.tensors.at("x"), 0, 0, 2) : g.file.tensors.at("x");
      for (XaiMethod m : {XaiMethod::saliency, XaiMethod::inputxgrad}) {
        INFO(name << " " << xai_method_name(m) << (wgan ? " from the WGAN-GP loss gradient" : ""));
        GanDiscriminator Da = make_d(g), Db = make_d(g);
        Tensor xa = x.clone(), xb = x.clone();
        xa.set_requires_grad(true);
        xb.set_requires_grad(true);
        const Tensor ya = Da.forward(xa, true);
        (void)Db.forward(xb, true);
        const Tensor want = explain(Db, x, m, XaiBatchNorm::captum);
        Tensor sum_grad;
        if (wgan) sum_grad = grad({-mean(ya)}, {xa})[0] * -static_cast<double>(x.size(0));
        const Tensor got = explain_recorded(Da, ya, xa, m, sum_grad);
        CHECK(got.to_vector() == want.to_vector());
        const auto sa = Da.state_dict(), sb = Db.state_dict();
        for (const auto& [k, t] : sb) {
          INFO(k);
          CHECK(sa.at(k).to_vector() == t.to_vector());
        }
      }
    }
  // It refuses what it cannot shortcut.
  const Golden g = load_golden("xai_raw");
  GanDiscriminator D = make_d(g);
  Tensor xl = g.file.tensors.at("x").clone();
  xl.set_requires_grad(true);
  const Tensor y = D.forward(xl, true);
  CHECK_THROWS_WITH(explain_recorded(D, y, xl, XaiMethod::deeplift),
                    Catch::Contains("saliency or inputxgrad"));
}
