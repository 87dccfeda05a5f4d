// Autograd semantics: accumulation into .grad, grad() on intermediate tensors, higher-order
// derivatives, no-grad mode, frozen parameters, in-place modification detection; and the
// forward values of the elementwise, shape and reduction ops against plain loops.
#include <catch2/catch.hpp>
#include <cmath>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/op.h"
#include "engine/ops.h"

using namespace xgan;

namespace {
Tensor vec(std::vector<double> v, DType dt = DType::f64) {
  const auto n = static_cast<int64_t>(v.size());
  return from_vector(v, {n}, dt);
}
Tensor param(std::vector<double> v) { return vec(std::move(v)).set_requires_grad(true); }
}  // namespace

TEST_CASE("backward accumulates into .grad instead of overwriting", "[autograd]") {
  Tensor x = param({1.0, 2.0, 3.0});
  // Garbage already in the buffer, as after a previous backward without zero_grad.
  x.set_grad(vec({100.0, -7.0, 0.5}));
  backward(sum(square(x)));  // d/dx = 2x
  auto g = x.grad().to_vector();
  CHECK(g[0] == Approx(102.0));
  CHECK(g[1] == Approx(-3.0));
  CHECK(g[2] == Approx(6.5));
  // A second backward adds again.
  backward(sum(x * 3.0));
  CHECK(x.grad().to_vector()[0] == Approx(105.0));
}

TEST_CASE("a tensor used twice gets the sum of both paths", "[autograd]") {
  Tensor x = param({2.0});
  Tensor y = x * x + exp(x);  // dy/dx = 2x + e^x
  backward(sum(y));
  CHECK(x.grad().item() == Approx(4.0 + std::exp(2.0)).epsilon(1e-12));
}

TEST_CASE("grad() returns gradients of intermediate tensors and leaves .grad alone", "[autograd]") {
  Tensor w = param({0.5, -1.0});
  Tensor h = w * 2.0;  // intermediate
  Tensor y = sum(square(h));
  auto g = grad({y}, {h, w});
  CHECK(g[0].to_vector()[0] == Approx(2.0));   // 2h = 2
  CHECK(g[1].to_vector()[1] == Approx(-8.0));  // 2h * 2 = -8
  CHECK_FALSE(w.grad().defined());
  CHECK_FALSE(g[0].requires_grad());
}

TEST_CASE("grad() stops at its inputs: nothing upstream is differentiated", "[autograd]") {
  Tensor a = param({1.0});
  Tensor xhat = a * 3.0;  // like WGAN-GP's interpolate, which depends on G
  Tensor y = sum(square(xhat));
  auto g = grad({y}, {xhat}, {}, true);
  CHECK(g[0].item() == Approx(6.0));
  CHECK(g[0].requires_grad());  // create_graph: the gradient has history (through xhat)
  CHECK_FALSE(a.grad().defined());
}

TEST_CASE("higher-order derivatives through create_graph", "[autograd]") {
  Tensor x = param({1.5});
  Tensor y = sum(pow(x, 3.0));                     // y = x^3
  Tensor dy = grad({y}, {x}, {}, true)[0];         // 3x^2
  Tensor d2y = grad({sum(dy)}, {x}, {}, true)[0];  // 6x
  Tensor d3y = grad({sum(d2y)}, {x})[0];           // 6
  CHECK(dy.item() == Approx(3 * 1.5 * 1.5));
  CHECK(d2y.item() == Approx(9.0));
  CHECK(d3y.item() == Approx(6.0));
}

TEST_CASE("unused inputs are an error unless allowed", "[autograd]") {
  Tensor x = param({1.0}), z = param({2.0});
  Tensor y = sum(x * 2.0);
  CHECK_THROWS_WITH(grad({y}, {z}), Catch::Contains("not used"));
  auto g = grad({y}, {z}, {}, false, true);
  CHECK(g[0].item() == 0.0);
}

TEST_CASE("no-grad mode records nothing; frozen parameters get no gradient", "[autograd]") {
  Tensor x = param({1.0, 2.0});
  {
    NoGradGuard ng;
    Tensor y = x * 2.0;
    CHECK_FALSE(y.requires_grad());
  }
  CHECK(GradMode::enabled());
  Tensor frozen = param({3.0, 4.0});
  frozen.set_requires_grad(false);
  backward(sum(x * frozen));
  CHECK(x.grad().to_vector()[1] == Approx(4.0));
  CHECK_FALSE(frozen.grad().defined());
  CHECK_THROWS(backward(sum(frozen * 2.0)));  // nothing requires grad
}

TEST_CASE("modifying a saved input in place makes backward fail loudly", "[autograd]") {
  Tensor x = param({1.0, 2.0});
  Tensor w = vec({3.0, 4.0});
  Tensor y = sum(x * w);
  add_inplace(w, vec({1.0, 1.0}));  // like an optimiser step between forward and backward
  // w needs no gradient, but x's gradient is w: it must not silently use the new values.
  CHECK_THROWS_WITH(backward(y), Catch::Contains("modified in place"));
  Tensor w2 = param({3.0, 4.0});
  Tensor y2 = sum(x * w2);
  w2.copy_(vec({0.0, 0.0}));
  CHECK_THROWS_WITH(backward(y2), Catch::Contains("modified in place"));
}

