// kernels/cpu/winograd: the F(2x2, 2x2) and F(4x4, 2x2) convolutions (forward, input gradient,
// weight gradient) against a double-precision direct convolution, over shapes whose tile counts
// leave partial 16-lane groups, non-square maps, several channel groups and batches; and the
// engine ops that route to them against their float64 versions. Skips where the build has no AVX-512
// transforms.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <vector>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "kernels/cpu/winograd.h"

using xgan::cpu::WinogradConv;

namespace {

struct Ref {
  std::vector<double> value, magnitude;  // the exact sum and the sum of |terms|, per element
};

// The direct k4 s2 p1 convolution and its two adjoints, in double, with magnitudes.
Ref conv_ref(const WinogradConv& s, const std::vector<float>& x, const std::vector<float>& w) {
  const int64_t H = 2 * s.OH, W = 2 * s.OW;
  Ref r{std::vector<double>(s.N * s.Co * s.OH * s.OW), std::vector<double>(s.N * s.Co * s.OH * s.OW)};
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t o = 0; o < s.Co; ++o)
      for (int64_t p = 0; p < s.OH; ++p)
        for (int64_t q = 0; q < s.OW; ++q) {
          double acc = 0, mag = 0;
          for (int64_t c = 0; c < s.Ci; ++c)
            for (int64_t i = 0; i < 4; ++i)
              for (int64_t j = 0; j < 4; ++j) {
                const int64_t h = 2 * p + i - 1, v = 2 * q + j - 1;
                if (h < 0 || h >= H || v < 0 || v >= W) continue;
                const double t =
                    double(w[((o * s.Ci + c) * 4 + i) * 4 + j]) * x[((n * s.Ci + c) * H + h) * W + v];
                acc += t;
                mag += std::abs(t);
              }
          const int64_t at = ((n * s.Co + o) * s.OH + p) * s.OW + q;
          r.value[at] = acc;
          r.magnitude[at] = mag;
        }
  return r;
}

Ref data_grad_ref(const WinogradConv& s, const std::vector<float>& dy, const std::vector<float>& w) {
  const int64_t H = 2 * s.OH, W = 2 * s.OW;
  Ref r{std::vector<double>(s.N * s.Ci * H * W), std::vector<double>(s.N * s.Ci * H * W)};
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t o = 0; o < s.Co; ++o)
      for (int64_t p = 0; p < s.OH; ++p)
        for (int64_t q = 0; q < s.OW; ++q)
          for (int64_t c = 0; c < s.Ci; ++c)
            for (int64_t i = 0; i < 4; ++i)
              for (int64_t j = 0; j < 4; ++j) {
                const int64_t h = 2 * p + i - 1, v = 2 * q + j - 1;
                if (h < 0 || h >= H || v < 0 || v >= W) continue;
                const double t =
                    double(w[((o * s.Ci + c) * 4 + i) * 4 + j]) * dy[((n * s.Co + o) * s.OH + p) * s.OW + q];
                const int64_t at = ((n * s.Ci + c) * H + h) * W + v;
                r.value[at] += t;
                r.magnitude[at] += std::abs(t);
              }
  return r;
}

Ref weight_grad_ref(const WinogradConv& s, const std::vector<float>& x, const std::vector<float>& dy) {
  const int64_t H = 2 * s.OH, W = 2 * s.OW;
  Ref r{std::vector<double>(s.Co * s.Ci * 16), std::vector<double>(s.Co * s.Ci * 16)};
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t o = 0; o < s.Co; ++o)
      for (int64_t p = 0; p < s.OH; ++p)
        for (int64_t q = 0; q < s.OW; ++q)
          for (int64_t c = 0; c < s.Ci; ++c)
            for (int64_t i = 0; i < 4; ++i)
              for (int64_t j = 0; j < 4; ++j) {
                const int64_t h = 2 * p + i - 1, v = 2 * q + j - 1;
                if (h < 0 || h >= H || v < 0 || v >= W) continue;
                const double t =
                    double(x[((n * s.Ci + c) * H + h) * W + v]) * dy[((n * s.Co + o) * s.OH + p) * s.OW + q];
                const int64_t at = ((o * s.Ci + c) * 4 + i) * 4 + j;
                r.value[at] += t;
                r.magnitude[at] += std::abs(t);
              }
  return r;
}

