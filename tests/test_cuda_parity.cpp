// CPU/CUDA parity for every op of engine/ops.def and every backend kernel (XGAN_KERNEL): one table,
// keyed by name, runs each case on both devices from the same float32 inputs and compares the
// forward, the backward (grad with create_graph) and the backward of the backward, with a
// normalised error max|gpu - cpu| / max|cpu|. An op or kernel of ops.def without an entry fails.
// Needs a GPU: exits 77 (skipped) elsewhere (tests/cuda_main.cpp). Run: ctest -R test_cuda_parity.
#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <random>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/op.h"
#include "engine/ops.h"
#include "engine/rng.h"

using namespace xgan;

namespace {

const Device kGPU{DeviceType::cuda, 0};
using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

// Allowed normalised errors of one case, per stage.
struct Tol {
  double fwd, bwd, bwd2;
};
// Elementwise ops: both sides round each operation to float32 in the same order (no FMA on either
// side); only the math library (exp, log, tanh, pow: <= 2 ulp) and the order of double-precision
// sums in the backward's reductions differ. A few ulps of 2^-24 each, a chain of up to ~6 ops.
constexpr Tol kElementwise{2e-6, 4e-6, 1e-5};
// Reductions: sums in double, rounded once to float, so the order hardly matters; max is exact.
constexpr Tol kReduction{1e-6, 2e-6, 4e-6};
// Copies and selections (shape ops, pooling's argmax, concat, slice): bit-exact data movement;
// the average pools add in the CPU's order.
constexpr Tol kExact{0, 1e-6, 1e-6};
// cuDNN/cuBLAS accumulate float32 dot products of length K = C kh kw (up to ~100 here) in another
// order than Eigen: error ~ sqrt(K) 2^-24 relative to the sum of |terms|, which cancellation can
// make larger than the result; 1e-5 of the output's maximum leaves a margin of ~10.
constexpr Tol kDot{1e-5, 2e-5, 5e-5};
// Batch norm: statistics in double on both sides but summed in a different order, and its
// backward subtracts means of products (cancellation), done in float32 by engine ops.
constexpr Tol kBatchNorm{2e-6, 2e-5, 1e-4};

struct Case {
  std::string label;
  std::vector<Tensor> inputs;  // float32 on the CPU
  std::vector<bool> diff;      // which inputs to differentiate (others are also compared after the forward)
  Fn f;
  Tol tol;
};

std::mt19937_64 rng(20240611);

Tensor uniform(const Shape& s, double lo, double hi) {
  std::uniform_real_distribution<double> d(lo, hi);
  std::vector<double> v(static_cast<size_t>(numel_of(s)));
  for (auto& x : v) x = d(rng);
  return from_vector(v, s, DType::f32);
}
// Bounded away from 0, where (leaky) relu, abs and sign have their kink.
Tensor away_from_zero(const Shape& s) {
  Tensor t = uniform(s, -1.0, 1.0);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = (p[i] < 0 ? -0.1f : 0.1f) + p[i];
  return t;
}
// Distinct values, so max and max pooling have no ties a rounding difference could break.
Tensor distinct(const Shape& s) {
  std::vector<double> v(static_cast<size_t>(numel_of(s)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>(i) / static_cast<double>(v.size()) - 0.5;
  std::shuffle(v.begin(), v.end(), rng);
  return from_vector(v, s, DType::f32);
}

Case make(std::string label, std::vector<Tensor> in, Fn f, Tol tol, std::vector<bool> diff = {}) {
  if (diff.empty()) diff.assign(in.size(), true);
  return {std::move(label), std::move(in), std::move(diff), std::move(f), tol};
}

std::map<std::string, std::function<std::vector<Case>()>> op_table() {
  std::map<std::string, std::function<std::vector<Case>()>> t;
  auto bin = [](Fn f, double lo = -1, double hi = 1) {
    return std::vector<Case>{
        make("same shape", {uniform({4, 300}, lo, hi), uniform({4, 300}, lo, hi)}, f, kElementwise),
        make("broadcast [2,3,40] x [3,1]", {uniform({2, 3, 40}, lo, hi), uniform({3, 1}, lo, hi)}, f,
             kElementwise),
        make("scalar rhs", {uniform({5, 7}, lo, hi), uniform({}, lo, hi)}, f, kElementwise),
        make("scalar lhs", {uniform({}, lo, hi), uniform({5, 7}, lo, hi)}, f, kElementwise),
        make("per-channel [1,C,1,1]", {uniform({1, 3, 1, 1}, lo, hi), uniform({4, 3, 5, 5}, lo, hi)}, f,
             kElementwise)};
  };
  t["add"] = [=] { return bin([](auto& x) { return add(x[0], x[1]); }); };
  t["sub"] = [=] { return bin([](auto& x) { return sub(x[0], x[1]); }); };
  t["mul"] = [=] { return bin([](auto& x) { return mul(x[0], x[1]); }); };
  t["div"] = [=] { return bin([](auto& x) { return div(x[0], x[1]); }, 0.5, 2.0); };
  t["equal"] = [] {
    Tensor a = uniform({3, 50}, -1, 1), b = a.clone();
    b.data<float>()[7] += 1.0f;  // some unequal entries
    return std::vector<Case>{make(
        "mask", {a, b}, [](auto& x) { return equal(x[0], x[1]); }, kExact)};
  };
  auto un = [](Fn f, Tensor x) { return std::vector<Case>{make("unary", {x}, f, kElementwise)}; };
  t["neg"] = [=] { return un([](auto& x) { return neg(x[0]); }, uniform({3, 400}, -2, 2)); };
  t["exp"] = [=] { return un([](auto& x) { return exp(x[0]); }, uniform({3, 400}, -2, 2)); };
  t["log"] = [=] { return un([](auto& x) { return log(x[0]); }, uniform({3, 400}, 0.2, 3)); };
  t["sqrt"] = [=] { return un([](auto& x) { return sqrt(x[0]); }, uniform({3, 400}, 0.2, 3)); };
  t["pow"] = [=] {
    return std::vector<Case>{
        make(
            "p=3", {uniform({3, 100}, -2, 2)}, [](auto& x) { return pow(x[0], 3.0); }, kElementwise),
        make(
            "p=-0.5", {uniform({3, 100}, 0.2, 3)}, [](auto& x) { return pow(x[0], -0.5); }, kElementwise)};
  };
  t["abs"] = [=] { return un([](auto& x) { return abs(x[0]); }, away_from_zero({3, 400})); };
  t["sign"] = [=] { return un([](auto& x) { return sign(x[0]); }, away_from_zero({3, 400})); };
  t["leaky_relu"] = [=] {
    return std::vector<Case>{
        make(
            "slope 0.2", {away_from_zero({4, 300})}, [](auto& x) { return leaky_relu(x[0], 0.2); },
            kElementwise),
        make(
            "relu", {away_from_zero({4, 300})}, [](auto& x) { return relu(x[0]); }, kElementwise)};
  };
  t["leaky_relu_grad"] = [=] {
    return std::vector<Case>{make(
        "slope 0.2", {away_from_zero({4, 300}), uniform({4, 300}, -1, 1)},
        [](auto& x) { return leaky_relu_grad(x[0], x[1], 0.2); }, kElementwise)};
  };
  t["tanh"] = [=] { return un([](auto& x) { return tanh(x[0]); }, uniform({3, 400}, -3, 3)); };
  t["sigmoid"] = [=] { return un([](auto& x) { return sigmoid(x[0]); }, uniform({3, 400}, -6, 6)); };
  // Shape ops are linear; squaring afterwards makes the second derivative non-trivial.
  t["reshape"] = [=] {
    return std::vector<Case>{make(
        "[2,3,40] -> [8,-1]", {uniform({2, 3, 40}, -1, 1)},
        [](auto& x) {
          return square(reshape(x[0], {8, -1}));
        },
        kElementwise)};
  };
  t["broadcast_to"] = [=] {
    return std::vector<Case>{make(
        "[3,1] -> [2,3,40]", {uniform({3, 1}, -1, 1)},
        [](auto& x) {
          return square(broadcast_to(x[0], {2, 3, 40}));
        },
        kElementwise)};
  };
  t["sum"] = [=] {
    return std::vector<Case>{make(
                                 "all (one block)", {uniform({8, 3, 40}, -1, 1)},
                                 [](auto& x) { return square(sum(x[0])); }, kReduction),
                             make(
                                 "dims {0,2} keepdim", {uniform({6, 5, 70}, -1, 1)},
                                 [](auto& x) {
                                   return square(sum(x[0], {0, 2}, true));
                                 },
                                 kReduction),
                             make(
                                 "dim -1 short (one thread each)", {uniform({20, 30, 4}, -1, 1)},
                                 [](auto& x) { return square(sum(x[0], {-1})); }, kReduction),
                             make(
                                 "mean {0,2,3} like batch norm", {uniform({8, 3, 10, 10}, -1, 1)},
                                 [](auto& x) {
                                   return square(mean(x[0], {0, 2, 3}, true));
                                 },
                                 kReduction)};
  };
  t["max"] = [=] {
    return std::vector<Case>{
        make(
            "all", {distinct({4, 3, 50})}, [](auto& x) { return square(max(x[0])); }, kReduction),
        make(
            "dims {1,2}", {distinct({4, 3, 50})},
            [](auto& x) {
              return square(max(x[0], {1, 2}));
            },
            kReduction),
        make(
            "min dim 0", {distinct({5, 40})}, [](auto& x) { return square(min(x[0], {0}, true)); },
            kReduction)};
  };
  t["conv2d"] = [=] {
    return std::vector<Case>{
        make(
            "D's k4 s2 p1", {uniform({4, 3, 16, 16}, -1, 1), uniform({8, 3, 4, 4}, -0.2, 0.2)},
            [](auto& x) { return conv2d(x[0], x[1], 2, 1); }, kDot),
        make(
            "D's last k4 s1 p0 (dense)", {uniform({4, 8, 4, 4}, -1, 1), uniform({1, 8, 4, 4}, -0.2, 0.2)},
            [](auto& x) { return conv2d(x[0], x[1], 1, 0); }, kDot),
        make(
            "k3 s1 pad 0x1 non-square", {uniform({2, 2, 7, 5}, -1, 1), uniform({3, 2, 3, 3}, -0.3, 0.3)},
            [](auto& x) { return conv2d(x[0], x[1], 1, Pad2d(0, 1)); }, kDot)};
  };
  t["conv_transpose2d"] = [=] {
    return std::vector<Case>{
        make(
            "G's k4 s2 p1", {uniform({4, 8, 4, 4}, -1, 1), uniform({8, 3, 4, 4}, -0.2, 0.2)},
            [](auto& x) { return conv_transpose2d(x[0], x[1], 2, 1); }, kDot),
        make(
            "G's first k4 s1 p0 from 1x1", {uniform({4, 16, 1, 1}, -1, 1), uniform({16, 8, 4, 4}, -0.2, 0.2)},
            [](auto& x) { return conv_transpose2d(x[0], x[1], 1, 0); }, kDot),
        make(
            "output padding", {uniform({2, 2, 3, 3}, -1, 1), uniform({2, 2, 3, 3}, -0.3, 0.3)},
            [](auto& x) {
              return conv_transpose2d(x[0], x[1], 2, 1, std::make_pair(int64_t{6}, int64_t{6}));
            },
            kDot)};
  };
  t["conv2d_weight_grad"] = [=] {
    return std::vector<Case>{make(
        "k4 s2 p1", {uniform({4, 3, 8, 8}, -1, 1), uniform({4, 5, 4, 4}, -1, 1)},
        [](auto& x) { return conv2d_weight_grad(x[0], x[1], 4, 4, 2, 1); }, kDot)};
  };
  t["batch_norm_train"] = [=] {
    return std::vector<Case>{
        make("NCHW, running stats updated",
             {uniform({8, 4, 6, 6}, -1, 2), uniform({4}, 0.5, 1.5), uniform({4}, -1, 1),
              uniform({4}, -0.5, 0.5), uniform({4}, 0.5, 2)},
             [](auto& x) { return batch_norm(x[0], x[1], x[2], x[3], x[4], true); }, kBatchNorm,
             {true, true, true, false, false}),
        make(
            "NC, no running stats", {uniform({40, 3}, -1, 1), uniform({3}, 0.5, 1.5), uniform({3}, -1, 1)},
            [](auto& x) { return batch_norm(x[0], x[1], x[2], Tensor(), Tensor(), true); }, kBatchNorm)};
  };
  t["batch_norm_eval"] = [=] {
    return std::vector<Case>{make("NCHW",
                                  {uniform({4, 3, 5, 5}, -1, 1), uniform({3}, 0.5, 1.5), uniform({3}, -1, 1),
                                   uniform({3}, -0.5, 0.5), uniform({3}, 0.5, 2)},
                                  [](auto& x) { return batch_norm(x[0], x[1], x[2], x[3], x[4], false); },
                                  kElementwise, {true, true, true, false, false})};
  };
  t["binary_cross_entropy"] = [=] {
    return std::vector<Case>{
        make(
            "p in (0.05, 0.95)", {uniform({32}, 0.05, 0.95), uniform({32}, 0, 1)},
            [](auto& x) { return binary_cross_entropy(x[0], x[1]); }, kElementwise),
        make("p = 0 and 1 (log clamped at -100)",
             {from_vector(std::vector<float>{0.f, 1.f, 0.5f, 1.f}, {4}),
              from_vector(std::vector<float>{1.f, 0.f, 1.f, 1.f}, {4})},
             [](auto& x) { return binary_cross_entropy(x[0], x[1]); }, kElementwise, {false, false})};
  };
  t["binary_cross_entropy_with_logits"] = [=] {
    return std::vector<Case>{make(
        "logits", {uniform({300}, -8, 8), uniform({300}, 0, 1)},
        [](auto& x) { return binary_cross_entropy_with_logits(x[0], x[1]); }, kElementwise)};
  };
  t["resize_bilinear"] = [=] {
    return std::vector<Case>{make(
                                 "up 28 -> 32 (the data loader's)", {uniform({2, 1, 28, 28}, -1, 1)},
                                 [](auto& x) { return square(resize_bilinear(x[0], 32, 32)); }, kElementwise),
                             make(
                                 "up 3x4 -> 50x9", {uniform({1, 2, 3, 4}, -1, 1)},
                                 [](auto& x) { return square(resize_bilinear(x[0], 50, 9)); }, kElementwise),
                             make(
                                 "down 17x17 -> 5x6", {uniform({2, 3, 17, 17}, -1, 1)},
                                 [](auto& x) { return square(resize_bilinear(x[0], 5, 6)); }, kElementwise),
                             make(
                                 "identity 6x6", {uniform({1, 1, 6, 6}, -1, 1)},
                                 [](auto& x) { return square(resize_bilinear(x[0], 6, 6)); }, kElementwise)};
  };
  t["resize_bilinear_grad"] = [=] {
    return std::vector<Case>{
        make(
            "32 -> 28", {uniform({1, 2, 32, 32}, -1, 1)},
            [](auto& x) { return square(resize_bilinear_grad(x[0], 28, 28)); }, kElementwise),
        make(
            "5x6 -> 17x17", {uniform({1, 2, 5, 6}, -1, 1)},
            [](auto& x) { return square(resize_bilinear_grad(x[0], 17, 17)); }, kElementwise)};
  };
  t["max_pool2d"] = [=] {
    return std::vector<Case>{
        make(
            "k3 s2 p1 overlapping", {distinct({2, 3, 9, 9})},
            [](auto& x) { return square(max_pool2d(x[0], 3, 2, 1)); }, kExact),
        make("select t at x's argmax", {distinct({2, 2, 8, 8}), uniform({2, 2, 8, 8}, -1, 1)},
             [](auto& x) { return max_pool2d_select(x[0], x[1], 2, 2, 0); }, kExact, {false, true})};
  };
  t["max_pool2d_grad"] = [=] {
    return std::vector<Case>{make("k3 s2 p1", {distinct({2, 3, 9, 9}), uniform({2, 3, 5, 5}, -1, 1)},
                                  [](auto& x) { return square(max_pool2d_grad(x[0], x[1], 3, 2, 1)); },
                                  kExact, {false, true})};
  };
  t["avg_pool2d"] = [=] {
    return std::vector<Case>{
        make(
            "k3 s1 p1 count_include_pad", {uniform({2, 3, 7, 7}, -1, 1)},
            [](auto& x) { return square(avg_pool2d(x[0], 3, 1, 1, true)); }, kElementwise),
        make(
            "k3 s2 p1 exclude pad", {uniform({2, 3, 8, 8}, -1, 1)},
            [](auto& x) { return square(avg_pool2d(x[0], 3, 2, 1, false)); }, kElementwise)};
  };
  t["avg_pool2d_grad"] = [=] {
    return std::vector<Case>{make(
        "k3 s2 p1 exclude pad", {uniform({2, 3, 4, 4}, -1, 1)},
        [](auto& x) { return square(avg_pool2d_grad(x[0], 3, 2, 1, false, 8, 8)); }, kElementwise)};
  };
  t["concat"] = [=] {
    return std::vector<Case>{
        make(
            "dim 0", {uniform({2, 3, 4}, -1, 1), uniform({5, 3, 4}, -1, 1)},
            [](auto& x) {
              return square(concat({x[0], x[1]}, 0));
            },
            kElementwise),
        make(
            "dim 1 of three",
            {uniform({2, 3, 4}, -1, 1), uniform({2, 1, 4}, -1, 1), uniform({2, 6, 4}, -1, 1)},
            [](auto& x) {
              return square(concat({x[0], x[1], x[2]}, 1));
            },
            kElementwise)};
  };
  t["slice"] = [=] {
    return std::vector<Case>{make(
                                 "dim 0", {uniform({6, 3, 4}, -1, 1)},
                                 [](auto& x) { return square(slice(x[0], 0, 2, 3)); }, kElementwise),
                             make(
                                 "dim 2", {uniform({2, 3, 9}, -1, 1)},
                                 [](auto& x) { return square(slice(x[0], 2, 4, 5)); }, kElementwise)};
  };
  t["matmul"] = [=] {
    std::vector<Case> cs;
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        const int64_t m = 7, k = 33, n = 5;
        Tensor a = ta ? uniform({k, m}, -1, 1) : uniform({m, k}, -1, 1);
        Tensor b = tb ? uniform({n, k}, -1, 1) : uniform({k, n}, -1, 1);
        cs.push_back(make(
            std::string("trans_a ") + (ta ? "1" : "0") + " trans_b " + (tb ? "1" : "0"), {a, b},
            [ta, tb](auto& x) { return matmul(x[0], x[1], ta, tb); }, kDot));
      }
    return cs;
  };
  t["softmax"] = [=] {
    return std::vector<Case>{make(
                                 "dim 1 of [8, 1008] (Inception's logits)", {uniform({8, 1008}, -5, 5)},
                                 [](auto& x) { return softmax(x[0], 1); }, kElementwise),
                             make(
                                 "dim 0 of [5, 3, 4]", {uniform({5, 3, 4}, -2, 2)},
                                 [](auto& x) { return softmax(x[0], 0); }, kElementwise)};
  };
  return t;
}

// max|got - want| / max(max|want|, tiny); infinite when only one side is finite somewhere.
double normalised_error(const Tensor& got, const Tensor& want) {
  const std::vector<double> a = got.to(kCPU).to_vector(), b = want.to(kCPU).to_vector();
  double err = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isfinite(a[i]) != std::isfinite(b[i])) return std::numeric_limits<double>::infinity();
    if (!std::isfinite(b[i])) continue;
    err = std::max(err, std::abs(a[i] - b[i]));
    scale = std::max(scale, std::abs(b[i]));
  }
  return err / std::max(scale, 1e-30);
}

