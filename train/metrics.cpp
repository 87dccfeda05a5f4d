// FID and Inception Score statistics (train/metrics.h): float64 throughout, Eigen for the linear
// algebra. The only expensive parts are the rank-N update of the feature cross-products (a SYRK) and
// two symmetric eigendecompositions of D x D matrices (D = 2048 for Inception's pool3).
#include "train/metrics.h"

#include <Eigen/Eigenvalues>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <random>
#include <sstream>
#include <stdexcept>

#include "engine/safetensors.h"

namespace xgan::metrics {

namespace {

using RowMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

std::string dims_str(const Eigen::MatrixXd& m) {
  return "[" + std::to_string(m.rows()) + ", " + std::to_string(m.cols()) + "]";
}

// Rows [begin, end) of a float32 or float64 host tensor [N, D], widened to double.
RowMatrix rows_as_double(const Tensor& t, int64_t begin, int64_t end) {
  const int64_t d = t.size(1);
  RowMatrix m(end - begin, d);
  if (t.dtype() == DType::f64) {
    std::memcpy(m.data(), t.data<double>() + begin * d,
                static_cast<size_t>((end - begin) * d) * sizeof(double));
  } else {
    const float* src = t.data<float>() + begin * d;
    for (int64_t i = 0; i < (end - begin) * d; ++i) m.data()[i] = src[i];
  }
  return m;
}

Tensor host_float_matrix(const Tensor& t, const char* what, const char* shape_hint) {
  if (!t.defined()) throw std::invalid_argument(std::string(what) + ": undefined tensor");
  if (t.dim() != 2)
    throw std::invalid_argument(std::string(what) + ": expected " + shape_hint + ", got " + t.str());
  if (t.dtype() != DType::f32 && t.dtype() != DType::f64)
    throw std::invalid_argument(std::string(what) + ": expected float32 or float64, got " + t.str());
  return t.device().is_cpu() ? t : t.to(kCPU);
}

}  // namespace

// ------------------------------------------------------------------------------------------------
// Mean and covariance

StatsAccumulator::StatsAccumulator(int64_t dim) : dim_(dim) {
  if (dim < 1)
    throw std::invalid_argument("StatsAccumulator: dimension must be >= 1, got " + std::to_string(dim));
  shift_ = Eigen::VectorXd::Zero(dim);
  sum_ = Eigen::VectorXd::Zero(dim);
  cross_ = Eigen::MatrixXd::Zero(dim, dim);
}

void StatsAccumulator::add(const Tensor& features_in) {
  const Tensor f = host_float_matrix(features_in, "StatsAccumulator::add", "features [N, D]");
  if (f.size(1) != dim_)
    throw std::invalid_argument("StatsAccumulator::add: features have dimension " +
                                std::to_string(f.size(1)) + ", the accumulator " + std::to_string(dim_) +
                                " (" + f.str() + ")");
  const int64_t n = f.size(0);
  // Blocks of rows bound the float64 copy (50k x 2048 float32 features would otherwise double to 800 MB).
  constexpr int64_t kBlock = 1024;
  for (int64_t begin = 0; begin < n; begin += kBlock) {
    const int64_t end = std::min(n, begin + kBlock);
    RowMatrix x = rows_as_double(f, begin, end);
    if (!x.allFinite())
      throw std::invalid_argument("StatsAccumulator::add: features contain NaN or infinity (rows " +
                                  std::to_string(begin) + ".." + std::to_string(end - 1) + " of " + f.str() +
                                  ")");
    if (n_ == 0) shift_ = x.row(0).transpose();
    x.rowwise() -= shift_.transpose();
    sum_ += x.colwise().sum().transpose();
    cross_.selfadjointView<Eigen::Lower>().rankUpdate(x.transpose());
    n_ += end - begin;
  }
}

GaussianStats StatsAccumulator::finish() const {
  if (n_ < 2)
    throw std::runtime_error("feature statistics need at least 2 samples for a covariance, got " +
                             std::to_string(n_));
  const double n = static_cast<double>(n_);
  const Eigen::VectorXd m = sum_ / n;  // mean of (x - shift)
  GaussianStats s;
  s.n = n_;
  s.mu = shift_ + m;
  Eigen::MatrixXd centred = cross_;
  centred.triangularView<Eigen::Lower>() -= n * m * m.transpose();
  // Mirrored from one triangle, so the result is exactly symmetric ((n m_i) m_j and (n m_j) m_i
  // can round differently).
  s.sigma = centred.selfadjointView<Eigen::Lower>();
  s.sigma /= n - 1;
  return s;
}

GaussianStats stats_of(const Tensor& features) {
  const Tensor f = host_float_matrix(features, "stats_of", "features [N, D]");
  StatsAccumulator acc(f.size(1));
  acc.add(f);
  return acc.finish();
}

// ------------------------------------------------------------------------------------------------
// Frechet distance

double trace_sqrt_product(const Eigen::MatrixXd& s1, const Eigen::MatrixXd& s2) {
  if (s1.rows() != s1.cols() || s2.rows() != s2.cols() || s1.rows() != s2.rows() || s1.rows() == 0)
    throw std::invalid_argument("trace_sqrt_product: need two square covariances of one size, got " +
                                dims_str(s1) + " and " + dims_str(s2));
  if (!s1.allFinite() || !s2.allFinite())
    throw std::invalid_argument("trace_sqrt_product: a covariance contains NaN or infinity");
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig1(s1);
  if (eig1.info() != Eigen::Success)
    throw std::runtime_error("trace_sqrt_product: the eigendecomposition of the first covariance failed");
  // S1 = V L V^T, so A = V L^{1/2} V^T and A S2 A = V (W^T S2 W) V^T with W = V L^{1/2}: the
  // symmetric W^T S2 W has the eigenvalues of A S2 A and costs two products instead of three.
  // Round-off leaves eigenvalues of a PSD matrix slightly negative: those are zero.
  const Eigen::VectorXd root = eig1.eigenvalues().cwiseMax(0.0).cwiseSqrt();
  const Eigen::MatrixXd w = eig1.eigenvectors() * root.asDiagonal();
  const Eigen::MatrixXd s2w = s2.selfadjointView<Eigen::Lower>() * w;
  Eigen::MatrixXd m(w.cols(), w.cols());
  m.noalias() = w.transpose() * s2w;
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig2(m, Eigen::EigenvaluesOnly);
  if (eig2.info() != Eigen::Success)
    throw std::runtime_error("trace_sqrt_product: the eigendecomposition of S1^1/2 S2 S1^1/2 failed");
  return eig2.eigenvalues().cwiseMax(0.0).cwiseSqrt().sum();
}

double fid(const GaussianStats& a, const GaussianStats& b) {
  auto check = [](const GaussianStats& s, const char* which) {
    if (s.mu.size() == 0 || s.sigma.rows() != s.mu.size() || s.sigma.cols() != s.mu.size())
      throw std::invalid_argument(std::string("fid: statistics ") + which + " are inconsistent: mu has " +
                                  std::to_string(s.mu.size()) + " entries, sigma is " + dims_str(s.sigma));
  };
  check(a, "1");
  check(b, "2");
  if (a.mu.size() != b.mu.size())
    throw std::invalid_argument("fid: the feature dimensions differ (" + std::to_string(a.mu.size()) +
                                " vs " + std::to_string(b.mu.size()) +
                                "); were both made with the same network?");
  const double mean_term = (a.mu - b.mu).squaredNorm();
  return mean_term + a.sigma.trace() + b.sigma.trace() - 2.0 * trace_sqrt_product(a.sigma, b.sigma);
}

// ------------------------------------------------------------------------------------------------
// Inception Score

std::vector<int64_t> numpy_permutation(int64_t n, uint64_t seed) {
  if (n < 0) throw std::invalid_argument("numpy_permutation: negative length");
  if (seed > 0xffffffffULL)
    throw std::invalid_argument("numpy_permutation: numpy's RandomState takes seeds below 2^32, got " +
                                std::to_string(seed));
  // numpy's mt19937_seed is the reference init_genrand, which is what std::mt19937(seed) does, and
  // its 32-bit outputs are the standard tempered words.
  std::mt19937 gen(static_cast<uint32_t>(seed));
  auto next64 = [&] {
    const uint64_t hi = gen();
    return (hi << 32) | static_cast<uint64_t>(gen());
  };
  // numpy's random_interval: a uniform integer in [0, max] by masking to the next power of two
  // minus one and rejecting values above max.
  auto interval = [&](uint64_t max) -> uint64_t {
    if (max == 0) return 0;
    uint64_t mask = max;
    for (int s : {1, 2, 4, 8, 16, 32}) mask |= mask >> s;
    uint64_t v;
    if (max <= 0xffffffffULL) {
      do v = static_cast<uint64_t>(gen()) & mask;
      while (v > max);
    } else {
      do v = next64() & mask;
      while (v > max);
    }
    return v;
  };
  std::vector<int64_t> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[i] = i;
  for (int64_t i = n - 1; i >= 1; --i) std::swap(p[i], p[interval(static_cast<uint64_t>(i))]);
  return p;
}

namespace {

// The common part: p and log p [N, K] (log p may be -inf where p == 0).
InceptionScore score_splits(const RowMatrix& p, const RowMatrix& log_p, int splits, uint64_t seed) {
  const int64_t n = p.rows(), k = p.cols();
  const std::vector<int64_t> perm = numpy_permutation(n, seed);
  std::vector<double> scores;
  for (int64_t s = 0; s < splits; ++s) {
    const int64_t begin = s * n / splits, end = (s + 1) * n / splits;
    Eigen::RowVectorXd q = Eigen::RowVectorXd::Zero(k);
    for (int64_t r = begin; r < end; ++r) q += p.row(perm[r]);
    q /= static_cast<double>(end - begin);
    const Eigen::RowVectorXd log_q = q.array().log();
    double kl_sum = 0;
    for (int64_t r = begin; r < end; ++r) {
      const int64_t i = perm[r];
      double kl = 0;
      // p log p -> 0 as p -> 0; skipping zeros also avoids 0 * (-inf).
      for (int64_t c = 0; c < k; ++c)
        if (p(i, c) > 0) kl += p(i, c) * (log_p(i, c) - log_q[c]);
      kl_sum += kl;
    }
    scores.push_back(std::exp(kl_sum / static_cast<double>(end - begin)));
  }
  InceptionScore is;
  for (double v : scores) is.mean += v;
  is.mean /= static_cast<double>(splits);
  double ss = 0;
  for (double v : scores) ss += (v - is.mean) * (v - is.mean);
  is.std = std::sqrt(ss / static_cast<double>(splits));
  is.std_sample =
      splits > 1 ? std::sqrt(ss / static_cast<double>(splits - 1)) : std::numeric_limits<double>::quiet_NaN();
  return is;
}

RowMatrix checked_rows(const Tensor& t_in, int splits, const char* what, const char* shape_hint) {
  const Tensor t = host_float_matrix(t_in, what, shape_hint);
  const int64_t n = t.size(0);
  if (t.size(1) < 1) throw std::invalid_argument(std::string(what) + ": no classes in " + t.str());
  if (splits < 1 || splits > n)
    throw std::invalid_argument(std::string(what) + ": " + std::to_string(splits) +
                                " splits need at least as many samples, got " + std::to_string(n) + " (" +
                                t.str() + ")");
  RowMatrix m = rows_as_double(t, 0, n);
  if (!m.allFinite()) throw std::invalid_argument(std::string(what) + ": NaN or infinity in " + t.str());
  return m;
}

}  // namespace

InceptionScore inception_score(const Tensor& logits, int splits, uint64_t seed) {
  const RowMatrix x = checked_rows(logits, splits, "inception_score", "logits [N, K]");
  // Stable log-softmax: subtract each row's max before exponentiating.
  RowMatrix log_p = x.colwise() - x.rowwise().maxCoeff();
  const Eigen::VectorXd log_z = log_p.array().exp().rowwise().sum().log();
  log_p.colwise() -= log_z;
  const RowMatrix p = log_p.array().exp();
  return score_splits(p, log_p, splits, seed);
}

InceptionScore inception_score_from_probs(const Tensor& probs, int splits, uint64_t seed) {
  const RowMatrix p = checked_rows(probs, splits, "inception_score_from_probs", "probabilities [N, K]");
  // A float32 softmax over ~1000 classes sums to 1 within ~1e-5; 1e-3 still tells logits or
  // unnormalised scores (passed by mistake) from probabilities.
  constexpr double kSumTol = 1e-3;
  for (int64_t i = 0; i < p.rows(); ++i) {
    if (p.row(i).minCoeff() < 0)
      throw std::invalid_argument("inception_score_from_probs: row " + std::to_string(i) +
                                  " has a negative probability (logits? use inception_score)");
    const double s = p.row(i).sum();
    if (std::abs(s - 1.0) > kSumTol)
      throw std::invalid_argument("inception_score_from_probs: row " + std::to_string(i) + " sums to " +
                                  std::to_string(s) + ", not 1 (logits? use inception_score)");
  }
  const RowMatrix log_p = p.array().log();
  return score_splits(p, log_p, splits, seed);
}

// ------------------------------------------------------------------------------------------------
// Preprocessing

namespace {

template <class T>
void scale_to_u8(const T* x, float* out, int64_t n) {
  T lo = x[0], hi = x[0];
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i]))
      throw std::invalid_argument("to_uint8_range: the batch contains NaN or infinity");
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  if (!(hi > lo)) {  // the authors' formula divides by zero here; a uint8 cast of NaN gives 0 on x86
    std::fill(out, out + n, 0.0f);
    return;
  }
  const T range = hi - lo;
  // Same operations and rounding as ((arr - min) / (max - min)) * 255 in torch, then a truncating
  // cast; the result is in [0, 255] because rounding is monotonic and x - lo <= range.
  for (int64_t i = 0; i < n; ++i) {
    const T v = ((x[i] - lo) / range) * T(255);
    out[i] = static_cast<float>(std::trunc(v));
  }
}

}  // namespace

