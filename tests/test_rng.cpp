// Philox4x32-10 and the Generator: known-answer vectors, the documented element mapping of
// engine/rng.h, determinism, offset bookkeeping and the statistics of the draws.
// Run: ctest -R test_rng (or build/tests/test_rng).
#include <algorithm>
#include <array>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <vector>

#include "engine/backend.h"
#include "engine/rng.h"

using namespace xgan;

namespace {

using Words = std::array<uint32_t, 4>;

// Sample mean and (1/(n-1)) standard deviation.
std::pair<double, double> mean_std(const std::vector<double>& x) {
  double s = 0;
  for (double v : x) s += v;
  const double mean = s / static_cast<double>(x.size());
  double ss = 0;
  for (double v : x) ss += (v - mean) * (v - mean);
  return {mean, std::sqrt(ss / static_cast<double>(x.size() - 1))};
}

Words block(uint64_t seed, uint64_t b) {
  return philox4x32_10({static_cast<uint32_t>(b), static_cast<uint32_t>(b >> 32), 0, 0},
                       {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)});
}

}  // namespace

TEST_CASE("philox4x32_10 matches the Random123 known-answer vectors", "[rng]") {
  // kat_vectors from the Random123 distribution, philox4x32 with 10 rounds.
  CHECK(philox4x32_10({0, 0, 0, 0}, {0, 0}) == Words{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8});
  CHECK(philox4x32_10({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff}) ==
        Words{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd});
  CHECK(philox4x32_10({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0}) ==
        Words{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1});
}

TEST_CASE("draws follow the element mapping documented in engine/rng.h", "[rng]") {
  // A seed and offset with both 32-bit halves non-zero, so a swapped half would show.
  const uint64_t seed = 0x0123456789abcdefULL, offset = 0x00000001fffffffeULL;  // crosses 2^32 at block 2
  const int64_t n = 11;  // not a multiple of 4 or 2: the last block is partial

  SECTION("uniform float32: block i/4, word i%4, (w >> 8) * 2^-24") {
    Tensor t = empty({n}, DType::f32);
    cpu::random_uniform(t, seed, offset, 0.0, 1.0);
    for (int64_t i = 0; i < n; ++i) {
      const Words w = block(seed, offset + static_cast<uint64_t>(i / 4));
      CHECK(t.data<float>()[i] == static_cast<float>((w[i % 4] >> 8) * 0x1p-24));
    }
  }
  SECTION("uniform float64: block i/2, words 2(i%2), 2(i%2)+1, 53 bits") {
    Tensor t = empty({n}, DType::f64);
    cpu::random_uniform(t, seed, offset, 0.0, 1.0);
    for (int64_t i = 0; i < n; ++i) {
      const Words w = block(seed, offset + static_cast<uint64_t>(i / 2));
      const uint32_t a = w[2 * (i % 2)], b = w[2 * (i % 2) + 1];
      CHECK(t.data<double>()[i] == ((a >> 5) * 0x1p26 + (b >> 6)) * 0x1p-53);
    }
  }
  SECTION("normal: Box-Muller on the word pair, in double, then rounded") {
    Tensor t32 = empty({n}, DType::f32), t64 = empty({n}, DType::f64);
    cpu::random_normal(t32, seed, offset, 0.0, 1.0);
    cpu::random_normal(t64, seed, offset, 0.0, 1.0);
    for (int64_t i = 0; i < n; ++i) {
      const Words w = block(seed, offset + static_cast<uint64_t>(i / 2));
      const double u1 = (static_cast<double>(w[2 * (i % 2)]) + 1.0) * 0x1p-32;
      const double u2 = w[2 * (i % 2) + 1] * 0x1p-32;
      const double z = std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
      CHECK(t64.data<double>()[i] == z);
      CHECK(t32.data<float>()[i] == static_cast<float>(z));
    }
  }
}

TEST_CASE("draws are deterministic and element i does not depend on the tensor size", "[rng]") {
  for (DType dt : {DType::f32, DType::f64}) {
    CAPTURE(dtype_name(dt));
    Generator a(42), b(42);
    CHECK(a.normal({3, 5, 7}, 0, 1, dt).to_vector() == b.normal({3, 5, 7}, 0, 1, dt).to_vector());
    CHECK(a.uniform({3, 5, 7}, 0, 1, dt).to_vector() == b.uniform({3, 5, 7}, 0, 1, dt).to_vector());
    CHECK(Generator(43).normal({16}, 0, 1, dt).to_vector() !=
          Generator(42).normal({16}, 0, 1, dt).to_vector());

    // Large enough for the OpenMP path; the first k of n equal a draw of k for every k tried.
    const int64_t n = 100003;
    const auto big_n = Generator(7).normal({n}, 0, 1, dt).to_vector();
    const auto big_u = Generator(7).uniform({n}, 0, 1, dt).to_vector();
    for (int64_t k : {1, 2, 3, 5, 8, 4097, 100002}) {
      CAPTURE(k);
      const auto small_n = Generator(7).normal({k}, 0, 1, dt).to_vector();
      const auto small_u = Generator(7).uniform({k}, 0, 1, dt).to_vector();
      CHECK(std::equal(small_n.begin(), small_n.end(), big_n.begin()));
      CHECK(std::equal(small_u.begin(), small_u.end(), big_u.begin()));
    }
  }
}