void check_close(const std::string& what, const Tensor& gpu, const Tensor& cpu, double tol) {
  INFO(what << ": gpu " << gpu.str() << ", cpu " << cpu.str());
  REQUIRE(gpu.defined() == cpu.defined());
  if (!cpu.defined()) return;
  REQUIRE(gpu.device().is_cuda());
  REQUIRE(gpu.shape() == cpu.shape());
  REQUIRE(gpu.dtype() == cpu.dtype());
  const double e = normalised_error(gpu, cpu);
  INFO("normalised error " << e << ", allowed " << tol);
  CHECK(e <= tol);
}

std::vector<Tensor> leaves(const std::vector<Tensor>& in, const std::vector<bool>& diff, Device d) {
  std::vector<Tensor> out;
  for (size_t i = 0; i < in.size(); ++i) {
    Tensor t = in[i].detach().clone().to(d);
    if (diff[i]) t.set_requires_grad(true);
    out.push_back(t);
  }
  return out;
}

void check_case(const std::string& op, const Case& c) {
  const std::string tag = op + " [" + c.label + "]";
  std::vector<Tensor> in_c = leaves(c.inputs, c.diff, kCPU), in_g = leaves(c.inputs, c.diff, kGPU);
  Tensor y_c = c.f(in_c), y_g = c.f(in_g);
  check_close(tag + " forward", y_g, y_c, c.tol.fwd);
  // Inputs updated in place (batch norm's running statistics) must move the same way.
  for (size_t i = 0; i < in_c.size(); ++i)
    if (!c.diff[i])
      check_close(tag + " input " + std::to_string(i) + " after the forward", in_g[i], in_c[i], c.tol.fwd);
  if (!y_c.requires_grad()) {
    CHECK_FALSE(y_g.requires_grad());  // a mask op records on neither device
    return;
  }
  std::vector<Tensor> xs_c, xs_g;
  std::vector<size_t> idx;
  for (size_t i = 0; i < in_c.size(); ++i)
    if (c.diff[i]) xs_c.push_back(in_c[i]), xs_g.push_back(in_g[i]), idx.push_back(i);
  const Tensor r = uniform(y_c.shape(), -1, 1);
  auto g_c = grad({y_c}, xs_c, {r}, /*create_graph=*/true, /*allow_unused=*/true);
  auto g_g = grad({y_g}, xs_g, {r.to(kGPU)}, true, true);
  for (size_t k = 0; k < g_c.size(); ++k)
    check_close(tag + " d/d input " + std::to_string(idx[k]), g_g[k], g_c[k], c.tol.bwd);
  // Second order: d/dx of sum_k <dL/dx_k, v_k>.
  Tensor h_c, h_g;
  for (size_t k = 0; k < g_c.size(); ++k) {
    const Tensor v = uniform(g_c[k].shape(), -1, 1);
    Tensor tc = sum(mul(g_c[k], v)), tg = sum(mul(g_g[k], v.to(kGPU)));
    h_c = h_c.defined() ? add(h_c, tc) : tc;
    h_g = h_g.defined() ? add(h_g, tg) : tg;
  }
  REQUIRE(h_c.requires_grad() == h_g.requires_grad());
  if (!h_c.requires_grad()) return;  // linear ops: the second derivative is zero on both
  auto hg_c = grad({h_c}, xs_c, {}, false, true);
  auto hg_g = grad({h_g}, xs_g, {}, false, true);
  for (size_t k = 0; k < hg_c.size(); ++k)
    check_close(tag + " d2/d input " + std::to_string(idx[k]), hg_g[k], hg_c[k], c.tol.bwd2);
}

