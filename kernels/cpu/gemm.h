// The matrix products of the CPU kernels (convolutions, matmul): Eigen row-major maps and one
// product split across the OpenMP threads. Float products go to xgan's own vector GEMM
// (kernels/cpu/sgemm.h, AVX-512 or AVX2 + FMA) where the engine is built for it; double products,
// and float ones on older CPUs, to Eigen.
#pragma once
#include <Eigen/Dense>
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels/cpu/sgemm.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace xgan::cpu {

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using ConstMap = Eigen::Map<const RowMat<T>>;

// dst = a * b (or dst += a * b), split by output columns (rows when there are more rows) across
// the OpenMP threads, each block a single-threaded Eigen GEMM. Eigen's own threading syncs its
// threads by spinning; on a busy 2-core machine that made a 2 ms product take 300 ms, and it would
// not follow OpenMP's thread count. Small products (a classifier's fc layer) run on one thread:
// they finish before a team would start.
// An Eigen expression with direct access (a Map, a block of one, or a transpose of either) as a
// strided view of the same memory.
template <class X>
auto strided_view(X&& x) {
  using E = std::decay_t<X>;
  constexpr bool row_major = (E::Flags & Eigen::RowMajorBit) != 0;
  using T = std::remove_reference_t<decltype(*x.data())>;
  return StridedMat<T>{x.data(), x.rows(), x.cols(), row_major ? x.outerStride() : x.innerStride(),
                       row_major ? x.innerStride() : x.outerStride()};
}

template <class Dst, class A, class B>
void parallel_product(Dst dst, const A& a, const B& b, bool accumulate = false) {
  if constexpr (std::is_same_v<typename Dst::Scalar, float>) {
    if (sgemm_available()) {
      sgemm(strided_view(a), strided_view(b), strided_view(dst), accumulate);
      return;
    }
  }
  const bool by_cols = dst.cols() >= dst.rows();
  const int64_t n = by_cols ? dst.cols() : dst.rows();
  const bool big = dst.rows() * dst.cols() * a.cols() >= (int64_t{1} << 18);
#pragma omp parallel if (big)
  {
    int64_t threads = 1, t = 0;
#ifdef _OPENMP
    threads = omp_get_num_threads();
    t = omp_get_thread_num();
#endif
    // Blocks in multiples of 16 keep the vectorised kernels on full packets.
    const int64_t per = ((n + threads - 1) / threads + 15) / 16 * 16;
    const int64_t lo = std::min(n, t * per), len = std::min(n, lo + per) - lo;
    if (len > 0 && by_cols) {
      auto d = dst.middleCols(lo, len);
      if (accumulate) {
        d.noalias() += a * b.middleCols(lo, len);
      } else {
        d.noalias() = a * b.middleCols(lo, len);
      }
    } else if (len > 0) {
      auto d = dst.middleRows(lo, len);
      if (accumulate) {
        d.noalias() += a.middleRows(lo, len) * b;
      } else {
        d.noalias() = a.middleRows(lo, len) * b;
      }
    }
  }
}

}  // namespace xgan::cpu
