// The statistics behind FID and Inception Score, as the X-GAN authors computed them (torchmetrics
// 0.11 on torch-fidelity's Inception-v3): float64 feature mean and covariance, the Frechet distance
// with its trace term computed from symmetric eigendecompositions only, IS over seeded splits, and
// the authors' min-max scaling of a batch to uint8 values. The networks that make the features live
// in models/; this file only sees [N, D] features or [N, K] logits. Tests: tests/test_metrics.cpp;
// the math and the choices are in docs/metrics.md.
#pragma once
#include <Eigen/Dense>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace xgan::metrics {

// Mean and covariance (1/(N-1)) of feature vectors, accumulated in float64 (streaming: sums of x and
// x x^T in double, taken relative to the first row seen so that a large common offset does not
// cancel away the variance; the result equals torchmetrics' up to rounding).
struct GaussianStats {
  Eigen::VectorXd mu;
  Eigen::MatrixXd sigma;
  int64_t n = 0;
};

class StatsAccumulator {
 public:
  explicit StatsAccumulator(int64_t dim);  // dim >= 1
  // features: [N, dim] (N may be 0), float32 or float64, on any device (copied to the host), finite.
  void add(const Tensor& features);
  GaussianStats finish() const;  // throws if fewer than 2 samples were added
  int64_t count() const { return n_; }
  int64_t dim() const { return dim_; }

 private:
  int64_t dim_ = 0, n_ = 0;
  Eigen::VectorXd shift_;  // the first row seen
  Eigen::VectorXd sum_;    // sum of (x - shift)
  Eigen::MatrixXd cross_;  // sum of (x - shift)(x - shift)^T, lower triangle only
};

GaussianStats stats_of(const Tensor& features);

// tr sqrt(S1^{1/2} S2 S1^{1/2}) without complex numbers: A = symmetric square root of S1 by
// self-adjoint eigendecomposition (negative eigenvalues from round-off clamped to 0), then the
// eigenvalues of the symmetric A S2 A, clamped at 0, square-rooted and summed. This equals
// tr sqrtm(S1 S2) (the two products are similar). Requires square symmetric matrices of one size;
// only their lower triangles are read.
double trace_sqrt_product(const Eigen::MatrixXd& s1, const Eigen::MatrixXd& s2);

// |mu1 - mu2|^2 + tr S1 + tr S2 - 2 trace_sqrt_product(S1, S2); the dimensions must match. Not
// clamped at 0: two identical sets give 0 up to round-off of either sign.
double fid(const GaussianStats& a, const GaussianStats& b);

struct InceptionScore {
  double mean = 0, std = 0;  // std: population std over the splits (torch-fidelity's np.std)
  // torchmetrics' kl.std() is Bessel-corrected: std * sqrt(splits / (splits - 1)); NaN for 1 split.
  double std_sample = 0;
};
// IS from class logits [N, K] (softmax taken here, in float64) with `splits` splits (1 <= splits <=
// N) after a seeded shuffle of the rows; per split exp(mean_i KL(p_i || p_split)); mean and std.
// The shuffle is numpy's RandomState(seed).permutation(N) (seed < 2^32) and split i holds rows
// [i*N/splits, (i+1)*N/splits): torch-fidelity's isc_features_to_metric, whose default seed is 2020.
InceptionScore inception_score(const Tensor& logits, int splits = 10, uint64_t seed = 0);
// Same from probabilities [N, K]: non-negative rows summing to 1 (within 1e-3, float32 softmax
// round-off); a zero probability contributes 0 (the limit of p log p).
InceptionScore inception_score_from_probs(const Tensor& probs, int splits = 10, uint64_t seed = 0);

// numpy's legacy np.random.RandomState(seed).permutation(n): MT19937 seeded with init_genrand and a
// Fisher-Yates shuffle from the end drawing with masked rejection. Exposed for the tests.
std::vector<int64_t> numpy_permutation(int64_t n, uint64_t seed);

// The paper's preprocessing: the batch (any shape, values in any range) min-max scaled to [0, 255]
// and truncated to integers as a uint8 cast would; a constant batch maps to 0. The arithmetic is
// done in the input's dtype (float32 or float64) in the authors' order, ((x - min) / (max - min)) *
// 255, so the truncation matches theirs bit for bit. float32 out.
Tensor to_uint8_range(const Tensor& images);

// Files: stats as safetensors {"mu": [D] f64, "sigma": [D, D] f64, "n": [] (optional)}; raw
// features as safetensors {"features": [N, D] f32 or f64}. load_stats_or_features reads either
// (features are turned into stats), with a clear error naming the file and what is wrong.
void save_stats(const GaussianStats& s, const std::string& path);
GaussianStats load_stats_or_features(const std::string& path);

}  // namespace xgan::metrics
