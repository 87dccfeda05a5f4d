// Adam: the CPU update kernel against a plain double-precision transcription of PyTorch 1.13's
// single-tensor rule, the optimiser's bookkeeping (skipped parameters, step counts, zero_grad)
// and its argument checks. The comparison with real PyTorch output lives in the golden tests.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <memory>
#include <vector>

#include "engine/backend.h"
#include "engine/op.h"
#include "engine/optim.h"

using namespace xgan;

namespace {

// torch/optim/adam.py, _single_tensor_adam, every operation in double.
struct AdamReference {
  std::vector<double> p, m, v;
  void step(const std::vector<double>& g, int64_t t, const AdamConfig& c) {
    const double bc1 = 1 - std::pow(c.beta1, double(t)), bc2 = 1 - std::pow(c.beta2, double(t));
    for (size_t i = 0; i < p.size(); ++i) {
      const double gi = c.weight_decay != 0 ? g[i] + c.weight_decay * p[i] : g[i];
      m[i] = m[i] * c.beta1 + (1 - c.beta1) * gi;
      v[i] = v[i] * c.beta2 + (1 - c.beta2) * gi * gi;
      p[i] = p[i] + (-(c.lr / bc1)) * m[i] / (std::sqrt(v[i]) / std::sqrt(bc2) + c.eps);
    }
  }
};

// Gradients of three steps with mixed signs and magnitudes, including an exact zero (v stays 0
// there, so denom = eps) and a value near eps.
std::vector<double> grads(int step, size_t n) {
  std::vector<double> g(n);
  for (size_t i = 0; i < n; ++i)
    g[i] = std::sin(0.7 * double(i) + step) * std::pow(10.0, double(i % 7) - 4.0);
  g[3] = 0.0;
  g[5] = 1e-9;
  return g;
}

// A stand-in producer so a tensor can be made a non-leaf without running a real op.
struct FakeOp final : Op {
  OpId id() const override { return OpId{}; }
  void eval_cpu(const std::vector<Tensor>&, Tensor&) override {}
  void eval_cuda(const std::vector<Tensor>&, Tensor&) override {}
  std::vector<Tensor> vjp(const std::vector<Tensor>&, const Tensor&, const std::vector<bool>&) override {
    return {};
  }
};

Tensor param(const std::vector<double>& x, DType dt = DType::f32) {
  Tensor p = from_vector(x, {int64_t(x.size())}, dt);
  p.set_requires_grad(true);
  return p;
}

}  // namespace