// Worst error of `got` relative to its bound; <= 1 passes. A float sum of K terms is off by at
// most ~K u sum|terms| (u = 2^-24); Winograd adds the transforms' sums and differences, which
// grow intermediate magnitudes by at most 4x per 2D transform in F(2, 2), so 64 K u sum|terms|
// (plus a floor for sums that cancel to ~0) still sits orders of magnitude below a wrong index or
// a missing term, which are O(1) relative errors. F(4, 2) weighs values by up to 8 in its
// transforms, yet its worst error on these shapes stays under a twentieth of the same bound
// (about 5-10x F(2, 2)'s), so one bound serves both.
double worst(const std::vector<float>& got, const Ref& ref, int64_t terms) {
  double max_mag = 0, w = 0;
  for (double m : ref.magnitude) max_mag = std::max(max_mag, m);
  for (size_t i = 0; i < got.size(); ++i) {
    const double bound =
        64.0 * double(terms) * std::ldexp(1.0, -24) * (ref.magnitude[i] + 1e-3 * max_mag) + 1e-30;
    const double err = std::isfinite(got[i]) ? std::abs(got[i] - ref.value[i]) : 1e300;
    w = std::max(w, err / bound);
  }
  return w;
}

std::vector<float> randn(int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> d;
  std::vector<float> v(n);
  for (auto& e : v) e = d(rng);
  return v;
}

}  // namespace

TEST_CASE("winograd conv2d, input and weight gradients match the direct convolution") {
  if (!xgan::cpu::winograd_applies(16, 16, 8, 8, 4, 4, 1, 4, 4, 2, 1, 1)) {
    WARN("no AVX-512 Winograd transforms in this build (or XGAN_CONV=direct): nothing to test");
    return;
  }
  // N, Ci, Co, OH, OW: 1 tile to several GEMM panels of tiles (48 each) plus a partial group of
  // 16 lanes, square maps and not, for each tile side.
  const std::vector<WinogradConv> shapes = {
      {1, 16, 16, 2, 2, 2}, {2, 32, 16, 4, 4, 2},  {3, 16, 48, 8, 8, 2},  {1, 48, 32, 4, 6, 2},
      {5, 16, 16, 6, 2, 2}, {2, 16, 32, 2, 8, 2},  {1, 16, 16, 4, 4, 4},  {2, 32, 16, 8, 8, 4},
      {1, 48, 32, 4, 8, 4}, {5, 16, 16, 8, 12, 4}, {13, 16, 32, 8, 8, 4}, {2, 16, 16, 16, 4, 4}};
  std::mt19937 rng(3);
  for (const auto& s : shapes) {
    INFO("N " << s.N << " Ci " << s.Ci << " Co " << s.Co << " OH " << s.OH << " OW " << s.OW << " tile "
              << s.tile);
    REQUIRE(xgan::cpu::winograd_applies(s.Ci, s.Co, 2 * s.OH, 2 * s.OW, s.OH, s.OW, s.N, 4, 4, 2, 1, 1));
    const int64_t H = 2 * s.OH, W = 2 * s.OW;
    const auto x = randn(s.N * s.Ci * H * W, rng), w = randn(s.Co * s.Ci * 16, rng),
               dy = randn(s.N * s.Co * s.OH * s.OW, rng);
    // Outputs start as garbage: every element must be written.
    std::vector<float> y(s.N * s.Co * s.OH * s.OW, NAN), dx(x.size(), NAN), dw(w.size(), NAN);
    // The weight form starts as garbage too (its panel padding must be written); it is read with
    // aligned loads.
    xgan::Tensor U = xgan::full({xgan::cpu::winograd_weight_floats(s)}, NAN);
    xgan::cpu::winograd_transform_weights(s, w.data(), U.data<float>());
    xgan::cpu::winograd_conv2d(s, x.data(), U.data<float>(), y.data());
    xgan::cpu::winograd_conv2d_data_grad(s, dy.data(), U.data<float>(), dx.data());
    xgan::cpu::winograd_conv2d_weight_grad(s, x.data(), dy.data(), dw.data());
    CHECK(worst(y, conv_ref(s, x, w), s.Ci * 16) <= 1.0);
    CHECK(worst(dx, data_grad_ref(s, dy, w), s.Co * 4) <= 1.0);
    CHECK(worst(dw, weight_grad_ref(s, x, dy), s.N * s.OH * s.OW) <= 1.0);
  }
}

