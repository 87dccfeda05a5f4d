// kernels/cpu/sgemm: the vector float GEMM (AVX-512 or AVX2) against a double-precision reference, over shapes that
// hit every edge of its blocking (partial register tiles, several k slices, several row and column
// blocks), every transpose of A and B, strided C, accumulation, and thread counts.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <array>
#include <random>
#include <vector>

#include "kernels/cpu/sgemm.h"

#ifdef _OPENMP
#include <omp.h>
#endif

using xgan::cpu::sgemm;
using xgan::cpu::StridedMat;

namespace {

struct Case {
  int64_t M, N, K;
  bool ta, tb;       // A, B stored transposed (column-major)
  bool c_colmajor;   // C stored column-major (a strided destination)
  bool accumulate;
};

// Runs one case and returns the worst error relative to its bound (must be <= 1).
double run_case(const Case& t, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist;
  std::vector<float> a(t.M * t.K), b(t.K * t.N), c(t.M * t.N);
  for (auto& v : a) v = dist(rng);
  for (auto& v : b) v = dist(rng);
  for (auto& v : c) v = dist(rng);
  const std::vector<float> c0 = c;
  const StridedMat<const float> A = t.ta ? StridedMat<const float>{a.data(), t.M, t.K, 1, t.M}
                                         : StridedMat<const float>{a.data(), t.M, t.K, t.K, 1};
  const StridedMat<const float> B = t.tb ? StridedMat<const float>{b.data(), t.K, t.N, 1, t.K}
                                         : StridedMat<const float>{b.data(), t.K, t.N, t.N, 1};
  const StridedMat<float> C = t.c_colmajor ? StridedMat<float>{c.data(), t.M, t.N, 1, t.M}
                                           : StridedMat<float>{c.data(), t.M, t.N, t.N, 1};
  sgemm(A, B, C, t.accumulate);
  double worst = 0;
  for (int64_t i = 0; i < t.M; ++i)
    for (int64_t j = 0; j < t.N; ++j) {
      double ref = 0, mag = 0;
      for (int64_t k = 0; k < t.K; ++k) {
        const double p = double(A.data[i * A.rs + k * A.cs]) * double(B.data[k * B.rs + j * B.cs]);
        ref += p;
        mag += std::abs(p);
      }
      const int64_t at = i * C.rs + j * C.cs;
      if (t.accumulate) {
        ref += c0[at];
        mag += std::abs(c0[at]);
      }
      // Float summation of K products (plus the old value and the slice partials): the classic
      // bound is about (K + 2) u sum|a b| with u = 2^-24; twice that leaves room for the order of
      // the additions, and stays far below the error of a wrong index (O(1) relative).
      const double bound = 2.0 * double(t.K + 2) * std::ldexp(1.0, -24) * mag + 1e-30;
      worst = std::max(worst, std::abs(double(c[at]) - ref) / bound);
    }
  return worst;
}

}  // namespace

TEST_CASE("sgemm matches a double reference over the blocking's edges") {
  if (!xgan::cpu::sgemm_available()) {
    WARN("sgemm is off (XGAN_MARCH x86-64-v2, or XGAN_EIGEN set); Eigen is used instead");
    return;
  }
  // Sizes around the register tile (8 x 48 on AVX-512, 6 x 16 on AVX2), the k slice (192; 256),
  // the row block (144) and the column block (960; 1024), for either build.
  const std::vector<std::array<int64_t, 3>> shapes = {
      {1, 1, 1},      {8, 48, 192},   {7, 47, 191},  {9, 49, 193},   {6, 16, 256}, {5, 15, 255},
      {13, 17, 257},  {3, 100, 5},    {100, 3, 5},   {145, 50, 400}, {20, 961, 30}, {150, 970, 385},
      {40, 1030, 9},  {33, 1, 64},    {1, 700, 17}};
  uint32_t seed = 1;
  for (const auto& s : shapes)
    for (int variant = 0; variant < 16; ++variant) {
      const Case t{s[0], s[1], s[2], bool(variant & 1), bool(variant & 2), bool(variant & 4), bool(variant & 8)};
      INFO("M " << t.M << " N " << t.N << " K " << t.K << " ta " << t.ta << " tb " << t.tb << " c col-major "
                << t.c_colmajor << " accumulate " << t.accumulate);
      CHECK(run_case(t, seed++) <= 1.0);
    }
}

