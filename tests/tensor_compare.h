// Tensor comparison for tests against reference data: a normalised error bound per element and a
// report naming the tensor, the worst element and how far over the allowance it is, so a failing
// CHECK_CLOSE says exactly what differs. Shared by the golden tests.
#pragma once
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace xgan::test {

// An element passes when |got - want| <= rtol * (|want| + floor * max|want|) + atol.
// The floor keeps elements far below the tensor's scale (where summation or cancellation leaves
// an error relative to the scale, not to the element) from dominating; atol only serves
// tensors that are exactly zero in PyTorch.
struct Tol {
  double rtol;
  double floor = 0.0;
  double atol = 0.0;
};

struct Comparison {
  bool ok = true;
  std::string report;
};

inline Comparison compare(const std::string& name, const Tensor& got, const Tensor& want, Tol tol) {
  Comparison c;
  std::ostringstream os;
  os.precision(6);
  if (!got.defined()) {
    c.ok = false;
    os << name << ": no tensor (undefined), want " << want.str();
    c.report = os.str();
    return c;
  }
  if (got.shape() != want.shape() || got.dtype() != want.dtype()) {
    c.ok = false;
    os << name << ": got " << got.str() << ", want " << want.str();
    c.report = os.str();
    return c;
  }
  const std::vector<double> a = got.to(kCPU).to_vector(), b = want.to_vector();
  double scale = 0;
  for (double v : b) scale = std::max(scale, std::abs(v));
  constexpr double kInf = std::numeric_limits<double>::infinity();
  double max_abs = 0, max_rel = 0, worst_ratio = 0;
  size_t worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    // A NaN (or inf) anywhere counts as an infinite error.
    const double err = std::isfinite(a[i]) ? std::abs(a[i] - b[i]) : kInf;
    const double allowed = tol.rtol * (std::abs(b[i]) + tol.floor * scale) + tol.atol;
    const double ratio = err == 0 ? 0 : (allowed > 0 ? err / allowed : kInf);
    max_abs = std::max(max_abs, err);
    if (b[i] != 0) max_rel = std::max(max_rel, err / std::abs(b[i]));
    if (ratio > worst_ratio) worst_ratio = ratio, worst = i;
  }
  c.ok = worst_ratio <= 1.0;
  os << name << " " << want.str() << ": max abs err " << max_abs << ", max rel err " << max_rel
     << ", worst at [" << worst << "] got " << (a.empty() ? 0 : a[worst]) << " want "
     << (b.empty() ? 0 : b[worst]) << " (" << worst_ratio << " x allowed; rtol " << tol.rtol << ", floor "
     << tol.floor << " x max|want| = " << scale << ", atol " << tol.atol << ")";
  c.report = os.str();
  return c;
}

}  // namespace xgan::test

// CHECK with the report attached, so a failure names the tensor and the errors.
#define CHECK_CLOSE(name, got, want, tol)                                                      \
  do {                                                                                         \
    const ::xgan::test::Comparison cmp_ = ::xgan::test::compare((name), (got), (want), (tol)); \
    INFO(cmp_.report);                                                                         \
    CHECK(cmp_.ok);                                                                            \
  } while (0)