TEST_CASE("winograd rejects a tile side that does not divide the map") {
  if (!xgan::cpu::winograd_applies(16, 16, 8, 8, 4, 4, 1, 4, 4, 2, 1, 1)) return;
  const WinogradConv s{1, 16, 16, 6, 6, 4};
  CHECK_THROWS_AS(xgan::cpu::winograd_weight_floats(s), std::logic_error);
  CHECK(xgan::cpu::winograd_tile(6, 6) == 2);
  if (!std::getenv("XGAN_WINOGRAD_TILE")) {  // the default choice, unless the environment forces one
    CHECK(xgan::cpu::winograd_tile(4, 4) == 2);  // one 4x4 tile per image: too thin to pay
    CHECK(xgan::cpu::winograd_tile(8, 8) == 4);
  }
}

TEST_CASE("winograd_applies only to k4 s2 p1 with even maps and 16-channel groups") {
  if (!xgan::cpu::winograd_applies(16, 16, 8, 8, 4, 4, 1, 4, 4, 2, 1, 1)) return;
  CHECK_FALSE(xgan::cpu::winograd_applies(16, 16, 8, 8, 4, 4, 1, 3, 3, 2, 1, 1));      // kernel 3
  CHECK_FALSE(xgan::cpu::winograd_applies(16, 16, 8, 8, 5, 5, 1, 4, 4, 1, 0, 0));      // stride 1
  CHECK_FALSE(xgan::cpu::winograd_applies(16, 16, 8, 8, 4, 4, 1, 4, 4, 2, 0, 0));      // no padding
  CHECK_FALSE(xgan::cpu::winograd_applies(16, 16, 6, 6, 3, 3, 1, 4, 4, 2, 1, 1));      // odd map
  CHECK_FALSE(xgan::cpu::winograd_applies(8, 16, 8, 8, 4, 4, 1, 4, 4, 2, 1, 1));       // 8 channels
  CHECK_FALSE(xgan::cpu::winograd_applies(16, 24, 8, 8, 4, 4, 1, 4, 4, 2, 1, 1));      // 24 channels
  CHECK_FALSE(xgan::cpu::winograd_applies(1, 128, 32, 32, 16, 16, 1, 4, 4, 2, 1, 1));  // D's first layer
}

TEST_CASE("conv ops on the Winograd path agree with their float64 versions") {
  using namespace xgan;
  if (!cpu::winograd_applies(32, 16, 8, 8, 4, 4, 2, 4, 4, 2, 1, 1)) return;
  std::mt19937 rng(11);
  // 4x4 outputs take 2x2 tiles, 8x8 outputs 4x4 tiles (cpu::winograd_tile).
  for (int64_t OH : {4, 8}) {
    INFO("output " << OH << "x" << OH << ", tile " << cpu::winograd_tile(OH, OH));
    const int64_t H = 2 * OH;
    const Tensor x = from_vector(randn(2 * 32 * H * H, rng), {2, 32, H, H});
    const Tensor w = from_vector(randn(16 * 32 * 16, rng), {16, 32, 4, 4});
    const Tensor g = from_vector(randn(2 * 16 * OH * OH, rng), {2, 16, OH, OH});
    const Tensor y = conv2d(x, w, 2, {1, 1});
    const Tensor xt = conv_transpose2d(g, w, 2, {1, 1}, std::make_pair(H, H));
    const Tensor gw = conv2d_weight_grad(x, g, 4, 4, 2, {1, 1});
    const Tensor y64 = conv2d(x.to(DType::f64), w.to(DType::f64), 2, {1, 1});
    const Tensor xt64 = conv_transpose2d(g.to(DType::f64), w.to(DType::f64), 2, {1, 1}, std::make_pair(H, H));
    const Tensor gw64 = conv2d_weight_grad(x.to(DType::f64), g.to(DType::f64), 4, 4, 2, {1, 1});
    // Sums of 512, 64 and up to 128 unit-normal products: ~1e-5 of the output scale covers
    // Winograd's float32 error (a few 1e-7 relative for 2x2 tiles, ~1e-6 for 4x4) many times
    // over; a wrong index is O(1) off.
    for (const auto& [got, want] : {std::pair{y, y64}, std::pair{xt, xt64}, std::pair{gw, gw64}}) {
      const auto a = got.to_vector(), b = want.to_vector();
      double scale = 0, err = 0;
      for (double v : b) scale = std::max(scale, std::abs(v));
      for (size_t i = 0; i < a.size(); ++i) err = std::max(err, std::abs(a[i] - b[i]));
      CHECK(err <= 1e-5 * scale);
    }
  }
}