TEST_CASE("the offset advances by the blocks a draw used", "[rng]") {
  Generator g(5);
  g.uniform({5});  // float32 uniform: 4 per block -> 2 blocks
  CHECK(g.offset() == 2);
  g.uniform({5}, 0, 1, DType::f64);  // 2 per block -> 3 blocks
  CHECK(g.offset() == 5);
  g.normal({5});  // normal: 2 per block, both dtypes -> 3 blocks
  CHECK(g.offset() == 8);
  g.normal({2, 2}, 0, 1, DType::f64);
  CHECK(g.offset() == 10);
  g.normal({0});
  CHECK(g.offset() == 10);

  SECTION("consecutive draws continue where the last stopped") {
    Generator one(9), two(9);
    const auto whole = one.uniform({16}).to_vector();
    const auto first = two.uniform({5}).to_vector();   // blocks 0, 1: elements 0..4 (5..7 unused)
    const auto second = two.uniform({8}).to_vector();  // blocks 2, 3: elements 8..15 of `whole`
    CHECK(std::equal(first.begin(), first.end(), whole.begin()));
    CHECK(std::equal(second.begin(), second.end(), whole.begin() + 8));
  }
  SECTION("set_state replays a draw") {
    Generator h(1);
    h.normal({10});
    const uint64_t at = h.offset();
    const auto x = h.normal({10}).to_vector();
    h.set_state(1, at);
    CHECK(h.normal({10}).to_vector() == x);
  }
  SECTION("in-place draws advance the offset and bump the version") {
    Generator h(3);
    Tensor t = zeros({7}, DType::f64);
    const uint64_t v0 = t.version();
    h.uniform_(t, -1, 1);
    CHECK(h.offset() == 4);
    CHECK(t.version() == v0 + 1);
    h.normal_(t);
    CHECK(h.offset() == 8);
    CHECK(t.version() == v0 + 2);
    Generator r(3);
    r.set_state(3, 4);
    CHECK(r.normal({7}, 0, 1, DType::f64).to_vector() == t.to_vector());
  }
  SECTION("a failed draw leaves the offset alone") {
    Tensor bad = empty({4}, DType::i64);
    CHECK_THROWS(g.uniform_(bad));
    CHECK_THROWS(g.normal({4}, 0, 1, DType::i64));
    CHECK_THROWS(g.normal({4}, 0, -1));
    CHECK_THROWS(g.uniform({4}, 1, 0));
    CHECK(g.offset() == 10);
  }
}

TEST_CASE("normal draws have the requested mean and standard deviation", "[rng]") {
  // n = 1e5 draws: the sample mean has standard error stddev/sqrt(n) and the sample standard
  // deviation about stddev/sqrt(2n). Allowing 5 standard errors makes a false failure a < 1e-6
  // event for a correct generator, while a wrong scale or shift (even by 2%) is far outside it.
  const int64_t n = 100000;
  const double mean = 1.5, stddev = 2.5;
  for (DType dt : {DType::f32, DType::f64}) {
    CAPTURE(dtype_name(dt));
    Generator g(2024);
    const auto [m, s] = mean_std(g.normal({n}, mean, stddev, dt).to_vector());
    CHECK(std::abs(m - mean) < 5 * stddev / std::sqrt(double(n)));
    CHECK(std::abs(s - stddev) < 5 * stddev / std::sqrt(2.0 * n));
  }
}

TEST_CASE("uniform draws lie in [low, high) and cover it evenly", "[rng]") {
  const int64_t n = 100000;
  for (DType dt : {DType::f32, DType::f64}) {
    CAPTURE(dtype_name(dt));
    for (auto [low, high] : {std::pair{0.0, 1.0}, std::pair{-3.0, 2.0}, std::pair{0.1, 0.3}}) {
      CAPTURE(low, high);
      Generator g(11);
      const auto x = g.uniform({n}, low, high, dt).to_vector();
      CHECK(*std::min_element(x.begin(), x.end()) >= low);
      CHECK(*std::max_element(x.begin(), x.end()) < high);
      // Mean of U(low, high) is (low+high)/2 with standard error (high-low)/sqrt(12 n); 5 SE as above.
      CHECK(std::abs(mean_std(x).first - (low + high) / 2) < 5 * (high - low) / std::sqrt(12.0 * n));
    }
  }
  SECTION("float64 draws use more than float32's 24 bits") {
    const auto x = Generator(5).uniform({64}, 0, 1, DType::f64).to_vector();
    CHECK(std::any_of(x.begin(), x.end(), [](double u) { return u * 0x1p24 != std::floor(u * 0x1p24); }));
  }
  SECTION("a value that rounds up to high is kept below it") {
    // Float32 steps by 2^-24 just below 1. In [1 - 2^-22, 1 - 2^-30) about one value in eight lies
    // within 2^-25 of 1 and would round to 1.0f >= high; those must become 1 - 2^-24 instead.
    const double low = 1.0 - 0x1p-22, high = 1.0 - 0x1p-30;
    const auto x = Generator(8).uniform({1000}, low, high).to_vector();
    CHECK(*std::min_element(x.begin(), x.end()) >= low);
    CHECK(*std::max_element(x.begin(), x.end()) == 1.0 - 0x1p-24);
    CHECK(std::count(x.begin(), x.end(), 1.0 - 0x1p-24) > 50);  // the edge was really exercised
    // An empty-width interval [v, v] gives v.
    CHECK(Generator(8).uniform({3}, 0.25, 0.25).to_vector() == std::vector<double>(3, 0.25));
  }
}

TEST_CASE("random kernels reject what they cannot fill", "[rng]") {
  Tensor i = empty({3}, DType::i64);
  CHECK_THROWS_WITH(cpu::random_normal(i, 0, 0, 0, 1), Catch::Contains("float32 or float64"));
  CHECK_THROWS_WITH(cpu::random_uniform(i, 0, 0, 0, 1), Catch::Contains("float32 or float64"));
}