TEST_CASE("cpu::adam_step follows the PyTorch update over three steps", "[adam]") {
  const size_t n = 40000;  // above the kernel's OpenMP threshold
  std::vector<double> p0(n);
  for (size_t i = 0; i < n; ++i) p0[i] = std::cos(1.3 * double(i)) * (1 + double(i % 5));
  AdamConfig cfg =
      GENERATE(AdamConfig{}, AdamConfig{1e-4, 0.5, 0.999, 1e-8, 0.0}, AdamConfig{3e-2, 0.8, 0.99, 1e-6, 0.1});
  CAPTURE(cfg.lr, cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay);

  for (DType dt : {DType::f32, DType::f64}) {
    CAPTURE(dtype_name(dt));
    // The reference gets the kernel's inputs exactly (rounded to dt), so only the update's own
    // rounding separates them. Tolerances, in units of the dtype's epsilon e (2^-24 or 2^-53):
    // - v sums non-negative terms; each step adds at most ~5 e relative (two scalar casts, three
    //   roundings, g^2 doubling weight decay's rounding): 3 steps with a 2x margin, 32 e.
    // - m can cancel across steps (g changes sign), so its error is measured against the largest
    //   |g| that entered it: 16 e of that.
    // - p is rounded once per step to its own ulp (3 steps + margin: 4 e of |p|), plus the update's
    //   error step_size * m_err / denom; denom >= ~0.5 of the largest |g| within 3 steps, so with
    //   m's 16 e that is ~32 e of step_size = lr/bc1 per step; 64 e summed over the steps.
    const double e = dt == DType::f32 ? 0x1p-24 : 0x1p-53;
    auto rounded = [&](const std::vector<double>& x) {
      return from_vector(x, {int64_t(x.size())}, dt).to_vector();
    };
    AdamReference ref{rounded(p0), std::vector<double>(n, 0.0), std::vector<double>(n, 0.0)};
    Tensor p = from_vector(p0, {int64_t(n)}, dt), m = zeros({int64_t(n)}, dt), v = zeros({int64_t(n)}, dt);
    std::vector<double> gmax(n, 0.0);
    double update_scale = 0;
    for (int t = 1; t <= 3; ++t) {
      const auto g = rounded(grads(t, n));
      for (size_t i = 0; i < n; ++i)
        gmax[i] = std::max(gmax[i], std::abs(g[i]) + cfg.weight_decay * std::abs(ref.p[i]));
      cpu::adam_step(p, from_vector(g, {int64_t(n)}, dt), m, v, t, cfg);
      ref.step(g, t, cfg);
      update_scale += cfg.lr / (1 - std::pow(cfg.beta1, t));
    }
    const auto pv = p.to_vector(), mv = m.to_vector(), vv = v.to_vector();
    double worst_p = 0, worst_m = 0, worst_v = 0;  // errors in units of the tolerance scale
    for (size_t i = 0; i < n; ++i) {
      worst_p = std::max(worst_p,
                         std::abs(pv[i] - ref.p[i]) / (4 * e * std::abs(ref.p[i]) + 64 * e * update_scale));
      worst_m = std::max(worst_m, std::abs(mv[i] - ref.m[i]) / (16 * e * gmax[i] + 1e-300));
      worst_v = std::max(worst_v, std::abs(vv[i] - ref.v[i]) / (32 * e * ref.v[i] + 1e-300));
    }
    CHECK(worst_p <= 1.0);
    CHECK(worst_m <= 1.0);
    CHECK(worst_v <= 1.0);
  }
}

TEST_CASE("the first Adam step moves each parameter by lr against its gradient's sign", "[adam]") {
  // At t = 1, m/bc1 = g and sqrt(v/bc2) = |g|, so the step is lr * g / (|g| + eps): a check of the
  // bias corrections that does not restate the formula.
  AdamConfig cfg;
  cfg.lr = 0.01;
  Tensor p = from_vector(std::vector<double>{1, 2, 3, 4}, {4}, DType::f64);
  Tensor m = zeros({4}, DType::f64), v = zeros({4}, DType::f64);
  cpu::adam_step(p, from_vector(std::vector<double>{0.5, -3, 1e-3, 0}, {4}, DType::f64), m, v, 1, cfg);
  const auto x = p.to_vector();
  CHECK(x[0] == Approx(1 - 0.01).epsilon(1e-7));  // eps/|g| = 2e-8 relative
  CHECK(x[1] == Approx(2 + 0.01).epsilon(1e-7));
  CHECK(x[2] == Approx(3 - 0.01 / (1 + 1e-5)).epsilon(1e-12));
  CHECK(x[3] == 4.0);  // zero gradient: m = 0, denom = eps, no move
}

TEST_CASE("cpu::adam_step checks its arguments and bumps versions", "[adam]") {
  AdamConfig cfg;
  Tensor p = zeros({3}), g = ones({3}), m = zeros({3}), v = zeros({3});
  const uint64_t vp = p.version(), vm = m.version(), vv = v.version();
  cpu::adam_step(p, g, m, v, 1, cfg);
  CHECK(p.version() == vp + 1);
  CHECK(m.version() == vm + 1);
  CHECK(v.version() == vv + 1);

  Tensor wrong_shape = zeros({4}), wrong_type = zeros({3}, DType::f64), ints = zeros({3}, DType::i64);
  CHECK_THROWS_WITH(cpu::adam_step(p, wrong_shape, m, v, 2, cfg), Catch::Contains("does not match"));
  CHECK_THROWS_WITH(cpu::adam_step(p, g, wrong_type, v, 2, cfg), Catch::Contains("does not match"));
  CHECK_THROWS_WITH(cpu::adam_step(p, g, m, wrong_shape, 2, cfg), Catch::Contains("does not match"));
  CHECK_THROWS_WITH(cpu::adam_step(ints, ints, ints, ints, 2, cfg), Catch::Contains("float32 or float64"));
  CHECK_THROWS_WITH(cpu::adam_step(p, g, m, v, 0, cfg), Catch::Contains("step counts from 1"));
  CHECK(p.version() == vp + 1);  // nothing written by the failed calls
}

