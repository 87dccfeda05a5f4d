// Golden comparisons against PyTorch 1.13.1: forward values, gradients, the WGAN-GP double
// backward and an Adam run, read from tests/golden/*.safetensors (regenerate with
// tests/golden/generate.py; the files are committed, torch is not needed here).
// Run: ./build/tests/test_golden   (Catch2; add "[golden]" or a test name to filter)
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "engine/safetensors.h"
#include "tensor_compare.h"

// The build defines it (tests/CMakeLists.txt); the fallback serves a run from the repository root.
#ifndef XGAN_GOLDEN_DIR
#define XGAN_GOLDEN_DIR "tests/golden"
#endif

using namespace xgan;
using xgan::test::compare;
using xgan::test::Comparison;
using xgan::test::Tol;

namespace {

// ---- tolerances (the comparison itself: tests/tensor_compare.h) -----------------------------

// float64: only the order of floating-point operations differs from PyTorch; that costs ~1e-14
// relative here, so 1e-10 still catches any formula difference (eps placement, biased/unbiased
// variance) that a float32 comparison would hide.
constexpr Tol kF64{1e-10, 1e-3};
// float32 sums (conv over K = Ci*k*k or N*OH*OW terms, batch-norm statistics over N*H*W): the
// accumulation order differs (GEMM blocking, OpenMP); PyTorch's own float32 results are up to
// ~6e-6 off the exact values judged this way, so 3e-5 leaves room for ours being as far the
// other side.
constexpr Tol kF32Sum{3e-5, 1e-2};
// float32 elementwise forward (exp, tanh, x * slope): libm and PyTorch's vectorised (Sleef)
// functions differ by a few ulp; 1e-6 is ~8 ulp.
constexpr Tol kF32Elem{1e-6, 1e-3};
// float32 elementwise derivatives: 1 - y^2, y(1 - y) and sigmoid(x) - t cancel where the
// function saturates, so one ulp of y becomes ~1e-5 of the derivative there.
constexpr Tol kF32ElemGrad{2e-5, 1e-2};
// float32 mean-reduced losses: a mean of 24 terms, each a few ulp off.
constexpr Tol kF32Loss{2e-6};

// ---- golden files -------------------------------------------------------------------------------

struct Golden {
  std::string file;
  TensorFile tf;

  explicit Golden(const std::string& name)
      : file(std::string(XGAN_GOLDEN_DIR) + "/" + name + ".safetensors"), tf(load_safetensors(file)) {}