Tensor to_uint8_range(const Tensor& images_in) {
  if (!images_in.defined()) throw std::invalid_argument("to_uint8_range: undefined tensor");
  if (images_in.dtype() != DType::f32 && images_in.dtype() != DType::f64)
    throw std::invalid_argument("to_uint8_range: expected float32 or float64 images, got " + images_in.str());
  const Tensor x = images_in.device().is_cpu() ? images_in : images_in.to(kCPU);
  Tensor out = empty(x.shape(), DType::f32, kCPU);
  if (x.numel() == 0) return out;
  if (x.dtype() == DType::f32)
    scale_to_u8(x.data<float>(), out.data<float>(), x.numel());
  else
    scale_to_u8(x.data<double>(), out.data<float>(), x.numel());
  return out;
}

// ------------------------------------------------------------------------------------------------
// Files

void save_stats(const GaussianStats& s, const std::string& path) {
  const int64_t d = s.mu.size();
  if (d == 0 || s.sigma.rows() != d || s.sigma.cols() != d)
    throw std::invalid_argument("save_stats: mu has " + std::to_string(d) + " entries but sigma is " +
                                dims_str(s.sigma));
  Tensor mu = empty({d}, DType::f64), sigma = empty({d, d}, DType::f64), n = empty({}, DType::i64);
  std::memcpy(mu.data<double>(), s.mu.data(), static_cast<size_t>(d) * sizeof(double));
  Eigen::Map<RowMatrix>(sigma.data<double>(), d, d) = s.sigma;  // row-major on disk
  n.data<int64_t>()[0] = s.n;
  save_safetensors(path, {{"mu", mu}, {"sigma", sigma}, {"n", n}}, {{"format", "xgan-gaussian-stats"}});
}