// ---- backend kernels: each entry runs cpu:: and cuda:: on the same data and compares.
std::map<std::string, std::function<void()>> kernel_table() {
  std::map<std::string, std::function<void()>> t;
  t["fill"] = [] {
    for (DType dt : {DType::f32, DType::f64, DType::i64}) {
      Tensor c = empty({1000}, dt, kCPU), g = empty({1000}, dt, kGPU);
      cpu::fill(c, 3.25);
      cuda::fill(g, 3.25);
      check_close(std::string("fill ") + dtype_name(dt), g, c, 0);  // exact: one conversion
    }
  };
  t["cast"] = [] {
    const Tensor x = uniform({777}, -100, 100);
    for (DType dt : {DType::f64, DType::i64}) {
      Tensor c = empty({777}, dt, kCPU), g = empty({777}, dt, kGPU);
      cpu::cast(x, c);
      cuda::cast(x.to(kGPU), g);
      check_close(std::string("cast to ") + dtype_name(dt), g, c, 0);  // exact: C++ conversion rules
      Tensor back_c = empty({777}, DType::f32, kCPU), back_g = empty({777}, DType::f32, kGPU);
      cpu::cast(c, back_c);
      cuda::cast(g, back_g);
      check_close(std::string("cast back from ") + dtype_name(dt), back_g, back_c, 0);
    }
  };
  t["add_inplace"] = [] {
    const Tensor a = uniform({3, 333}, -1, 1), b = uniform({3, 333}, -1, 1);
    Tensor c = a.clone(), g = a.to(kGPU);
    cpu::add_inplace(c, b);
    cuda::add_inplace(g, b.to(kGPU));
    check_close("add_inplace", g, c, 0);  // exact: one float addition each
  };
  t["adam_step"] = [] {
    const Tensor p0 = uniform({5, 400}, -0.1, 0.1);
    Tensor pc = p0.clone(), mc = zeros({5, 400}), vc = zeros({5, 400});
    Tensor pg = p0.to(kGPU), mg = zeros({5, 400}, DType::f32, kGPU), vg = zeros({5, 400}, DType::f32, kGPU);
    const AdamConfig cfg{1e-4, 0.5, 0.999, 1e-8, 0.01};
    for (int64_t step = 1; step <= 3; ++step) {
      const Tensor g = uniform({5, 400}, -1e-3, 1e-3);
      cpu::adam_step(pc, g, mc, vc, step, cfg);
      cuda::adam_step(pg, g.to(kGPU), mg, vg, step, cfg);
    }
    // Exact: the same float operations in the same order, no FMA, IEEE sqrt and division.
    check_close("adam param", pg, pc, 0);
    check_close("adam m", mg, mc, 0);
    check_close("adam v", vg, vc, 0);
  };
  t["random_normal"] = [] {
    for (DType dt : {DType::f32, DType::f64}) {
      for (int64_t n : {1, 2, 3, 1001}) {
        Tensor c = empty({n}, dt, kCPU), g = empty({n}, dt, kGPU);
        cpu::random_normal(c, 42, 7, 0.5, 2.0);
        cuda::random_normal(g, 42, 7, 0.5, 2.0);
        // Same Philox words; only the device's double log/cos may differ from glibc's in the
        // last bit of a double (1e-16), invisible in float32 except on a rounding boundary.
        check_close(std::string("random_normal ") + dtype_name(dt) + " n=" + std::to_string(n), g, c, 1e-7);
      }
    }
  };
  t["random_uniform"] = [] {
    for (DType dt : {DType::f32, DType::f64}) {
      for (int64_t n : {1, 3, 4, 5, 1001}) {
        Tensor c = empty({n}, dt, kCPU), g = empty({n}, dt, kGPU);
        cpu::random_uniform(c, 42, 9, -1.0, 3.0);
        cuda::random_uniform(g, 42, 9, -1.0, 3.0);
        check_close(std::string("random_uniform ") + dtype_name(dt) + " n=" + std::to_string(n), g, c,
                    0);  // exact
      }
    }
    // Through the Generator: the same seed gives the same tensor on both devices.
    Generator a(1234), b(1234);
    check_close("Generator::uniform", b.uniform({64, 3}, 0, 1, DType::f32, kGPU), a.uniform({64, 3}), 0);
    check_close("Generator::normal after it", b.normal({64, 3}, 0, 1, DType::f32, kGPU), a.normal({64, 3}),
                1e-7);
  };
  t["xai_guidance"] = [] {
    const Tensor map = uniform({4, 3, 8, 8}, -2, 5), g = uniform({4, 3, 8, 8}, -1, 1);
    Tensor flat = zeros({4, 3, 8, 8});  // a constant map: E = 1 everywhere
    for (const Tensor& m : {map, flat})
      for (bool per_sample : {false, true})
        for (bool as_coded : {false, true}) {
          Tensor Ec = empty(m.shape()), Gc = empty(m.shape());
          Tensor Eg = empty(m.shape(), DType::f32, kGPU), Gg = empty(m.shape(), DType::f32, kGPU);
          cpu::xai_guidance(m, g, per_sample, as_coded, Ec, Gc);
          cuda::xai_guidance(m.to(kGPU), g.to(kGPU), per_sample, as_coded, Eg, Gg);
          const std::string tag = std::string("xai_guidance per_sample ") + (per_sample ? "1" : "0") +
                                  " as_coded " + (as_coded ? "1" : "0");
          check_close(tag + " E", Eg, Ec, 0);  // exact: min/max are exact, then the same float ops
          // As-coded sums E in double in another order before rounding to float: one rounding.
          check_close(tag + " guided", Gg, Gc, as_coded ? 2e-7 : 0);
        }
  };
  t["deeplift_rescale"] = [] {
    // A 2N batch whose pairs are far apart, 1e-12 apart (the f' fallback) and on LeakyReLU's kink.
    Tensor I = uniform({8, 3, 4, 4}, -4, 4);
    float* p = I.data<float>();
    const int64_t half = I.numel() / 2;
    for (int64_t j = 0; j < half; j += 7) p[j + half] = p[j];
    for (int64_t j = 3; j < half; j += 11) p[j] = p[j + half] = 0.0f;
    const Tensor G = uniform({8, 3, 4, 4}, -1, 1);
    for (auto f :
         {DeepLiftNonlinearity::leaky_relu, DeepLiftNonlinearity::sigmoid, DeepLiftNonlinearity::tanh}) {
      Tensor c = empty(I.shape()), g = empty(I.shape(), DType::f32, kGPU);
      cpu::deeplift_rescale(I, G, f, 0.2, c);
      cuda::deeplift_rescale(I.to(kGPU), G.to(kGPU), f, 0.2, g);
      // LeakyReLU's rule is exact arithmetic on both; sigmoid and tanh go through the math
      // libraries' exp and tanh (an ulp or two apart), and a division by a - b can magnify that
      // where a and b are close: 1e-5 of G's scale.
      check_close(std::string("deeplift_rescale ") + std::to_string(static_cast<int>(f)), g, c,
                  f == DeepLiftNonlinearity::leaky_relu ? 0 : 1e-5);
    }
  };
  return t;
}