TEST_CASE("frozen parameters keep their Winograd weights only while frozen and unchanged") {
  using namespace xgan;
  if (!cpu::winograd_applies(16, 16, 8, 8, 4, 4, 1, 4, 4, 2, 1, 1)) return;
  std::mt19937 rng(5);
  const Tensor x = from_vector(randn(16 * 8 * 8, rng), {1, 16, 8, 8});
  Tensor w = from_vector(randn(16 * 16 * 16, rng), {16, 16, 4, 4});
  w.set_requires_grad(true);  // a parameter: a leaf that requires grad
  const auto run = [&] { return conv2d(x, w.detach(), 2, {1, 1}).to_vector(); };
  const auto run_param = [&] { return conv2d(x, w, 2, {1, 1}).to_vector(); };
  const auto before = run();
  const auto scale_storage = [](Tensor& t, float by) {  // a write the engine does not see, as Adam's
    float* p = t.data<float>();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] *= by;
  };
  {
    FrozenParameters frozen;
    CHECK(run_param() == before);  // transformed and kept
    CHECK(run_param() == before);  // served from the kept form: the same numbers
    // Honest writes (copy_ bumps the version) are seen even inside the scope.
    const Tensor doubled = from_vector(w.detach().to_vector(), w.shape()) * 2.0;
    w.copy_(doubled);
    const auto twice = run_param();
    CHECK(twice != before);
    CHECK(twice == run());
  }
  // After the scope, a write the engine does not see (Adam's) must not meet a stale form.
  scale_storage(w, 0.5f);
  {
    FrozenParameters frozen;
    CHECK(run_param() == before);
    // A tensor that is not a parameter is never kept: its writes show even within the scope.
    Tensor plain = from_vector(w.detach().to_vector(), w.shape());
    const auto first = conv2d(x, plain, 2, {1, 1}).to_vector();
    scale_storage(plain, 2.0f);
    const auto second = conv2d(x, plain, 2, {1, 1}).to_vector();
    CHECK(first == before);
    CHECK(second != before);
  }
}

TEST_CASE("a kept Winograd weight is made again after an optimiser step, inside one scope", "[winograd]") {
  using namespace xgan;
  if (!cpu::winograd_applies(16, 16, 16, 16, 8, 8, 2, 4, 4, 2, 1, 1)) return;
  std::mt19937 rng(9);
  // 8x8 outputs: 4x4 tiles; and a 4x4-output convolution of the same weight: 2x2 tiles, a second entry.
  const Tensor x = from_vector(randn(2 * 16 * 16 * 16, rng), {2, 16, 16, 16});
  const Tensor x_small = from_vector(randn(2 * 16 * 8 * 8, rng), {2, 16, 8, 8});
  Tensor w = from_vector(randn(16 * 16 * 16, rng), {16, 16, 4, 4});
  w.set_requires_grad(true);
  Adam opt({w}, AdamConfig{0.1, 0.5, 0.999, 1e-8, 0.0});
  // What a fresh transform gives for the current weights (a plain tensor is never kept).
  const auto fresh = [&](const Tensor& in) { return conv2d(in, w.detach().clone(), 2, {1, 1}).to_vector(); };
  FrozenParameters frozen;  // one scope around steps, as the training loops hold
  for (int step = 0; step < 3; ++step) {
    INFO("step " << step);
    const Tensor y = conv2d(x, w, 2, {1, 1});
    CHECK(y.to_vector() == fresh(x));
    CHECK(conv2d(x_small, w, 2, {1, 1}).to_vector() == fresh(x_small));
    opt.zero_grad();
    backward(sum(y * y));
    opt.step();  // writes w and bumps its version: the kept forms must not be served stale
  }
}