TEST_CASE("sgemm with K = 0 writes zeros, or leaves C alone when accumulating") {
  if (!xgan::cpu::sgemm_available()) return;
  std::vector<float> c(6, 5.0f);
  const float dummy = 0;
  sgemm({&dummy, 2, 0, 0, 1}, {&dummy, 0, 3, 3, 1}, {c.data(), 2, 3, 3, 1}, true);
  for (float v : c) CHECK(v == 5.0f);
  sgemm({&dummy, 2, 0, 0, 1}, {&dummy, 0, 3, 3, 1}, {c.data(), 2, 3, 3, 1}, false);
  for (float v : c) CHECK(v == 0.0f);
}

TEST_CASE("sgemm gives the same bits on any thread count") {
  if (!xgan::cpu::sgemm_available()) return;
#ifdef _OPENMP
  const int64_t M = 200, N = 1500, K = 500;
  std::mt19937 rng(7);
  std::normal_distribution<float> dist;
  std::vector<float> a(M * K), b(K * N);
  for (auto& v : a) v = dist(rng);
  for (auto& v : b) v = dist(rng);
  std::vector<std::vector<float>> results;
  const int before = omp_get_max_threads();
  for (int threads : {1, 2, 3}) {
    omp_set_num_threads(threads);
    std::vector<float> c(M * N);
    sgemm({a.data(), M, K, K, 1}, {b.data(), K, N, N, 1}, {c.data(), M, N, N, 1}, false);
    results.push_back(c);
  }
  omp_set_num_threads(before);
  CHECK(results[0] == results[1]);
  CHECK(results[0] == results[2]);
#endif
}

TEST_CASE("sgemm_batch reads B from panels exactly as it reads a plain B") {
  using namespace xgan::cpu;
  if (!sgemm_available()) return;
  // Two products, N not a whole number of panels, K over two depth slices, rows over several tiles.
  const int64_t count = 2, M = 37, N = 100, K = 300, w = sgemm_panel_width(), Q = (N + w - 1) / w;
  std::mt19937 rng(17);
  std::normal_distribution<float> dist;
  std::vector<float> a(count * M * K), b(count * K * N);
  // The panels must be 64-byte aligned (the kernel's aligned loads); a vector's buffer may not be.
  std::vector<float> storage(count * Q * K * w + 16, 0.0f);
  float* panels = storage.data();
  while (reinterpret_cast<uintptr_t>(panels) % 64 != 0) ++panels;
  for (auto& v : a) v = dist(rng);
  for (auto& v : b) v = dist(rng);
  for (int64_t p = 0; p < count; ++p)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t j = 0; j < N; ++j) panels[p * Q * K * w + (j / w * K + k) * w + j % w] = b[(p * K + k) * N + j];
  std::vector<int64_t> ar(M), ac(K), br(K), bc(N), cr(M), cc(N);
  for (int64_t i = 0; i < M; ++i) ar[i] = i * K, cr[i] = i * N;
  for (int64_t k = 0; k < K; ++k) ac[k] = k, br[k] = k * N;
  for (int64_t j = 0; j < N; ++j) bc[j] = j, cc[j] = j;
  const GemmView<const float> A{a.data(), M, K, ar.data(), ac.data()};
#ifdef _OPENMP
  const int before = omp_get_max_threads();
#endif
  for (int threads : {1, 2}) {
#ifdef _OPENMP
    omp_set_num_threads(threads);
#endif
    std::vector<float> plain(count * M * N, NAN), packed(count * M * N, NAN);
    sgemm_batch(count, A, M * K, GemmView<const float>{b.data(), K, N, br.data(), bc.data()}, K * N,
                GemmView<float>{plain.data(), M, N, cr.data(), cc.data()}, M * N, false);
    sgemm_batch(count, A, M * K, PackedPanels{panels, K, N}, Q * K * w,
                GemmView<float>{packed.data(), M, N, cr.data(), cc.data()}, M * N, false);
    INFO("threads " << threads);
    CHECK(packed == plain);  // the same kernel on the same panel contents: bit for bit
    CHECK(std::isfinite(plain[0]));
  }
#ifdef _OPENMP
  omp_set_num_threads(before);
#endif
  // Misaligned panels are refused, not read.
  std::vector<float> out(count * M * N);
  CHECK_THROWS_WITH(sgemm_batch(count, A, M * K, PackedPanels{panels + 1, K, N}, Q * K * w,
                                GemmView<float>{out.data(), M, N, cr.data(), cc.data()}, M * N, false),
                    Catch::Contains("64-byte aligned"));
}
