// Table-driven derivative checks for every op in engine/ops.def: the backward against central
// finite differences in float64, and the backward of the backward (grad of grad) the same way.
// The table is keyed by op name; an op in the registry without an entry fails the test.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <map>
#include <random>

#include "engine/autograd.h"
#include "engine/op.h"
#include "engine/ops.h"

using namespace xgan;

namespace {

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

struct Case {
  std::string label;
  std::vector<Tensor> inputs;  // float64 leaves
  std::vector<bool> diff;      // which inputs to differentiate
  Fn f;
};

std::mt19937_64 rng(1234);

Tensor uniform(const Shape& s, double lo, double hi) {
  std::uniform_real_distribution<double> d(lo, hi);
  std::vector<double> v(static_cast<size_t>(numel_of(s)));
  for (auto& x : v) x = d(rng);
  return from_vector(v, s, DType::f64);
}
// Values bounded away from 0, where (leaky) relu, abs and sign have their kink.
Tensor away_from_zero(const Shape& s) {
  Tensor t = uniform(s, -1.0, 1.0);
  double* p = t.data<double>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = (p[i] < 0 ? -0.1 : 0.1) + p[i];
  return t;
}

// A random permutation of n evenly spaced values in [-1, 1): neighbours differ by 2/n, so for the
// small shapes here no two values are within far more than the finite-difference step of each
// other, and every max-pool window has a clear argmax (negative values too, so padding that
// wrongly won as 0 would show).
Tensor distinct(const Shape& s) {
  const int64_t n = numel_of(s);
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    v[static_cast<size_t>(i)] = -1.0 + 2.0 * static_cast<double>(i) / static_cast<double>(n);
  std::shuffle(v.begin(), v.end(), rng);
  return from_vector(v, s, DType::f64);
}

Case make(std::string label, std::vector<Tensor> in, Fn f, std::vector<bool> diff = {}) {
  if (diff.empty()) diff.assign(in.size(), true);
  return {std::move(label), std::move(in), std::move(diff), std::move(f)};
}

// The cases of one op. Shapes are small because finite differences cost two forwards per element.
std::map<std::string, std::function<std::vector<Case>()>> op_table() {
  std::map<std::string, std::function<std::vector<Case>()>> t;
  auto bin = [](Fn f, double lo = -1, double hi = 1) {
    return std::vector<Case>{
        make("same shape", {uniform({2, 3}, lo, hi), uniform({2, 3}, lo, hi)}, f),
        make("broadcast [2,3,4] x [3,1]", {uniform({2, 3, 4}, lo, hi), uniform({3, 1}, lo, hi)}, f),
        make("scalar rhs", {uniform({2, 3}, lo, hi), uniform({}, lo, hi)}, f),
        make("per-channel [1,C,1,1]", {uniform({1, 2, 1, 1}, lo, hi), uniform({2, 2, 2, 2}, lo, hi)}, f)};
  };
  t["add"] = [=] { return bin([](auto& x) { return add(x[0], x[1]); }); };
  t["sub"] = [=] { return bin([](auto& x) { return sub(x[0], x[1]); }); };
  t["mul"] = [=] { return bin([](auto& x) { return mul(x[0], x[1]); }); };
  t["div"] = [=] { return bin([](auto& x) { return div(x[0], x[1]); }, 0.5, 2.0); };
  t["equal"] = [] {  // a mask: no gradient, and finite differences see a constant
    Tensor a = uniform({2, 3}, -1, 1);
    return std::vector<Case>{make("mask", {a, a.clone()}, [](auto& x) { return equal(x[0], x[1]); })};
  };
  auto un = [](Fn f, Tensor x) { return std::vector<Case>{make("unary", {x}, f)}; };
  t["neg"] = [=] { return un([](auto& x) { return neg(x[0]); }, uniform({2, 3}, -2, 2)); };
  t["exp"] = [=] { return un([](auto& x) { return exp(x[0]); }, uniform({2, 3}, -2, 2)); };
  t["log"] = [=] { return un([](auto& x) { return log(x[0]); }, uniform({2, 3}, 0.2, 3)); };
  t["sqrt"] = [=] { return un([](auto& x) { return sqrt(x[0]); }, uniform({2, 3}, 0.2, 3)); };
  t["pow"] = [=] {
    return std::vector<Case>{
        make("p=3", {uniform({2, 3}, -2, 2)}, [](auto& x) { return pow(x[0], 3.0); }),
        make("p=-0.5", {uniform({2, 3}, 0.2, 3)}, [](auto& x) { return pow(x[0], -0.5); })};
  };
  t["abs"] = [=] { return un([](auto& x) { return abs(x[0]); }, away_from_zero({2, 3})); };
  t["sign"] = [=] { return un([](auto& x) { return sign(x[0]); }, away_from_zero({2, 3})); };
  t["leaky_relu"] = [=] {
    return std::vector<Case>{
        make("slope 0.2", {away_from_zero({2, 5})}, [](auto& x) { return leaky_relu(x[0], 0.2); }),
        make("relu", {away_from_zero({2, 5})}, [](auto& x) { return relu(x[0]); })};
  };
  t["leaky_relu_grad"] = [=] {
    return std::vector<Case>{make("slope 0.2", {away_from_zero({2, 5}), uniform({2, 5}, -1, 1)},
                                  [](auto& x) { return leaky_relu_grad(x[0], x[1], 0.2); })};
  };
  t["tanh"] = [=] { return un([](auto& x) { return tanh(x[0]); }, uniform({2, 3}, -2, 2)); };
  t["sigmoid"] = [=] { return un([](auto& x) { return sigmoid(x[0]); }, uniform({2, 3}, -3, 3)); };
  // Shape ops are linear; squaring afterwards makes the second derivative non-trivial.
  t["reshape"] = [=] {
    return std::vector<Case>{make("[2,3,4] -> [4,-1]", {uniform({2, 3, 4}, -1, 1)}, [](auto& x) {
      return square(reshape(x[0], {4, -1}));
    })};
  };
  t["broadcast_to"] = [=] {
    return std::vector<Case>{make("[3,1] -> [2,3,4]", {uniform({3, 1}, -1, 1)}, [](auto& x) {
      return square(broadcast_to(x[0], {2, 3, 4}));
    })};
  };
  t["sum"] = [=] {
    return std::vector<Case>{
        make("all", {uniform({2, 3, 4}, -1, 1)}, [](auto& x) { return square(sum(x[0])); }),
        make("dims {0,2} keepdim", {uniform({2, 3, 4}, -1, 1)},
             [](auto& x) {
               return square(sum(x[0], {0, 2}, true));
             }),
        make("dim -1", {uniform({2, 3, 4}, -1, 1)}, [](auto& x) { return square(sum(x[0], {-1})); }),
        make("mean {0,2,3}", {uniform({2, 3, 2, 2}, -1, 1)}, [](auto& x) {
          return square(mean(x[0], {0, 2, 3}, true));
        })};
  };
  t["max"] = [=] {
    return std::vector<Case>{
        make("all", {uniform({2, 3, 4}, -1, 1)}, [](auto& x) { return square(max(x[0])); }),
        make("dims {1,2}", {uniform({2, 3, 4}, -1, 1)},
             [](auto& x) {
               return square(max(x[0], {1, 2}));
             }),
        make("min dim 0", {uniform({3, 4}, -1, 1)}, [](auto& x) { return square(min(x[0], {0}, true)); })};
  };
  t["conv2d"] = [=] {
    return std::vector<Case>{
        make("k4 s2 p1", {uniform({2, 2, 6, 6}, -1, 1), uniform({3, 2, 4, 4}, -1, 1)},
             [](auto& x) { return conv2d(x[0], x[1], 2, 1); }),
        make("k3 s1 p0 non-square", {uniform({1, 2, 5, 4}, -1, 1), uniform({2, 2, 3, 3}, -1, 1)},
             [](auto& x) { return conv2d(x[0], x[1], 1, 0); })};
  };
  t["conv_transpose2d"] = [=] {
    return std::vector<Case>{
        make("k4 s2 p1", {uniform({2, 2, 3, 3}, -1, 1), uniform({2, 3, 4, 4}, -1, 1)},
             [](auto& x) { return conv_transpose2d(x[0], x[1], 2, 1); }),
        make("k4 s1 p0 from 1x1", {uniform({2, 3, 1, 1}, -1, 1), uniform({3, 2, 4, 4}, -1, 1)},
             [](auto& x) { return conv_transpose2d(x[0], x[1], 1, 0); }),
        make("output padding", {uniform({1, 2, 3, 3}, -1, 1), uniform({2, 2, 3, 3}, -1, 1)}, [](auto& x) {
          return conv_transpose2d(x[0], x[1], 2, 1, std::make_pair(int64_t{6}, int64_t{6}));
        })};
  };
  t["conv2d_weight_grad"] = [=] {
    return std::vector<Case>{make("k4 s2 p1", {uniform({2, 2, 6, 6}, -1, 1), uniform({2, 3, 3, 3}, -1, 1)},
                                  [](auto& x) { return conv2d_weight_grad(x[0], x[1], 4, 4, 2, 1); })};
  };
  t["batch_norm_train"] = [=] {
    return std::vector<Case>{
        make("NCHW", {uniform({3, 2, 2, 2}, -1, 1), uniform({2}, 0.5, 1.5), uniform({2}, -1, 1)},
             [](auto& x) { return batch_norm(x[0], x[1], x[2], Tensor(), Tensor(), true); }),
        make("NC with running stats", {uniform({4, 3}, -1, 1), uniform({3}, 0.5, 1.5), uniform({3}, -1, 1)},
             [](auto& x) {
               return batch_norm(x[0], x[1], x[2], zeros({3}, DType::f64), ones({3}, DType::f64), true);
             })};
  };
  t["batch_norm_eval"] = [=] {
    return std::vector<Case>{make("NCHW",
                                  {uniform({2, 2, 2, 2}, -1, 1), uniform({2}, 0.5, 1.5), uniform({2}, -1, 1),
                                   uniform({2}, -0.5, 0.5), uniform({2}, 0.5, 2)},
                                  [](auto& x) { return batch_norm(x[0], x[1], x[2], x[3], x[4], false); },
                                  {true, true, true, false, false})};
  };
  t["binary_cross_entropy"] = [=] {
    return std::vector<Case>{make("p in (0.05, 0.95)", {uniform({2, 3}, 0.05, 0.95), uniform({2, 3}, 0, 1)},
                                  [](auto& x) { return binary_cross_entropy(x[0], x[1]); })};
  };
  t["binary_cross_entropy_with_logits"] = [=] {
    return std::vector<Case>{make("logits", {uniform({2, 3}, -4, 4), uniform({2, 3}, 0, 1)},
                                  [](auto& x) { return binary_cross_entropy_with_logits(x[0], x[1]); })};
  };
  t["resize_bilinear"] = [=] {
    return std::vector<Case>{make("up 3x4 -> 5x7", {uniform({1, 2, 3, 4}, -1, 1)},
                                  [](auto& x) { return square(resize_bilinear(x[0], 5, 7)); }),
                             make("down 5x5 -> 2x3", {uniform({2, 1, 5, 5}, -1, 1)},
                                  [](auto& x) { return square(resize_bilinear(x[0], 2, 3)); })};
  };
  t["resize_bilinear_grad"] = [=] {
    return std::vector<Case>{make("5x7 -> 3x4", {uniform({1, 2, 5, 7}, -1, 1)},
                                  [](auto& x) { return square(resize_bilinear_grad(x[0], 3, 4)); })};
  };
  // Metrics ops. max_pool2d's inputs are `distinct` so no finite-difference step moves an argmax;
  // pooling and slicing are (piecewise) linear, so squaring makes the second derivative non-trivial.
  t["max_pool2d"] = [=] {
    return std::vector<Case>{
        make("k3 s2 p1", {distinct({2, 2, 5, 5})}, [](auto& x) { return square(max_pool2d(x[0], 3, 2, 1)); }),
        make("k3 s1 p1 overlapping", {distinct({1, 2, 4, 5})},
             [](auto& x) { return square(max_pool2d(x[0], 3, 1, 1)); }),
        make("k2 s2 p0", {distinct({1, 3, 4, 4})}, [](auto& x) { return square(max_pool2d(x[0], 2)); }),
        make("select (x, t)", {distinct({1, 2, 5, 5}), uniform({1, 2, 5, 5}, -1, 1)},
             [](auto& x) { return square(max_pool2d_select(x[0], x[1], 3, 2, 0)); })};
  };
  t["max_pool2d_grad"] = [=] {
    return std::vector<Case>{
        make("k3 s1 p1 (shared argmax adds)", {distinct({1, 2, 4, 4}), uniform({1, 2, 4, 4}, -1, 1)},
             [](auto& x) { return square(max_pool2d_grad(x[0], x[1], 3, 1, 1)); }),
        make("k3 s2 p0", {distinct({2, 1, 5, 5}), uniform({2, 1, 2, 2}, -1, 1)},
             [](auto& x) { return square(max_pool2d_grad(x[0], x[1], 3, 2, 0)); })};
  };
  t["avg_pool2d"] = [=] {
    return std::vector<Case>{make("k3 s1 p1 count_include_pad", {uniform({1, 2, 4, 5}, -1, 1)},
                                  [](auto& x) { return square(avg_pool2d(x[0], 3, 1, 1, true)); }),
                             make("k3 s2 p1 exclude pad", {uniform({2, 1, 5, 5}, -1, 1)},
                                  [](auto& x) { return square(avg_pool2d(x[0], 3, 2, 1, false)); }),
                             make("k2 s2 p0", {uniform({1, 2, 4, 4}, -1, 1)},
                                  [](auto& x) { return square(avg_pool2d(x[0], 2)); })};
  };
  t["avg_pool2d_grad"] = [=] {
    return std::vector<Case>{
        make("k3 s2 p1 exclude pad -> 5x5", {uniform({1, 2, 3, 3}, -1, 1)},
             [](auto& x) { return square(avg_pool2d_grad(x[0], 3, 2, 1, false, 5, 5)); }),
        make("k3 s1 p1 count_include_pad -> 3x4", {uniform({2, 1, 3, 4}, -1, 1)},
             [](auto& x) { return square(avg_pool2d_grad(x[0], 3, 1, 1, true, 3, 4)); })};
  };
  t["concat"] = [=] {
    return std::vector<Case>{
        make("three along dim 1", {uniform({2, 3}, -1, 1), uniform({2, 1}, -1, 1), uniform({2, 2}, -1, 1)},
             [](auto& x) {
               return square(concat({x[0], x[1], x[2]}, 1));
             }),
        make("channels of NCHW, dim -3", {uniform({2, 1, 2, 2}, -1, 1), uniform({2, 2, 2, 2}, -1, 1)},
             [](auto& x) {
               return square(concat({x[0], x[1]}, -3));
             }),
        make("dim 0", {uniform({1, 3}, -1, 1), uniform({2, 3}, -1, 1)}, [](auto& x) {
          return square(concat({x[0], x[1]}, 0));
        })};
  };
  t["slice"] = [=] {
    return std::vector<Case>{make("middle of dim 1", {uniform({2, 5, 3}, -1, 1)},
                                  [](auto& x) { return square(slice(x[0], 1, 1, 3)); }),
                             make("head of dim -1", {uniform({2, 3, 4}, -1, 1)},
                                  [](auto& x) { return square(slice(x[0], -1, 0, 2)); }),
                             make("tail of dim 0", {uniform({4, 3}, -1, 1)},
                                  [](auto& x) { return square(slice(x[0], 0, 2, 2)); })};
  };
  t["matmul"] = [=] {
    // Bilinear: the second derivative couples the two operands (and the upstream gradient).
    return std::vector<Case>{
        make("a @ b", {uniform({2, 3}, -1, 1), uniform({3, 4}, -1, 1)},
             [](auto& x) { return matmul(x[0], x[1]); }),
        make("a @ b^T", {uniform({2, 3}, -1, 1), uniform({4, 3}, -1, 1)},
             [](auto& x) { return matmul(x[0], x[1], false, true); }),
        make("a^T @ b", {uniform({3, 2}, -1, 1), uniform({3, 4}, -1, 1)},
             [](auto& x) { return matmul(x[0], x[1], true, false); }),
        make("a^T @ b^T", {uniform({3, 2}, -1, 1), uniform({4, 3}, -1, 1)},
             [](auto& x) { return matmul(x[0], x[1], true, true); }),
        make("linear with bias", {uniform({3, 4}, -1, 1), uniform({2, 4}, -1, 1), uniform({2}, -1, 1)},
             [](auto& x) { return square(linear(x[0], x[1], x[2])); })};
  };
  t["softmax"] = [=] {
    return std::vector<Case>{
        make("dim 1", {uniform({3, 4}, -2, 2)}, [](auto& x) { return softmax(x[0], 1); }),
        make("dim -3 of [2,3,2,2]", {uniform({2, 3, 2, 2}, -2, 2)},
             [](auto& x) { return softmax(x[0], -3); }),
        make("log_softmax (composed) dim -1", {uniform({2, 5}, -3, 3)},
             [](auto& x) { return log_softmax(x[0], -1); })};
  };
  return t;
}

// sum(f(inputs) * r) with every input a fresh leaf; evaluated without recording.
double objective(const Fn& f, const std::vector<Tensor>& in, const Tensor& r) {
  NoGradGuard ng;
  return sum(mul(f(in), r)).item();
}

// |a - n| <= rtol (|n| + max|n|): relative to each entry and to the tensor's scale, so entries
// that are tiny next to their neighbours are not held to an impossible relative bound.
void compare(const std::string& what, const std::vector<double>& analytic,
             const std::vector<double>& numeric) {
  // Central differences with h = 1e-6 in float64: truncation error ~ h^2 |f'''| ~ 1e-12 and
  // rounding ~ 1e-16 |f| / h ~ 1e-10; 1e-5 leaves a wide margin yet any wrong formula is O(1) off.
  const double rtol = 1e-5;
  double scale = 1e-8;
  for (double v : numeric) scale = std::max(scale, std::abs(v));
  for (size_t i = 0; i < analytic.size(); ++i) {
    INFO(what << " element " << i << ": analytic " << analytic[i] << ", numeric " << numeric[i]);
    CHECK(std::abs(analytic[i] - numeric[i]) <= rtol * (std::abs(numeric[i]) + scale));
  }
}

// Numeric gradient of g(inputs) w.r.t. inputs[j] by central differences.
std::vector<double> numeric_grad(const std::function<double(const std::vector<Tensor>&)>& g,
                                 std::vector<Tensor> in, size_t j) {
  const double h = 1e-6;
  std::vector<double> out(static_cast<size_t>(in[j].numel()));
  for (int64_t k = 0; k < in[j].numel(); ++k) {
    std::vector<Tensor> plus = in, minus = in;
    plus[j] = in[j].clone();
    minus[j] = in[j].clone();
    plus[j].data<double>()[k] += h;
    minus[j].data<double>()[k] -= h;
    out[static_cast<size_t>(k)] = (g(plus) - g(minus)) / (2 * h);
  }
  return out;
}

std::vector<Tensor> leaves(const std::vector<Tensor>& in, const std::vector<bool>& diff) {
  std::vector<Tensor> out;
  for (size_t i = 0; i < in.size(); ++i) {
    Tensor t = in[i].detach().clone();
    if (diff[i]) t.set_requires_grad(true);
    out.push_back(t);
  }
  return out;
}

void check_case(const std::string& op, const Case& c) {
  const std::string tag = op + " [" + c.label + "]";
  std::vector<Tensor> in = leaves(c.inputs, c.diff);
  Tensor y = c.f(in);
  Tensor r = uniform(y.shape(), -1, 1);
  std::vector<Tensor> xs;
  std::vector<size_t> idx;
  for (size_t i = 0; i < in.size(); ++i)
    if (c.diff[i]) xs.push_back(in[i]), idx.push_back(i);

  if (!y.requires_grad()) {
    // A mask op: it must not record, and its finite-difference derivative must be zero.
    for (size_t i : idx) {
      auto num = numeric_grad([&](auto& v) { return objective(c.f, v, r); }, in, i);
      for (double v : num) CHECK(v == 0.0);
    }
    return;
  }

  // First derivative.
  std::vector<Tensor> g = grad({y}, xs, {r}, /*create_graph=*/true, /*allow_unused=*/true);
  for (size_t k = 0; k < xs.size(); ++k) {
    auto num = numeric_grad([&](auto& v) { return objective(c.f, v, r); }, in, idx[k]);
    compare(tag + " d/d input " + std::to_string(idx[k]), g[k].to_vector(), num);
  }

  // Second derivative: H = sum_k <dL/dx_k, v_k> with L = <f(x), r>, differentiated w.r.t. the
  // inputs and w.r.t. r (the backward must be right in its upstream gradient too).
  std::vector<Tensor> vs;
  for (auto& gk : g) vs.push_back(uniform(gk.shape(), -1, 1));
  auto first_order = [&](const std::vector<Tensor>& v_in, const Tensor& r_in) {
    std::vector<Tensor> lv = leaves(v_in, c.diff);
    std::vector<Tensor> xs2;
    for (size_t i : idx) xs2.push_back(lv[i]);
    Tensor yy = c.f(lv);
    auto gg = grad({yy}, xs2, {r_in}, false, true);
    double h = 0;
    for (size_t k = 0; k < gg.size(); ++k) h += sum(mul(gg[k], vs[k])).item();
    return h;
  };
  Tensor rl = r.clone();
  rl.set_requires_grad(true);
  std::vector<Tensor> g2 = grad({y}, xs, {rl}, true, true);
  Tensor hsum;
  for (size_t k = 0; k < g2.size(); ++k) {
    Tensor term = sum(mul(g2[k], vs[k]));
    hsum = hsum.defined() ? add(hsum, term) : term;
  }
  std::vector<Tensor> targets = xs;
  targets.push_back(rl);
  std::vector<Tensor> hg;
  if (hsum.requires_grad()) {
    hg = grad({hsum}, targets, {}, false, true);
  } else {
    for (auto& t2 : targets) hg.push_back(zeros_like(t2));
  }
  for (size_t k = 0; k < xs.size(); ++k) {
    auto num = numeric_grad([&](auto& v) { return first_order(v, r); }, in, idx[k]);
    compare(tag + " d2/d input " + std::to_string(idx[k]), hg[k].to_vector(), num);
  }
  std::vector<Tensor> rin{r};
  auto num_r = numeric_grad([&](auto& v) { return first_order(in, v[0]); }, rin, 0);
  compare(tag + " d2/d upstream", hg.back().to_vector(), num_r);
}

}  // namespace