TEST_CASE("Adam updates parameters with a gradient and skips the rest", "[adam]") {
  AdamConfig cfg{1e-2, 0.5, 0.999, 1e-8, 0.0};
  Tensor a = param({1, -1}), b = param({2, 2, 2});
  Adam opt({a, b}, cfg);
  REQUIRE(opt.exp_avg().size() == 2);
  CHECK(opt.exp_avg()[1].to_vector() == std::vector<double>(3, 0.0));
  CHECK(opt.steps() == std::vector<int64_t>{0, 0});

  a.set_grad(from_vector(std::vector<double>{0.5, -0.5}, {2}));
  opt.step();
  CHECK(opt.steps() == std::vector<int64_t>{1, 0});
  CHECK(b.to_vector() == std::vector<double>(3, 2.0));
  CHECK(opt.exp_avg_sq()[1].to_vector() == std::vector<double>(3, 0.0));
  const auto a1 = a.to_vector();
  CHECK(a1[0] == Approx(1 - 1e-2).epsilon(1e-6));  // first step: lr against the sign (see above)
  CHECK(a1[1] == Approx(-1 + 1e-2).epsilon(1e-6));

  b.set_grad(from_vector(std::vector<double>{1, 1, 1}, {3}));
  opt.step();
  CHECK(opt.steps() == std::vector<int64_t>{2, 1});
  CHECK(b.to_vector()[0] == Approx(2 - 1e-2).epsilon(1e-6));  // b's own first step, bias-corrected as t = 1

  opt.zero_grad();
  CHECK_FALSE(a.grad().defined());
  CHECK_FALSE(b.grad().defined());
  const auto before = a.to_vector();
  opt.step();
  CHECK(a.to_vector() == before);
  CHECK(opt.steps() == std::vector<int64_t>{2, 1});
}

TEST_CASE("Adam works in float64 and keeps a failed step from counting", "[adam]") {
  Tensor a = param({1, 2}, DType::f64);
  Adam opt({a});
  CHECK(opt.exp_avg()[0].dtype() == DType::f64);
  a.set_grad(from_vector(std::vector<double>{1, 2, 3}, {3}, DType::f64));  // wrong shape
  CHECK_THROWS_WITH(opt.step(), Catch::Contains("does not match"));
  CHECK(opt.steps()[0] == 0);
}

TEST_CASE("Adam rejects parameters it cannot update, naming the index", "[adam]") {
  Tensor ok = param({1, 2});
  Tensor frozen = zeros({2});
  CHECK_THROWS_WITH(Adam({ok, frozen}),
                    Catch::Contains("parameter 1") && Catch::Contains("does not require grad"));

  Tensor produced = zeros({2});
  produced.impl()->requires_grad = true;
  produced.impl()->grad_fn = std::make_shared<FakeOp>();
  CHECK_THROWS_WITH(Adam({produced}), Catch::Contains("parameter 0") && Catch::Contains("not a leaf"));

  Tensor ints = zeros({2}, DType::i64);
  ints.impl()->requires_grad = true;  // set_requires_grad refuses int64; force it to reach Adam's check
  CHECK_THROWS_WITH(Adam({ok, ok, ints}),
                    Catch::Contains("parameter 2") && Catch::Contains("float32 or float64"));

  CHECK_THROWS_WITH(Adam({Tensor()}), Catch::Contains("parameter 0 is undefined"));
  CHECK_THROWS_WITH(Adam({ok}, AdamConfig{-1}), Catch::Contains("learning rate"));
  CHECK_THROWS_WITH(Adam({ok}, AdamConfig{1e-3, 1.0}), Catch::Contains("beta parameter at index 0"));
  CHECK_NOTHROW(Adam({}));
}
