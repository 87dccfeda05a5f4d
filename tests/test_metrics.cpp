// FID and Inception Score statistics (train/metrics.h) and `xgan fid`: closed forms (commuting
// covariances, hand-derived 2x2 cases, self-distance 0, IS of uniform and one-hot predictors), golden
// values from scipy/torch/numpy (tests/golden/fid_reference.py: torchmetrics 0.11's sqrtm trace,
// torch-fidelity's IS with numpy's seeded permutation), the authors' uint8 scaling, files and errors.
// Run: ctest -R test_metrics.
#include <unistd.h>

#include <Eigen/Dense>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "engine/rng.h"
#include "engine/safetensors.h"
#include "temp_dir.h"
#include "train/commands.h"
#include "train/metrics.h"

using namespace xgan;
using namespace xgan::metrics;
using Catch::Matchers::Contains;

namespace {

const TensorFile& golden() {
  static const TensorFile f = load_safetensors(std::string(XGAN_GOLDEN_DIR) + "/fid.safetensors");
  return f;
}
const Tensor& g(const std::string& key) {
  const auto it = golden().tensors.find(key);
  if (it == golden().tensors.end()) FAIL("fid.safetensors has no tensor " << key);
  return it->second;
}
double gval(const std::string& key) { return g(key).item(); }

Eigen::MatrixXd to_matrix(const Tensor& t) {
  REQUIRE(t.dim() == 2);
  const std::vector<double> v = t.to_vector();
  Eigen::MatrixXd m(t.size(0), t.size(1));
  for (int64_t i = 0; i < m.rows(); ++i)
    for (int64_t j = 0; j < m.cols(); ++j) m(i, j) = v[static_cast<size_t>(i * m.cols() + j)];
  return m;
}
Eigen::VectorXd to_vec(const Tensor& t) {
  const std::vector<double> v = t.to_vector();
  return Eigen::Map<const Eigen::VectorXd>(v.data(), static_cast<Eigen::Index>(v.size()));
}
Tensor to_tensor(const Eigen::MatrixXd& m) {
  std::vector<double> v;
  for (int64_t i = 0; i < m.rows(); ++i)
    for (int64_t j = 0; j < m.cols(); ++j) v.push_back(m(i, j));
  return from_vector(v, {m.rows(), m.cols()}, DType::f64);
}

// max |a - b| / max |b|: errors of sums and products scale with the largest entries.
double rel_err(const Eigen::MatrixXd& a, const Eigen::MatrixXd& b) {
  REQUIRE(a.rows() == b.rows());
  REQUIRE(a.cols() == b.cols());
  return (a - b).cwiseAbs().maxCoeff() / b.cwiseAbs().maxCoeff();
}

// Stats straight from a mean and a covariance, for closed-form cases.
GaussianStats make_stats(const Eigen::VectorXd& mu, const Eigen::MatrixXd& sigma) {
  GaussianStats s;
  s.mu = mu;
  s.sigma = sigma;
  s.n = 100;
  return s;
}

// A random orthogonal matrix (QR of a Gaussian matrix).
Eigen::MatrixXd random_rotation(int d, uint64_t seed) {
  Generator rng(seed);
  const Eigen::MatrixXd a = to_matrix(rng.normal({d, d}, 0, 1, DType::f64));
  return Eigen::HouseholderQR<Eigen::MatrixXd>(a).householderQ();
}

// Redirects stdout into a file while alive, so in-process CLI output can be read back.
struct CaptureStdout {
  explicit CaptureStdout(const std::string& path) : path_(path) {
    std::fflush(stdout);
    saved_ = ::dup(::fileno(stdout));
    REQUIRE(std::freopen(path.c_str(), "w", stdout) != nullptr);
  }
  std::string finish() {
    std::fflush(stdout);
    ::dup2(saved_, ::fileno(stdout));
    ::close(saved_);
    saved_ = -1;
    std::ifstream in(path_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  ~CaptureStdout() {
    if (saved_ >= 0) finish();
  }
  std::string path_;
  int saved_ = -1;
};

int run_cli(const std::vector<std::string>& argv) {
  CLI::App app{"xgan"};
  cli::Run run = cli::add_fid(app);
  std::vector<std::string> args(argv.rbegin(), argv.rend());  // CLI11 parses a reversed vector
  app.parse(args);
  return run();
}

const char* kFeatureCases[] = {"full16", "rankdef16", "f32_16", "rankdef64", "mixed64"};

}  // namespace

// ------------------------------------------------------------------------------------------------
// Closed forms

TEST_CASE("FID of a feature set with itself is 0", "[metrics][fid]") {
  // (D, N): full rank and rank-deficient (N < D, covariance rank N - 1).
  for (auto [d, n] : {std::pair<int64_t, int64_t>{32, 500}, {64, 40}}) {
    INFO("D " << d << ", N " << n);
    Generator rng(3);
    const Tensor x = rng.normal({n, d}, 0.3, 2.0, DType::f64);
    const GaussianStats s = stats_of(x);
    const double scale = 2 * s.sigma.trace();
    // The trace term recovers tr S from sqrt(eigenvalues of S^2): each eigenvalue carries an error
    // of about eps * ||S||^2, so a zero (rank-deficient) one can come back as sqrt(eps) * ||S|| ~
    // 1.5e-8 ||S||; D of them stay far below 1e-6 of tr S1 + tr S2.
    CHECK(std::abs(fid(s, s)) <= 1e-6 * scale);
    // Two separately accumulated copies give bit-identical statistics.
    CHECK(fid(stats_of(x), s) == fid(s, s));
  }
}

TEST_CASE("FID of a shifted copy is the squared shift", "[metrics][fid]") {
  // Shifting every sample by c leaves the covariance unchanged (the accumulator subtracts the first
  // row, so even its rounding barely changes), and FID = |c|^2.
  Generator rng(4);
  const int64_t n = 300, d = 24;
  const Tensor x = rng.normal({n, d}, 0, 1, DType::f64);
  const std::vector<double> xv = x.to_vector();
  std::vector<double> yv(xv.size());
  double c2 = 0;
  for (int64_t j = 0; j < d; ++j) c2 += (0.1 * (j % 5)) * (0.1 * (j % 5));
  for (size_t i = 0; i < xv.size(); ++i) yv[i] = xv[i] + 0.1 * static_cast<double>((i % d) % 5);
  const GaussianStats a = stats_of(x), b = stats_of(from_vector(yv, {n, d}, DType::f64));
  // Adding c rounds each feature to ~1e-16 relative, so the sigmas differ at that level and the trace
  // terms cancel to ~1e-13 of tr S (2 d ~ 48 here); 1e-10 of the traces leaves room.
  CHECK(std::abs(fid(a, b) - c2) <= 1e-10 * (a.sigma.trace() + b.sigma.trace()));
  CHECK(rel_err(a.sigma, b.sigma) < 1e-12);  // same covariance up to rounding
}

TEST_CASE("FID of commuting covariances: |mu1 - mu2|^2 + sum (sqrt a_i - sqrt b_i)^2", "[metrics][fid]") {
  const int d = 6;
  Eigen::VectorXd mu1(d), mu2(d), a(d), b(d);
  mu1 << 0.1, -0.2, 0.3, 0.0, 1.5, -1.0;
  mu2 << 0.4, 0.2, -0.3, 0.5, 1.0, -1.0;
  a << 0.5, 1.0, 2.0, 4.0, 0.25, 3.0;
  b << 1.0, 1.0, 0.5, 9.0, 0.01, 2.0;
  double want = (mu1 - mu2).squaredNorm();
  for (int i = 0; i < d; ++i) want += std::pow(std::sqrt(a[i]) - std::sqrt(b[i]), 2);
  // Diagonal, then both rotated by the same Q (still commuting, no longer diagonal).
  const Eigen::MatrixXd q = random_rotation(d, 9);
  for (bool rotated : {false, true}) {
    INFO((rotated ? "Q diag Q^T" : "diagonal"));
    Eigen::MatrixXd s1 = a.asDiagonal(), s2 = b.asDiagonal();
    if (rotated) s1 = q * s1 * q.transpose(), s2 = q * s2 * q.transpose();
    // Eigenvalues in [0.01, 9] with no cancellation: a few ulps of the traces (~24) at most.
    CHECK(fid(make_stats(mu1, s1), make_stats(mu2, s2)) == Approx(want).epsilon(1e-12).margin(1e-13));
  }
}

TEST_CASE("trace term of non-commuting 2x2 covariances matches the hand-derived value", "[metrics][fid]") {
  // For 2x2 PSD M with eigenvalues m1, m2: tr sqrt(M) = sqrt(m1) + sqrt(m2) = sqrt(tr M + 2 sqrt(det M)),
  // and S1^1/2 S2 S1^1/2 has the trace and determinant of S1 S2.
  Eigen::Matrix2d s1, s2, r1;
  s1 << 2, 1, 1, 2;  // eigenvalues 1, 3; does not commute with s2
  s2 << 1, 0, 0, 4;
  r1 << 1, 1, 1, 1;  // rank 1
  // tr(S1 S2) = 2 + 8 = 10, det S1 det S2 = 3 * 4 = 12.
  const double term = std::sqrt(10 + 2 * std::sqrt(12.0));
  CHECK(trace_sqrt_product(s1, s2) == Approx(term).epsilon(1e-14));
  CHECK(trace_sqrt_product(s2, s1) == Approx(term).epsilon(1e-14));  // symmetric in its arguments
  // Rank-deficient: det = 0 and tr(R1 S2) = 1 + 4, so the term is sqrt(5).
  CHECK(trace_sqrt_product(r1, s2) == Approx(std::sqrt(5.0)).epsilon(1e-14));
  CHECK(trace_sqrt_product(s2, r1) == Approx(std::sqrt(5.0)).epsilon(1e-14));
  // The full FID with means (0, 0) and (1, 2): 5 + tr S1 + tr S2 - 2 term = 5 + 4 + 5 - 2 term.
  const double f = fid(make_stats(Eigen::Vector2d(0, 0), s1), make_stats(Eigen::Vector2d(1, 2), s2));
  CHECK(f == Approx(14 - 2 * term).epsilon(1e-14));
}

// ------------------------------------------------------------------------------------------------
// Golden data from scipy / torch

TEST_CASE("trace term of random SPD covariances matches scipy's sqrtm", "[metrics][fid][golden]") {
  // spd16: eigenvalues in [1e-2, 1e2], so both methods agree to a few hundred ulps. spd64: down to
  // 1e-6, so S1 S2 has eigenvalues near 1e-12 whose error in any backward-stable solver is up to
  // eps ||S1|| ||S2|| ~ 1e-12, making their roots uncertain by up to ~1e-6 each: 1e-8 of the trace.
  for (auto [name, tol] : {std::pair<const char*, double>{"spd16", 1e-12}, {"spd64", 1e-8}}) {
    INFO(name);
    const Eigen::MatrixXd s1 = to_matrix(g(std::string(name) + ".s1")),
                          s2 = to_matrix(g(std::string(name) + ".s2"));
    const double got = trace_sqrt_product(s1, s2);
    CHECK(got == Approx(gval(std::string(name) + ".trace_sqrtm")).epsilon(tol));
    CHECK(got == Approx(gval(std::string(name) + ".trace_eig")).epsilon(tol));
  }
}

TEST_CASE("feature statistics and FID match torchmetrics (golden, incl. rank-deficient)",
          "[metrics][fid][golden]") {
  for (const char* name : kFeatureCases) {
    const std::string c = name;
    INFO(c);
    const GaussianStats a = stats_of(g(c + ".x1")), b = stats_of(g(c + ".x2"));
    CHECK(a.n == g(c + ".x1").size(0));
    // Means and covariances: the same float64 sums in another order (and relative to the first row
    // rather than to 0), so they agree to a few hundred ulps of the largest entry at most.
    CHECK(rel_err(a.mu, to_vec(g(c + ".mu1"))) < 1e-12);
    CHECK(rel_err(b.mu, to_vec(g(c + ".mu2"))) < 1e-12);
    const bool has_sigma = golden().tensors.count(c + ".sigma1") > 0;
    if (has_sigma) {
      CHECK(rel_err(a.sigma, to_matrix(g(c + ".sigma1"))) < 1e-12);
      CHECK(rel_err(b.sigma, to_matrix(g(c + ".sigma2"))) < 1e-12);
    }
    const bool rank_deficient = a.n <= a.mu.size() || b.n <= b.mu.size();
    // Full rank: eigenvalue errors ~eps * cond; rank-deficient: the null space of the product comes
    // back as eigenvalues ~eps * ||S||^2 whose roots add up to D * sqrt(eps) ~ 1e-6 of ||S||, in
    // scipy's answer as in ours (scipy's sqrtm and numpy's eigvals differ by 4e-9 relative on
    // rankdef16 themselves).
    const double tol = rank_deficient ? 1e-6 : 1e-10;
    const double scale = a.sigma.trace() + b.sigma.trace();
    if (has_sigma) {
      // The trace term on scipy's own covariances, isolated from our accumulation.
      const double t = trace_sqrt_product(to_matrix(g(c + ".sigma1")), to_matrix(g(c + ".sigma2")));
      CHECK(std::abs(t - gval(c + ".trace_sqrtm")) <= tol * scale);
      CHECK(std::abs(t - gval(c + ".trace_eig")) <= tol * scale);
    }
    const double f = fid(a, b);
    CHECK(std::abs(f - gval(c + ".fid_torchmetrics")) <= 2 * tol * scale);
    CHECK(std::abs(f - gval(c + ".fid_eig")) <= 2 * tol * scale);
  }
}

// ------------------------------------------------------------------------------------------------
// The accumulator

TEST_CASE("StatsAccumulator: batches, dtypes and a large offset", "[metrics][stats]") {
  Generator rng(5);
  const int64_t d = 10;
  const Tensor x = rng.normal({257, d}, 1.0, 0.5, DType::f64);
  const std::vector<double> xv = x.to_vector();
  auto rows = [&](int64_t begin, int64_t end, DType dt) {
    return from_vector(std::vector<double>(xv.begin() + begin * d, xv.begin() + end * d), {end - begin, d},
                       dt);
  };
  const GaussianStats all = stats_of(x);
  StatsAccumulator acc(d);
  acc.add(rows(0, 0, DType::f64));  // an empty batch is fine
  acc.add(rows(0, 1, DType::f64));
  acc.add(rows(1, 100, DType::f64));
  acc.add(rows(100, 257, DType::f64));
  CHECK(acc.count() == 257);
  const GaussianStats parts = acc.finish();
  CHECK(parts.n == 257);
  // Same sums, grouped differently: a few ulps.
  CHECK(rel_err(parts.mu, all.mu) < 1e-14);
  CHECK(rel_err(parts.sigma, all.sigma) < 1e-13);
  CHECK(parts.sigma.isApprox(parts.sigma.transpose(), 0));  // exactly symmetric

  // float32 features are widened exactly, so they give the float64 stats of the rounded values.
  const Tensor x32 = x.to(DType::f32);
  const GaussianStats s32 = stats_of(x32), s32w = stats_of(x32.to(DType::f64));
  CHECK(rel_err(s32.sigma, s32w.sigma) == 0);

  // A common offset of 1e6 on unit-variance data: sum x x^T - n mu mu^T would cancel 12 of 16
  // digits; the first-row shift keeps the covariance to ~1e-10 of a two-pass computation.
  std::vector<double> big(xv);
  for (double& v : big) v += 1e6;
  const GaussianStats off = stats_of(from_vector(big, {257, d}, DType::f64));
  Eigen::MatrixXd xm = to_matrix(from_vector(big, {257, d}, DType::f64));
  const Eigen::RowVectorXd mean = xm.colwise().mean();
  xm.rowwise() -= mean;
  const Eigen::MatrixXd two_pass = xm.transpose() * xm / 256.0;
  CHECK(rel_err(off.sigma, two_pass) < 1e-9);
  CHECK(rel_err(off.mu, mean.transpose()) < 1e-15);
}

TEST_CASE("StatsAccumulator and fid reject bad input with clear messages", "[metrics][stats]") {
  StatsAccumulator acc(4);
  CHECK_THROWS_WITH(acc.add(zeros({3, 5}, DType::f32)), Contains("dimension 5") && Contains("accumulator 4"));
  CHECK_THROWS_WITH(acc.add(zeros({3, 4, 1}, DType::f32)), Contains("[N, D]"));
  CHECK_THROWS_WITH(acc.add(zeros({3, 4}, DType::i64)), Contains("float32 or float64"));
  Tensor bad = zeros({3, 4}, DType::f64);
  bad.data<double>()[5] = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_WITH(acc.add(bad), Contains("NaN"));
  CHECK(acc.count() == 0);
  acc.add(ones({1, 4}, DType::f32));
  CHECK_THROWS_WITH(acc.finish(), Contains("at least 2 samples"));
  CHECK_THROWS(StatsAccumulator(0));

  const GaussianStats a = make_stats(Eigen::VectorXd::Zero(3), Eigen::MatrixXd::Identity(3, 3));
  const GaussianStats b = make_stats(Eigen::VectorXd::Zero(4), Eigen::MatrixXd::Identity(4, 4));
  CHECK_THROWS_WITH(fid(a, b), Contains("dimensions differ (3 vs 4)"));
  GaussianStats broken = a;
  broken.sigma = Eigen::MatrixXd::Identity(2, 2);
  CHECK_THROWS_WITH(fid(broken, a), Contains("inconsistent"));
  CHECK_THROWS_WITH(trace_sqrt_product(Eigen::MatrixXd::Identity(2, 3), Eigen::MatrixXd::Identity(2, 3)),
                    Contains("square"));
}

// ------------------------------------------------------------------------------------------------
// Inception Score

TEST_CASE("numpy_permutation is numpy's RandomState(seed).permutation(n)", "[metrics][is][golden]") {
  for (auto [seed, n] :
       {std::pair<uint64_t, int64_t>{2020, 103}, {0, 1000}, {4294967295ULL, 7}, {12345, 1}}) {
    INFO("seed " << seed << ", n " << n);
    const std::vector<double> want = g("perm." + std::to_string(seed) + "_" + std::to_string(n)).to_vector();
    const std::vector<int64_t> got = numpy_permutation(n, seed);
    REQUIRE(got.size() == want.size());
    for (size_t i = 0; i < got.size(); ++i) CHECK(static_cast<double>(got[i]) == want[i]);
  }
  CHECK(numpy_permutation(0, 1).empty());
  CHECK_THROWS_WITH(numpy_permutation(5, 1ULL << 32), Contains("below 2^32"));
}

TEST_CASE("IS of a uniform predictor is 1, of a balanced one-hot predictor K", "[metrics][is]") {
  const int64_t k = 7, per_class = 3, splits = 10, n = splits * k * per_class;
  // Uniform: every p_i is the split mean, every KL is 0, exp(0) = 1 exactly.
  const InceptionScore u = inception_score(zeros({n, k}, DType::f32), splits, 1);
  CHECK(u.mean == 1.0);
  CHECK(u.std == 0.0);
  // One-hot: IS of a split is exp(H(mean p)), K only if the split holds every class equally often.
  // So label row perm[r] with class r % K: after the shuffle split s (rows [s n/10, (s+1) n/10),
  // a multiple of K long) sees each class per_class times.
  const uint64_t seed = 2020;
  const std::vector<int64_t> perm = numpy_permutation(n, seed);
  std::vector<double> logits(static_cast<size_t>(n * k), 0.0), probs(static_cast<size_t>(n * k), 0.0);
  std::vector<int64_t> label(static_cast<size_t>(n));
  for (int64_t r = 0; r < n; ++r) label[perm[r]] = r % k;
  for (int64_t i = 0; i < n; ++i) {
    logits[i * k + label[i]] = 60.0;  // other classes get e^-60 ~ 1e-26 of the mass
    probs[i * k + label[i]] = 1.0;    // exact zeros elsewhere: 0 log 0 counts as 0
  }
  const InceptionScore h = inception_score(from_vector(logits, {n, k}, DType::f64), splits, seed);
  const InceptionScore hp = inception_score_from_probs(from_vector(probs, {n, k}, DType::f64), splits, seed);
  // The e^-60 leak changes the entropy by ~1e-24; what is left is round-off of K logs and exps.
  CHECK(h.mean == Approx(static_cast<double>(k)).epsilon(1e-13));
  CHECK(h.std <= 1e-12);
  CHECK(hp.mean == Approx(static_cast<double>(k)).epsilon(1e-13));
  // Another seed mixes the classes unevenly across splits: each split scores below K (so the
  // shuffle is really applied), but IS always lies in [1, K].
  const InceptionScore other = inception_score(from_vector(logits, {n, k}, DType::f64), splits, seed + 1);
  CHECK(other.mean < k - 0.1);
  CHECK(other.mean > 1.0);
  CHECK(other.std > 0.0);
  // One split over everything: balanced overall, so exactly K again whatever the seed.
  CHECK(inception_score(from_vector(logits, {n, k}, DType::f64), 1, 99).mean == Approx(k).epsilon(1e-13));
}

TEST_CASE("IS matches torch-fidelity's computation with numpy's shuffle (golden)", "[metrics][is][golden]") {
  for (const char* key : {"is", "is32"}) {
    const Tensor& logits = g(std::string(key) + ".logits");
    for (auto [seed, splits] : {std::pair<uint64_t, int>{2020, 10}, {0, 3}, {7, 1}}) {
      const std::string p = std::string(key) + "." + std::to_string(seed) + "_" + std::to_string(splits);
      INFO(p << " " << logits.str());
      const InceptionScore is = inception_score(logits, splits, seed);
      // float64 softmax and KL sums over K <= 50 classes and ~100 rows, in another order than numpy:
      // ~1e-15 relative; the std (a difference of nearby scores) loses a digit or two more.
      CHECK(is.mean == Approx(gval(p + ".mean")).epsilon(1e-12));
      CHECK(is.std == Approx(gval(p + ".std")).epsilon(1e-10).margin(1e-14));
      if (splits > 1)
        CHECK(is.std_sample == Approx(gval(p + ".std_sample")).epsilon(1e-10));
      else
        CHECK(std::isnan(is.std_sample));
      if (std::string(key) == "is") {
        const InceptionScore ip = inception_score_from_probs(g("is.probs"), splits, seed);
        CHECK(ip.mean == Approx(gval(p + ".mean")).epsilon(1e-12));
        CHECK(ip.std == Approx(gval(p + ".std")).epsilon(1e-10).margin(1e-14));
      }
    }
  }
  // torch-fidelity's default seed 2020 and torchmetrics' unbiased std: sample = population * sqrt(10/9).
  const InceptionScore is = inception_score(g("is.logits"), 10, 2020);
  CHECK(is.std_sample == Approx(is.std * std::sqrt(10.0 / 9.0)).epsilon(1e-14));
}

TEST_CASE("IS rejects bad input", "[metrics][is]") {
  CHECK_THROWS_WITH(inception_score(zeros({7, 3}), 10), Contains("10 splits") && Contains("got 7"));
  CHECK_THROWS_WITH(inception_score(zeros({7, 3}), 0), Contains("0 splits"));
  CHECK_THROWS_WITH(inception_score(zeros({7}), 1), Contains("[N, K]"));
  CHECK_THROWS_WITH(inception_score(zeros({7, 3}), 1, 1ULL << 40), Contains("2^32"));
  Tensor inf = zeros({4, 3}, DType::f64);
  inf.data<double>()[2] = std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH(inception_score(inf, 2), Contains("NaN or infinity"));
  CHECK_THROWS_WITH(inception_score_from_probs(ones({4, 3}), 2), Contains("sums to 3"));
  CHECK_THROWS_WITH(inception_score_from_probs(from_vector(std::vector<double>{1.5, -0.5}, {1, 2}), 1),
                    Contains("negative"));
}

// ------------------------------------------------------------------------------------------------
// Preprocessing

TEST_CASE("to_uint8_range: the authors' min-max scaling with a truncating uint8 cast",
          "[metrics][preprocess]") {
  // (x + 1) / 2 * 255 = 0, 63.75, 127.5, 191.25, 255: truncated, not rounded.
  const Tensor y = to_uint8_range(from_vector(std::vector<double>{-1, -0.5, 0, 0.5, 1}, {5, 1}));
  CHECK(y.dtype() == DType::f32);
  CHECK(y.shape() == Shape{5, 1});
  CHECK(y.to_vector() == std::vector<double>{0, 63, 127, 191, 255});
  // Range [0, 255] maps to itself; 254.9 stays 254 (round-to-nearest would give 255).
  CHECK(to_uint8_range(from_vector(std::vector<double>{0, 254.9, 255, 17.5}, {4}, DType::f64)).to_vector() ==
        std::vector<double>{0, 254, 255, 17});
  // A constant batch has no range: 0 everywhere (the authors' formula divides 0 by 0).
  CHECK(to_uint8_range(full({2, 3}, 0.7)).to_vector() == std::vector<double>(6, 0.0));
  // Bit-exact against torch's float32 and float64 arithmetic on a random batch.
  for (const char* key : {"u8", "u8_64"}) {
    INFO(key);
    const Tensor got = to_uint8_range(g(std::string(key) + ".x"));
    CHECK(got.shape() == g(std::string(key) + ".x").shape());
    CHECK(got.to_vector() == g(std::string(key) + ".out").to_vector());
  }
  Tensor nan = zeros({2});
  nan.data<float>()[1] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH(to_uint8_range(nan), Contains("NaN"));
}

// ------------------------------------------------------------------------------------------------
// Files

TEST_CASE("stats files round-trip; features files become stats", "[metrics][files]") {
  test::TempDir dir("metrics");
  const GaussianStats s = stats_of(g("full16.x1"));
  const std::string path = dir.file("s.safetensors");
  save_stats(s, path);
  const GaussianStats r = load_stats_or_features(path);
  CHECK(r.n == s.n);
  CHECK(r.mu == s.mu);  // float64 written and read back bit for bit
  CHECK(r.sigma == s.sigma);
  CHECK(dir.listing() == std::vector<std::string>{"s.safetensors"});  // no temp file left

  const TensorFile f = load_safetensors(path);
  CHECK(f.tensors.at("mu").dtype() == DType::f64);
  CHECK(f.tensors.at("sigma").shape() == Shape{16, 16});

  // Stats without n (e.g. written by another tool) and in float32 load too.
  save_safetensors(
      dir.file("ext.safetensors"),
      {{"mu", from_vector(std::vector<double>(s.mu.data(), s.mu.data() + s.mu.size()), {16}, DType::f64)},
       {"sigma", to_tensor(s.sigma).to(DType::f32)}});
  const GaussianStats e = load_stats_or_features(dir.file("ext.safetensors"));
  CHECK(e.n == 0);
  CHECK(rel_err(e.sigma, s.sigma) < 1e-6);  // float32 rounding

  // A features file gives the same stats as stats_of.
  save_safetensors(dir.file("feat.safetensors"), {{"features", g("f32_16.x1")}});
  const GaussianStats ff = load_stats_or_features(dir.file("feat.safetensors"));
  const GaussianStats want = stats_of(g("f32_16.x1"));
  CHECK(ff.sigma == want.sigma);
  CHECK(ff.n == 300);
}

TEST_CASE("bad stats or features files give errors naming the file and the problem", "[metrics][files]") {
  test::TempDir dir("metrics_bad");
  const Eigen::MatrixXd eye = Eigen::MatrixXd::Identity(3, 3);
  const Tensor mu = zeros({3}, DType::f64), sigma = to_tensor(eye);
  auto write = [&](const std::string& name, const std::map<std::string, Tensor>& t) {
    save_safetensors(dir.file(name), t);
    return dir.file(name);
  };
  auto fails_with = [&](const std::string& file, const std::string& what) {
    INFO(file << ": expecting \"" << what << "\"");
    CHECK_THROWS_WITH(load_stats_or_features(file), Contains(file) && Contains(what));
  };
  fails_with(write("neither.safetensors", {{"x", mu}}), "neither");
  fails_with(write("both.safetensors", {{"mu", mu}, {"sigma", sigma}, {"features", sigma}}), "both");
  fails_with(write("mu_only.safetensors", {{"mu", mu}}), "both \"mu\" and \"sigma\"");
  fails_with(write("shape.safetensors", {{"mu", zeros({4}, DType::f64)}, {"sigma", sigma}}), "[4, 4]");
  Eigen::MatrixXd asym = eye;
  asym(0, 2) = 0.5;
  fails_with(write("asym.safetensors", {{"mu", mu}, {"sigma", to_tensor(asym)}}), "not symmetric");
  fails_with(write("negvar.safetensors", {{"mu", mu}, {"sigma", to_tensor(-eye)}}), "negative variance");
  fails_with(write("n1.safetensors", {{"mu", mu}, {"sigma", sigma}, {"n", scalar(1)}}), "\"n\"");
  fails_with(write("f1d.safetensors", {{"features", zeros({5}, DType::f32)}}), "[N, D]");
  fails_with(write("f1row.safetensors", {{"features", zeros({1, 5}, DType::f32)}}), "at least 2");
  Tensor nan = zeros({3, 2}, DType::f32);
  nan.data<float>()[3] = std::numeric_limits<float>::quiet_NaN();
  fails_with(write("fnan.safetensors", {{"features", nan}}), "NaN");
  // A truncated file: the safetensors reader's own message, which names the file.
  const std::string good = write("good.safetensors", {{"mu", mu}, {"sigma", sigma}});
  std::filesystem::resize_file(good, std::filesystem::file_size(good) - 8);
  CHECK_THROWS_WITH(load_stats_or_features(good), Contains(good));
  CHECK_THROWS_WITH(load_stats_or_features(dir.file("missing.safetensors")), Contains("missing.safetensors"));
  CHECK_THROWS_WITH(save_stats(GaussianStats{}, dir.file("empty.safetensors")), Contains("save_stats"));
}

// ------------------------------------------------------------------------------------------------
// The command line

TEST_CASE("xgan fid, run in process, prints and writes the FID", "[metrics][cli]") {
  test::TempDir dir("fid_cli");
  const std::string f1 = dir.file("x1.safetensors"), f2 = dir.file("x2.safetensors"),
                    js = dir.file("fid.json");
  save_safetensors(f1, {{"features", g("full16.x1")}});
  save_safetensors(f2, {{"features", g("full16.x2")}});
  const double want = gval("full16.fid_torchmetrics");

  CaptureStdout cap(dir.file("stdout.txt"));
  const int rc = run_cli(
      {"fid", "--stats1", f1, "--stats2", f2, "--json", js, "--save-stats1", dir.file("s1.safetensors")});
  const std::string out = cap.finish();
  REQUIRE(rc == 0);
  INFO("stdout: " << out);
  REQUIRE(out.rfind("FID ", 0) == 0);
  const std::string number = out.substr(4, out.find('\n') - 4);
  // At least 9 significant digits on stdout (the contract); the value agrees with torchmetrics'
  // to the full-rank golden tolerance (1e-10 of the traces, ~30 here).
  size_t digits = 0;
  for (char ch : number) digits += (ch >= '0' && ch <= '9');
  CHECK(digits >= 10);  // "9.69185181432846": a leading digit plus 14 decimals
  CHECK(std::stod(number) == Approx(want).epsilon(1e-10));
  std::ifstream in(js);
  const nlohmann::json j = nlohmann::json::parse(in);
  // stdout rounds to 15 significant digits, the JSON keeps every bit.
  CHECK(j.at("fid").get<double>() == Approx(std::stod(number)).epsilon(1e-14));
  CHECK(j.at("fid").get<double>() == Approx(want).epsilon(1e-10));

  // The saved stats give the same FID, bit for bit, as the features they came from.
  CaptureStdout cap2(dir.file("stdout2.txt"));
  REQUIRE(run_cli({"fid", "--stats1", dir.file("s1.safetensors"), "--stats2", f2}) == 0);
  CHECK(cap2.finish() == out);
  for (const auto& name : dir.listing()) CHECK(name.find(".tmp") == std::string::npos);
}

TEST_CASE("xgan fid rejects mismatched or missing inputs", "[metrics][cli]") {
  test::TempDir dir("fid_cli_bad");
  const std::string f16 = dir.file("a.safetensors"), f64 = dir.file("b.safetensors");
  save_safetensors(f16, {{"features", g("full16.x1")}});
  save_safetensors(f64, {{"features", g("mixed64.x1")}});
  CHECK_THROWS_WITH(run_cli({"fid", "--stats1", f16, "--stats2", f64}), Contains("16-d") && Contains("64-d"));
  CHECK_THROWS_AS(run_cli({"fid", "--stats1", f16, "--stats2", dir.file("none.safetensors")}),
                  CLI::ValidationError);
  CHECK_THROWS_AS(run_cli({"fid", "--stats1", f16}), CLI::RequiredError);
}