namespace {

// The file, what is wrong with it, and what it holds, so a wrong file is easy to recognise.
[[noreturn]] void file_error(const std::string& path, const TensorFile& file, const std::string& what) {
  std::string keys;
  for (const auto& [k, v] : file.tensors) keys += (keys.empty() ? "" : ", ") + k + " " + v.str();
  throw std::runtime_error(path + ": " + what + " (the file holds: " + (keys.empty() ? "nothing" : keys) +
                           ")");
}

}  // namespace

GaussianStats load_stats_or_features(const std::string& path) {
  const TensorFile file = load_safetensors(path);  // names the file in its own errors
  const auto& t = file.tensors;
  auto fail = [&](const std::string& what) { file_error(path, file, what); };
  const bool has_stats = t.count("mu") || t.count("sigma"), has_features = t.count("features");
  if (has_stats && has_features)
    fail("both feature statistics (mu, sigma) and raw features; expected one or the other");
  if (has_features) {
    const Tensor& f = t.at("features");
    if (f.dim() != 2 || (f.dtype() != DType::f32 && f.dtype() != DType::f64))
      fail("\"features\" must be a float32 or float64 matrix [N, D]");
    if (f.size(0) < 2)
      fail("\"features\" has " + std::to_string(f.size(0)) + " rows; a covariance needs at least 2");
    if (f.size(1) < 1) fail("\"features\" has no columns");
    try {
      return stats_of(f);
    } catch (const std::exception& e) {
      fail(e.what());
    }
  }
  if (!has_stats) fail("neither \"mu\" and \"sigma\" (feature statistics) nor \"features\" [N, D]");
  if (!t.count("mu") || !t.count("sigma")) fail("feature statistics need both \"mu\" and \"sigma\"");
  const Tensor &mu = t.at("mu"), &sigma = t.at("sigma");
  if (mu.dtype() == DType::i64 || sigma.dtype() == DType::i64)
    fail("\"mu\" and \"sigma\" must be floating point");
  if (mu.dim() != 1 || mu.size(0) < 1) fail("\"mu\" must be a vector [D]");
  const int64_t d = mu.size(0);
  if (sigma.dim() != 2 || sigma.size(0) != d || sigma.size(1) != d)
    fail("\"sigma\" must be [" + std::to_string(d) + ", " + std::to_string(d) + "] to match \"mu\"");
  GaussianStats s;
  const std::vector<double> mv = mu.to_vector(), sv = sigma.to_vector();
  s.mu = Eigen::Map<const Eigen::VectorXd>(mv.data(), d);
  s.sigma = Eigen::Map<const RowMatrix>(sv.data(), d, d);
  if (!s.mu.allFinite() || !s.sigma.allFinite()) fail("\"mu\" or \"sigma\" contains NaN or infinity");
  // A covariance is symmetric; anything beyond round-off means the wrong tensor (or a transposed
  // non-covariance) was stored, and trace_sqrt_product reads only the lower triangle.
  const double scale = s.sigma.cwiseAbs().maxCoeff();
  if ((s.sigma - s.sigma.transpose()).cwiseAbs().maxCoeff() > 1e-9 * scale)
    fail("\"sigma\" is not symmetric");
  if (s.sigma.diagonal().minCoeff() < 0) fail("\"sigma\" has a negative variance on its diagonal");
  if (t.count("n")) {
    const Tensor& n = t.at("n");
    if (n.numel() != 1) fail("\"n\" must be a scalar");
    const double v = n.item();
    if (!(v >= 2) || v != std::floor(v)) fail("\"n\" must be an integer >= 2, got " + std::to_string(v));
    s.n = static_cast<int64_t>(v);
  }
  return s;
}

}  // namespace xgan::metrics