TEST_CASE("elementwise forwards and broadcasting", "[ops]") {
  Tensor a = from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3}, DType::f64);
  Tensor b = from_vector(std::vector<double>{10, 20, 30}, {3}, DType::f64);
  auto s = (a + b).to_vector();
  CHECK(s == std::vector<double>{11, 22, 33, 14, 25, 36});
  auto c = (a * from_vector(std::vector<double>{2, 3}, {2, 1}, DType::f64)).to_vector();
  CHECK(c == std::vector<double>{2, 4, 6, 12, 15, 18});
  CHECK((1.0 - a).to_vector()[5] == -5.0);
  CHECK_THROWS_WITH(a + from_vector(std::vector<double>{1, 2}, {2}, DType::f64),
                    Catch::Contains("broadcast"));
  auto sg = sigmoid(vec({-1000.0, 0.0, 1000.0})).to_vector();  // no overflow at the extremes
  CHECK(sg[0] == 0.0);
  CHECK(sg[1] == 0.5);
  CHECK(sg[2] == 1.0);
  auto lr = leaky_relu(vec({-2.0, 3.0}), 0.2).to_vector();
  CHECK(lr[0] == Approx(-0.4));
  CHECK(lr[1] == 3.0);
  CHECK_THROWS_WITH(a + vec({1.0, 2.0, 3.0}, DType::f32), Catch::Contains("different dtypes"));
}

TEST_CASE("reductions over dims", "[ops]") {
  std::vector<double> v(24);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>((i * 7) % 11);
  Tensor x = from_vector(v, {2, 3, 4}, DType::f64);
  Tensor s = sum(x, {0, 2});
  REQUIRE(s.shape() == Shape{3});
  Tensor m = max(x, {1}, true);
  REQUIRE(m.shape() == Shape{2, 1, 4});
  for (int c = 0; c < 3; ++c) {
    double ref = 0;
    for (int n = 0; n < 2; ++n)
      for (int k = 0; k < 4; ++k) ref += v[static_cast<size_t>(n * 12 + c * 4 + k)];
    CHECK(s.to_vector()[static_cast<size_t>(c)] == ref);
  }
  for (int n = 0; n < 2; ++n)
    for (int k = 0; k < 4; ++k) {
      double ref = -1e300;
      for (int c = 0; c < 3; ++c) ref = std::max(ref, v[static_cast<size_t>(n * 12 + c * 4 + k)]);
      CHECK(m.to_vector()[static_cast<size_t>(n * 4 + k)] == ref);
    }
  CHECK(mean(x).item() == Approx(sum(x).item() / 24.0));
  CHECK(min(x).item() == 0.0);
  // Ties in max share the gradient evenly, like torch.amax.
  Tensor t = param({1.0, 3.0, 3.0});
  backward(max(t));
  CHECK(t.grad().to_vector() == std::vector<double>{0.0, 0.5, 0.5});
}

TEST_CASE("reshape is a view and checks sizes", "[ops]") {
  Tensor x = from_vector(std::vector<double>{1, 2, 3, 4, 5, 6}, {2, 3}, DType::f64);
  Tensor r = reshape(x, {3, -1});
  CHECK(r.shape() == Shape{3, 2});
  CHECK(r.raw() == x.raw());
  CHECK_THROWS_WITH(reshape(x, {4, -1}), Catch::Contains("cannot reshape"));
}

TEST_CASE("shape errors name the op and the shapes", "[ops]") {
  Tensor x = zeros({2, 3, 8, 8});
  Tensor w = zeros({4, 5, 3, 3});
  CHECK_THROWS_WITH(conv2d(x, w), Catch::Contains("conv2d") && Catch::Contains("channels"));
  CHECK_THROWS_WITH(batch_norm(x, zeros({4}), zeros({3}), Tensor(), Tensor(), true),
                    Catch::Contains("weight must be [3]"));
  CHECK_THROWS_WITH(binary_cross_entropy(zeros({2}), zeros({3})), Catch::Contains("differ in shape"));
}

TEST_CASE("a vjp override replaces chosen ops' backward for its scope only", "[autograd]") {
  // Pretend tanh is linear (derivative 1), as a DeepLIFT-style rule would swap a derivative.
  Tensor x = param({0.5, -1.0});
  Tensor y = sum(tanh(x) * 3.0);
  auto rule = [](const Op& op, const std::vector<Tensor>&, const Tensor& g, const std::vector<bool>&,
                 std::vector<Tensor>& grads) {
    if (std::string(op.name()) != "tanh") return false;
    grads = {g};
    return true;
  };
  {
    VjpOverrideGuard guard(rule);
    auto g = grad({y}, {x})[0].to_vector();
    CHECK(g[0] == Approx(3.0));
    CHECK(g[1] == Approx(3.0));
  }
  auto g = grad({y}, {x})[0].to_vector();  // the guard is gone: the true derivative again
  CHECK(g[0] == Approx(3.0 * (1 - std::tanh(0.5) * std::tanh(0.5))));
}