TEST_CASE("every op in ops.def has first and second derivatives matching finite differences", "[gradcheck]") {
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

TEST_CASE("the finite-difference check catches a wrong backward", "[gradcheck]") {
  // x * x differentiated as if it were x * 2x would be off by a factor of 2: compare() must fail.
  Tensor x = uniform({3}, 0.5, 1.0);
  std::vector<double> wrong, right;
  for (double v : x.to_vector()) wrong.push_back(4 * v), right.push_back(2 * v);
  auto num = numeric_grad(
      [](auto& v) {
        NoGradGuard ng;
        return sum(square(v[0])).item();
      },
      {x}, 0);
  for (size_t i = 0; i < num.size(); ++i) {
    CHECK(std::abs(right[i] - num[i]) <= 1e-5 * std::abs(num[i]));
    CHECK_FALSE(std::abs(wrong[i] - num[i]) <= 1e-5 * std::abs(num[i]));
  }
}

TEST_CASE("batch norm's fused backward equals the composed one (the graph-recording path)", "[gradcheck]") {
  std::mt19937 rng(17);
  std::normal_distribution<double> nd;
  for (DType dt : {DType::f64, DType::f32})
    for (const Shape& shape : {Shape{4, 3, 5, 5}, Shape{6, 4}, Shape{3, 16, 4, 4}}) {
      INFO("dtype " << dtype_name(dt) << " shape " << shape_str(shape));
      const int64_t C = shape[1], n = numel_of(shape);
      std::vector<double> xv(n), gv(n), wv(C), bv(C);
      for (auto& v : xv) v = 3.0 + 2.0 * nd(rng);  // a mean far from 0: the centring matters
      for (auto& v : gv) v = nd(rng);
      for (auto& v : wv) v = 1.0 + 0.5 * nd(rng);
      for (auto& v : bv) v = nd(rng);
      const Tensor g = from_vector(gv, shape, dt);
      const auto grads = [&](bool create_graph) {
        Tensor x = from_vector(xv, shape, dt), w = from_vector(wv, {C}, dt), b = from_vector(bv, {C}, dt);
        for (Tensor* t : {&x, &w, &b}) t->set_requires_grad(true);
        const Tensor y = batch_norm(x, w, b, Tensor(), Tensor(), true, 0.1, 1e-5);
        return grad({y}, {x, w, b}, {g}, create_graph);
      };
      const auto fused = grads(false), composed = grads(true);
      // float64: the two differ only in summation order (~1e-15 of the scale). float32: the composed
      // ops round every intermediate (centred x, xhat, products, means) to float, ~1e-6 relative
      // each, and dx subtracts nearly equal terms: 1e-5 of each gradient's scale.
      const double tol = dt == DType::f64 ? 1e-12 : 1e-5;
      for (size_t k = 0; k < 3; ++k) {
        const auto a = fused[k].to_vector(), b = composed[k].detach().to_vector();
        REQUIRE(a.size() == b.size());
        double scale = 0, err = 0;
        for (size_t i = 0; i < a.size(); ++i) {
          scale = std::max(scale, std::abs(b[i]));
          err = std::max(err, std::abs(a[i] - b[i]));
        }
        INFO("gradient " << k << " error " << err << " scale " << scale);
        CHECK(err <= tol * scale);
      }
    }
}