  const Tensor& at(const std::string& key) const {
    auto it = tf.tensors.find(key);
    if (it == tf.tensors.end()) throw std::runtime_error(file + ": no tensor '" + key + "'");
    return it->second;
  }
  // A fresh copy, so in-place updates (running statistics, Adam) never touch the golden data.
  Tensor copy(const std::string& key) const { return at(key).clone(); }
  Tensor leaf(const std::string& key) const {
    Tensor t = copy(key);
    t.set_requires_grad(true);
    return t;
  }
  double meta(const std::string& key) const {
    auto it = tf.metadata.find(key);
    if (it == tf.metadata.end()) throw std::runtime_error(file + ": no metadata '" + key + "'");
    return std::stod(it->second);
  }
};

// Known, non-trivial values at the scale of `like` (a golden gradient): what .grad holds before
// backward in the accumulation checks.
Tensor garbage_like(const Tensor& like) {
  double scale = 0;
  for (double v : like.to_vector()) scale = std::max(scale, std::abs(v));
  std::vector<double> v(static_cast<size_t>(like.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = (scale > 0 ? scale : 1.0) * std::sin(1.3 * double(i) + 0.5);
  return from_vector(v, like.shape(), like.dtype());
}

Tensor plus(const Tensor& a, const Tensor& b) {  // golden + garbage, computed in double
  std::vector<double> x = a.to_vector(), y = b.to_vector();
  for (size_t i = 0; i < x.size(); ++i) x[i] += y[i];
  return from_vector(x, a.shape(), a.dtype());
}

// Runs y = fn(inputs) on fresh leaves named prefix.<input>, back-propagates the golden upstream
// gradient prefix.gy and checks y and every prefix.g<input>. With `accumulate`, each .grad is
// pre-filled with garbage first and must end as garbage + golden (backward accumulates).
using Fn = std::function<Tensor(const std::vector<Tensor>&)>;
void check_first_order(const Golden& g, const std::string& prefix, const std::vector<std::string>& names,
                       const Fn& fn, Tol fwd, Tol bwd, bool accumulate) {
  std::vector<Tensor> leaves, before;
  for (const auto& n : names) {
    leaves.push_back(g.leaf(prefix + "." + n));
    if (accumulate) {
      before.push_back(garbage_like(g.at(prefix + ".g" + n)));
      leaves.back().set_grad(before.back().clone());
    }
  }
  Tensor y = fn(leaves);
  CHECK_CLOSE(prefix + ".y", y, g.at(prefix + ".y"), fwd);
  backward({y}, {g.copy(prefix + ".gy")});
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string key = prefix + ".g" + names[i];
    const Tensor want = accumulate ? plus(g.at(key), before[i]) : g.at(key);
    CHECK_CLOSE(key + (accumulate ? " (garbage + golden)" : ""), leaves[i].grad(), want, bwd);
  }
}

Tol sum_tol(const std::string& tag) { return tag == "f64" ? kF64 : kF32Sum; }

}  // namespace

// ---- the comparison helper itself must be able to fail ------------------------------------------

TEST_CASE("golden: the comparison helper reports mismatches", "[golden]") {
  const Golden g("conv2d");
  const Tensor& want = g.at("f64.s2p1k4.y");
  CHECK(compare("same", want.clone(), want, kF64).ok);

  SECTION("one element off by 1e-8 relative fails the float64 tolerance") {
    Tensor bad = want.clone();
    bad.data<double>()[7] *= 1 + 1e-8;
    const Comparison c = compare("perturbed", bad, want, kF64);
    INFO(c.report);
    CHECK_FALSE(c.ok);
    CHECK(c.report.find("worst at [7]") != std::string::npos);
  }
  SECTION("NaN fails") {
    Tensor bad = want.clone();
    bad.data<double>()[3] = std::nan("");
    CHECK_FALSE(compare("nan", bad, want, kF32Sum).ok);
  }
  SECTION("shape and dtype mismatches fail") {
    CHECK_FALSE(compare("shape", reshape(want.clone(), {-1}), want, kF64).ok);
    CHECK_FALSE(compare("dtype", want.to(DType::f32), want, kF32Sum).ok);
  }
  SECTION("a perturbed input through conv2d is caught") {
    // A 1e-7 change of one input value moves the outputs it touches by ~1e-7 relative: far
    // beyond float64 noise, so the tolerance is tight enough to see a small real bug.
    Tensor x = g.copy("f64.s2p1k4.x");
    x.data<double>()[10] += 1e-7;
    Tensor y = conv2d(x, g.at("f64.s2p1k4.w"), 2, 1);
    const Comparison c = compare("conv2d(perturbed x)", y, want, kF64);
    INFO(c.report);
    CHECK_FALSE(c.ok);
  }
}

// ---- convolutions ----------------------------------------------------------------------------------

TEST_CASE("golden: conv2d forward and grads of x and w", "[golden]") {
  const Golden g("conv2d");
  for (const char* tag : {"f64", "f32"})
    for (const char* var : {"s2p1k4", "s1p0k4"}) {
      const std::string p = std::string(tag) + "." + var;
      const int s = int(g.meta(p + ".stride")), pad = int(g.meta(p + ".pad"));
      const Fn fn = [&](const std::vector<Tensor>& in) { return conv2d(in[0], in[1], s, pad); };
      for (bool acc : {false, true}) {
        INFO(p << (acc ? " with .grad pre-filled" : ""));
        check_first_order(g, p, {"x", "w"}, fn, sum_tol(tag), sum_tol(tag), acc);
      }
    }
}

TEST_CASE("golden: conv_transpose2d forward and grads of x and w", "[golden]") {
  const Golden g("conv_transpose2d");
  for (const char* tag : {"f64", "f32"})
    for (const char* var : {"s2p1k4", "s1p0k4"}) {
      const std::string p = std::string(tag) + "." + var;
      const int s = int(g.meta(p + ".stride")), pad = int(g.meta(p + ".pad"));
      const Fn fn = [&](const std::vector<Tensor>& in) { return conv_transpose2d(in[0], in[1], s, pad); };
      for (bool acc : {false, true}) {
        INFO(p << (acc ? " with .grad pre-filled" : ""));
        check_first_order(g, p, {"x", "w"}, fn, sum_tol(tag), sum_tol(tag), acc);
      }
    }
}

// ---- batch norm ----------------------------------------------------------------------------------

TEST_CASE("golden: batch_norm train and eval, grads and running statistics", "[golden]") {
  const Golden g("batch_norm");
  const double momentum = g.meta("all.momentum"), eps = g.meta("all.eps");
  for (const char* tag : {"f64", "f32"})
    for (bool training : {true, false})
      for (bool acc : {false, true}) {
        const std::string p = std::string(tag) + (training ? ".train" : ".eval");
        INFO(p << (acc ? " with .grad pre-filled" : ""));
        Tensor rm = g.copy(p + ".running_mean0"), rv = g.copy(p + ".running_var0");
        const Fn fn = [&](const std::vector<Tensor>& in) {
          return batch_norm(in[0], in[1], in[2], rm, rv, training, momentum, eps);
        };
        check_first_order(g, p, {"x", "gamma", "beta"}, fn, sum_tol(tag), sum_tol(tag), acc);
        // Train mode: r = 0.9 r + 0.1 batch stat (unbiased variance); eval: untouched.
        CHECK_CLOSE(p + ".running_mean", rm, g.at(p + ".running_mean"), sum_tol(tag));
        CHECK_CLOSE(p + ".running_var", rv, g.at(p + ".running_var"), sum_tol(tag));
      }
}

// ---- activations -------------------------------------------------------------------------------

TEST_CASE("golden: leaky_relu(0.2), sigmoid, tanh", "[golden]") {
  const Golden g("activations");
  const double slope = g.meta("leaky_relu.slope");
  const std::vector<std::pair<std::string, Fn>> ops = {
      {"leaky_relu", [&](const std::vector<Tensor>& in) { return leaky_relu(in[0], slope); }},
      {"sigmoid", [](const std::vector<Tensor>& in) { return sigmoid(in[0]); }},
      {"tanh", [](const std::vector<Tensor>& in) { return tanh(in[0]); }},
  };
  // x holds +-0 (PyTorch's leaky_relu gradient there is the slope), +-50 and +-1e-30.
  for (const char* tag : {"f64", "f32"})
    for (const auto& [op, fn] : ops) {
      const std::string p = std::string(tag) + "." + op;
      INFO(p);
      const bool f64 = std::string(tag) == "f64";
      check_first_order(g, p, {"x"}, fn, f64 ? kF64 : kF32Elem, f64 ? kF64 : kF32ElemGrad, false);
    }
}

// ---- losses --------------------------------------------------------------------------------------

TEST_CASE("golden: binary_cross_entropy, log clamped at -100, and its gradient", "[golden]") {
  const Golden g("bce");
  for (const char* tag : {"f64", "f32"}) {
    const std::string p = tag;
    const bool f64 = p == "f64";
    INFO(p);
    // p in {0, 1, beyond and inside the clamp} with hard and soft targets.
    Tensor loss = binary_cross_entropy(g.at(p + ".clamp.p"), g.at(p + ".clamp.target"));
    CHECK_CLOSE(p + ".clamp.loss", loss, g.at(p + ".clamp.loss"), f64 ? kF64 : kF32Loss);

    Tensor prob = g.leaf(p + ".grad.p");
    Tensor l = binary_cross_entropy(prob, g.at(p + ".grad.target"));
    CHECK_CLOSE(p + ".grad.loss", l, g.at(p + ".grad.loss"), f64 ? kF64 : kF32Loss);
    backward({l}, {g.copy(p + ".grad.gy")});
    CHECK_CLOSE(p + ".grad.gp", prob.grad(), g.at(p + ".grad.gp"), f64 ? kF64 : kF32ElemGrad);
  }
}

TEST_CASE("golden: binary_cross_entropy_with_logits and grads of input and target", "[golden]") {
  const Golden g("bce_with_logits");
  for (const char* tag : {"f64", "f32"}) {
    const std::string p = tag;
    const bool f64 = p == "f64";
    INFO(p << ": x includes +-50, +-100, 0");
    Tensor x = g.leaf(p + ".x"), t = g.leaf(p + ".target");
    Tensor loss = binary_cross_entropy_with_logits(x, t);
    CHECK_CLOSE(p + ".loss", loss, g.at(p + ".loss"), f64 ? kF64 : kF32Loss);
    backward({loss}, {g.copy(p + ".gy")});
    CHECK_CLOSE(p + ".gx", x.grad(), g.at(p + ".gx"), f64 ? kF64 : kF32ElemGrad);
    CHECK_CLOSE(p + ".gtarget", t.grad(), g.at(p + ".gtarget"), f64 ? kF64 : kF32ElemGrad);
  }
}

// ---- Adam ----------------------------------------------------------------------------------------

TEST_CASE("golden: Adam, three float32 steps with lr 1e-4 and betas (0.5, 0.999)", "[golden]") {
  const Golden g("adam");
  const int steps = int(g.meta("config.steps")), n = int(g.meta("config.params"));
  AdamConfig cfg{g.meta("config.lr"), g.meta("config.beta1"), g.meta("config.beta2"), g.meta("config.eps"),
                 0.0};
  std::vector<Tensor> params;
  for (int i = 0; i < n; ++i) params.push_back(g.leaf("init.p" + std::to_string(i)));
  Adam opt(params, cfg);
  // Parameters: the operation order is PyTorch's, but sqrt/div/the bias corrections may round
  // differently; that moves the ~1e-4 update by a few ulp of itself, so the parameter by at most
  // ~2 ulp of its own value (2.4e-7), judged against 1% of the tensor's scale near zero.
  const Tol param_tol{2.4e-7, 1e-2};
  // m and v: no cancellation in v, and m's products by 0.5 are exact, so a few ulp per element
  // (4.8e-7) with no floor (v spans 1e-23..1e3 here: g includes 0, 1e-10 and 1e3).
  const Tol state_tol{4.8e-7};
  for (int s = 1; s <= steps; ++s) {
    const std::string p = "step" + std::to_string(s);
    for (int i = 0; i < n; ++i) params[size_t(i)].set_grad(g.copy(p + ".g" + std::to_string(i)));
    opt.step();
    for (int i = 0; i < n; ++i) {
      const std::string k = std::to_string(i);
      const size_t u = size_t(i);
      CHECK_CLOSE(p + ".p" + k, opt.params()[u], g.at(p + ".p" + k), param_tol);
      CHECK_CLOSE(p + ".exp_avg" + k, opt.exp_avg()[u], g.at(p + ".exp_avg" + k), state_tol);
      CHECK_CLOSE(p + ".exp_avg_sq" + k, opt.exp_avg_sq()[u], g.at(p + ".exp_avg_sq" + k), state_tol);
      CHECK(opt.steps()[u] == s);
    }
  }
}

// ---- WGAN-GP: a gradient of a gradient through conv -> batch norm (train) -> leaky_relu -> conv --

TEST_CASE("golden: WGAN-GP penalty and its gradient (double backward)", "[golden]") {
  const Golden g("wgan_gp");
  const int s1 = int(g.meta("conv1.stride")), p1 = int(g.meta("conv1.pad"));
  const int s2 = int(g.meta("conv2.stride")), p2 = int(g.meta("conv2.pad"));
  const double momentum = g.meta("bn.momentum"), eps = g.meta("bn.eps"), slope = g.meta("leaky_relu.slope");
  const std::vector<std::string> names = {"x", "w1", "gamma", "beta", "w2"};
  for (const char* tag : {"f64", "f32"}) {
    const std::string p = tag;
    // float32: the penalty's gradient chains ~10 sums and cancels in grad_x; PyTorch's own
    // float32 result is ~4e-6 off the exact one judged this way, as for the plain sums.
    const Tol tol = sum_tol(p);
    // d penalty / d beta is exactly 0 in PyTorch (beta only moves leaky_relu's kink); allow
    // rounding-level values at the scale of the other weight gradients (~1).
    const Tol zero_tol{0, 0, p == "f64" ? 1e-13 : 1e-6};
    for (bool use_backward : {false, true}) {
      INFO(p << (use_backward ? ": backward(penalty) into pre-filled .grad" : ": grad(penalty, inputs)"));
      std::vector<Tensor> in;
      for (const auto& n : names) in.push_back(g.leaf(p + "." + n));
      Tensor rm = g.copy(p + ".running_mean0"), rv = g.copy(p + ".running_var0");
      Tensor h = conv2d(in[0], in[1], s1, p1);
      h = batch_norm(h, in[2], in[3], rm, rv, /*training=*/true, momentum, eps);
      h = leaky_relu(h, slope);
      Tensor out = conv2d(h, in[4], s2, p2);  // [N, 1, 1, 1]: one critic value per image
      CHECK_CLOSE(p + ".out", out, g.at(p + ".out"), tol);
      CHECK_CLOSE(p + ".running_mean", rm, g.at(p + ".running_mean"), tol);
      CHECK_CLOSE(p + ".running_var", rv, g.at(p + ".running_var"), tol);

      Tensor gx = grad({sum(out)}, {in[0]}, {}, /*create_graph=*/true)[0];
      CHECK_CLOSE(p + ".grad_x", gx, g.at(p + ".grad_x"), tol);
      const int64_t n = gx.size(0);
      Tensor norms = sqrt(sum(square(reshape(gx, {n, -1})), {1}));
      Tensor penalty = mean(square(sub(norms, 1.0)));
      CHECK_CLOSE(p + ".penalty", penalty, g.at(p + ".penalty"), tol);

      std::vector<Tensor> grads, before;
      if (use_backward) {
        // The trainer's path: backward accumulates into .grad, pre-filled with garbage.
        for (size_t i = 0; i < in.size(); ++i) {
          const Tensor& want = g.at(p + ".g" + names[i]);
          before.push_back(garbage_like(names[i] == "beta" ? g.at(p + ".ggamma") : want));
          in[i].set_grad(before.back().clone());
        }
        backward(penalty);
        for (auto& t : in) grads.push_back(t.grad());
      } else {
        grads = grad({penalty}, in, {}, false, /*allow_unused=*/true);
      }
      for (size_t i = 0; i < in.size(); ++i) {
        const std::string key = p + ".g" + names[i];
        Tensor want = g.at(key);
        Tol t = names[i] == "beta" ? zero_tol : tol;
        if (use_backward) {
          // garbage + golden: the zero-gradient beta is judged against its garbage's scale.
          want = plus(want, before[i]);
          if (names[i] == "beta") t = tol;
        }
        CHECK_CLOSE(key, grads[i], want, t);
      }
    }
  }
}

// ---- metrics ops: pooling, softmax, linear -------------------------------------------------------

TEST_CASE("golden: max_pool2d and avg_pool2d forward and grads", "[golden]") {
  const Golden g("pool");
  for (const char* tag : {"f64", "f32"}) {
    const bool f64 = std::string(tag) == "f64";
    for (const char* var : {"max_k3s2p0", "max_k3s1p1", "max_k2s2p0", "avg_k3s1p1_cip", "avg_k3s1p1_nocip"}) {
      const std::string p = std::string(tag) + "." + var;
      const int k = int(g.meta(p + ".kernel")), s = int(g.meta(p + ".stride")), pad = int(g.meta(p + ".pad"));
      const bool is_max = std::string(var).rfind("max", 0) == 0;
      const bool cip = !is_max && g.meta(p + ".count_include_pad") != 0;
      const Fn fn = [&](const std::vector<Tensor>& in) {
        return is_max ? max_pool2d(in[0], k, s, pad) : avg_pool2d(in[0], k, s, pad, cip);
      };
      // Max pooling copies values (exact), and its gradient adds at most 9 overlapping window
      // gradients; average pooling sums 9 terms: float32 differs from PyTorch by summation order
      // only, which kF32Sum covers.
      for (bool acc : {false, true}) {
        INFO(p << (acc ? " with .grad pre-filled" : ""));
        check_first_order(g, p, {"x"}, fn, f64 ? kF64 : kF32Sum, f64 ? kF64 : kF32Sum, acc);
      }
    }
  }
}

TEST_CASE("golden: softmax and log_softmax (with +-60 logits) and their grads", "[golden]") {
  const Golden g("softmax");
  for (const char* tag : {"f64", "f32"}) {
    const bool f64 = std::string(tag) == "f64";
    for (const char* op : {"softmax", "log_softmax", "softmax_mid"}) {
      const std::string p = std::string(tag) + "." + op;
      const int dim = int(g.meta(std::string(op) + ".dim"));
      const bool log_sm = std::string(op) == "log_softmax";
      const Fn fn = [&](const std::vector<Tensor>& in) {
        return log_sm ? log_softmax(in[0], dim) : softmax(in[0], dim);
      };
      INFO(p);
      // float32: exp differs from PyTorch's vectorised exp by a few ulp and the row sum by its
      // order (kF32Sum); the gradient y (g - <g, y>) cancels where g is near <g, y>, like the
      // saturating activations' derivatives (kF32ElemGrad).
      check_first_order(g, p, {"x"}, fn, f64 ? kF64 : kF32Sum, f64 ? kF64 : kF32ElemGrad, false);
    }
  }
}

TEST_CASE("golden: linear (x w^T + b) with and without bias, grads of x, w, b", "[golden]") {
  const Golden g("linear");
  for (const char* tag : {"f64", "f32"}) {
    const bool f64 = std::string(tag) == "f64";
    const Tol tol = f64 ? kF64 : kF32Sum;  // GEMM sums of 16 (forward) or 5-7 (grads) terms
    for (bool acc : {false, true}) {
      INFO(tag << (acc ? " with .grad pre-filled" : ""));
      check_first_order(
          g, std::string(tag) + ".bias", {"x", "w", "b"},
          [](const std::vector<Tensor>& in) { return linear(in[0], in[1], in[2]); }, tol, tol, acc);
      check_first_order(
          g, std::string(tag) + ".nobias", {"x", "w"},
          [](const std::vector<Tensor>& in) { return linear(in[0], in[1]); }, tol, tol, acc);
    }
  }
}
