// CPU kernel of X-GAN's normalise-and-weight step (engine/backend.h xai_guidance): the explanation
// map M becomes E = 1 + (M - min) / (max - min) in [1, 2], and the generator's image gradient g is
// weighted by it, elementwise or (as the authors' code did) by the scalar sum of E.
// Two passes over M: min/max, then E and guided. Tested by tests/test_xai.cpp.
#include <algorithm>
#include <stdexcept>
#include <vector>

#include "engine/backend.h"
#include "kernels/cpu/dispatch.h"

namespace xgan::cpu {

namespace {

template <class T>
void xai_guidance_impl(const Tensor& map, const Tensor& g, bool per_sample, bool as_coded, Tensor& E,
                       Tensor& guided) {
  const int64_t n = map.numel();
  const int64_t groups = per_sample && map.dim() > 0 ? map.size(0) : 1;
  const int64_t per = groups > 0 ? n / groups : 0;
  const T* m = map.data<T>();
  const T* gv = g.data<T>();
  T* e = E.data<T>();
  T* out = guided.data<T>();

  // Pass 1: min and max of each group (the whole batch, or one sample's C*H*W values).
  std::vector<T> lo(static_cast<size_t>(groups)), hi(static_cast<size_t>(groups));
  for (int64_t k = 0; k < groups; ++k) {
    const T* p = m + k * per;
    T a = per > 0 ? p[0] : T(0), b = a;
    for (int64_t i = 1; i < per; ++i) {
      a = std::min(a, p[i]);
      b = std::max(b, p[i]);
    }
    lo[static_cast<size_t>(k)] = a;
    hi[static_cast<size_t>(k)] = b;
  }

  // Pass 2: E, and guided = E * g (the as-coded sum of E is accumulated in double, then g scaled).
  double sum_e = 0.0;
  for (int64_t k = 0; k < groups; ++k) {
    const T a = lo[static_cast<size_t>(k)];
    const T range = hi[static_cast<size_t>(k)] - a;
    for (int64_t i = k * per; i < (k + 1) * per; ++i) {
      // A constant map carries no information: no reweighting rather than a 0/0.
      const T ei = range > T(0) ? T(1) + (m[i] - a) / range : T(1);
      e[i] = ei;
      if (as_coded)
        sum_e += static_cast<double>(ei);
      else
        out[i] = ei * gv[i];
    }
  }
  if (as_coded) {
    const T s = static_cast<T>(sum_e);
    for (int64_t i = 0; i < n; ++i) out[i] = s * gv[i];
  }
}

}  // namespace

void xai_guidance(const Tensor& map, const Tensor& g, bool per_sample, bool as_coded, Tensor& E,
                  Tensor& guided) {
  if (map.shape() != g.shape() || E.shape() != map.shape() || guided.shape() != map.shape())
    throw std::invalid_argument("xai_guidance: map " + map.str() + ", g " + g.str() + ", E " + E.str() +
                                " and guided " + guided.str() + " must have one shape");
  if (map.dtype() != g.dtype() || E.dtype() != map.dtype() || guided.dtype() != map.dtype())
    throw std::invalid_argument("xai_guidance: map, g, E and guided must have one dtype");
  dispatch_float(map.dtype(), "xai_guidance",
                 [&](auto t) { xai_guidance_impl<decltype(t)>(map, g, per_sample, as_coded, E, guided); });
  E.bump_version();
  guided.bump_version();
}

}  // namespace xgan::cpu