const std::vector<std::string>& kernel_names() {
  static const std::vector<std::string> names = {
#define XGAN_KERNEL(name) #name,
#include "engine/ops.def"
  };
  return names;
}

}  // namespace

TEST_CASE("every op in ops.def gives the CPU's numbers on the GPU, forward and two derivatives", "[cuda]") {
  auto table = op_table();
  for (int i = 0; i < kOpCount; ++i) {
    const std::string name = op_name(static_cast<OpId>(i));
    SECTION(name) {
      INFO("op " << name);
      REQUIRE(table.count(name) == 1);  // a new op in ops.def needs cases here
      auto cases = table.at(name)();
      REQUIRE(!cases.empty());
      for (const auto& c : cases) check_case(name, c);
    }
  }
  CHECK(table.size() == static_cast<size_t>(kOpCount));  // no stale entries for removed ops
}

TEST_CASE("every backend kernel in ops.def gives the CPU's numbers on the GPU", "[cuda]") {
  auto table = kernel_table();
  for (const std::string& name : kernel_names()) {
    SECTION(name) {
      INFO("kernel " << name);
      REQUIRE(table.count(name) == 1);  // a new XGAN_KERNEL needs an entry here
      table.at(name)();
    }
  }
  CHECK(table.size() == kernel_names().size());
}

TEST_CASE("the caching allocator reuses freed blocks and reports its usage", "[cuda]") {
  cuda::empty_cache();  // start from an empty cache, so the block below is the only one of its size
  { Tensor warm = empty({1 << 18}, DType::f32, kGPU); }
  const cuda::MemoryStats before = cuda::memory_stats();
  CHECK(before.cached >= (size_t{1} << 20));  // the freed block stays cached
  void* first = nullptr;
  {
    Tensor t = empty({1 << 18}, DType::f32, kGPU);
    first = t.raw();
  }
  Tensor again = empty({1 << 18}, DType::f32, kGPU);
  CHECK(again.raw() == first);  // same size class: the cached block comes back
  cuda::empty_cache();
  CHECK(cuda::memory_stats().cached == 0);
}
