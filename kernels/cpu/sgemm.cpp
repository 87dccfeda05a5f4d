// The float GEMM of kernels/cpu/sgemm.h, in the blocked form of Goto and van de Geijn
// ("Anatomy of high-performance matrix multiplication", 2008), as BLIS lays it out:
//
//   for each block of NC columns of C                (B block: KC x NC, in L2/L3)
//     for each slice of KC along k                   pack B's block into NR-wide panels
//       for each block of MC rows of C               pack A's block into MR-tall panels (L2)
//         for each NR-wide panel of the B block      (stays in L1 while the MR panels pass)
//           for each MR-tall panel of the A block
//             C tile (MR x NR) += A panel * B panel  (the register kernel)
//
// Packing copies each operand into the exact order the kernel reads it, zero-padded to whole
// panels, so the kernel never branches on edges or strides. The register tile holds MR x NV
// vectors of C: with AVX-512, 8 x 3 zmm (an 8 x 48 tile in 24 of 32 registers); with AVX2 + FMA,
// 6 x 2 ymm (6 x 16 in 12 of 16). Each k step loads NV vectors of B, broadcasts MR values of A and
// issues MR x NV FMAs: enough independent chains to keep both FMA ports busy through their latency.
#include "kernels/cpu/sgemm.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu/transpose16.h"

#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#define XGAN_SGEMM_KERNEL 1
#endif

namespace xgan::cpu {

#if XGAN_SGEMM_KERNEL

namespace {

#if defined(__AVX512F__)
// The vector type and the five operations the kernel needs, for 16-float zmm registers ...
using Vec = __m512;
inline Vec vzero() { return _mm512_setzero_ps(); }
inline Vec vload(const float* p) { return _mm512_load_ps(p); }
inline Vec vloadu(const float* p) { return _mm512_loadu_ps(p); }
inline void vstoreu(float* p, Vec v) { _mm512_storeu_ps(p, v); }
inline Vec vbroadcast(const float* p) { return _mm512_set1_ps(*p); }
inline Vec vfma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
inline Vec vadd(Vec a, Vec b) { return _mm512_add_ps(a, b); }
constexpr int64_t kVec = 16;              // floats per register
constexpr int64_t kMR = 8;                // rows of the register tile
constexpr int64_t kNV = 3;                // vectors across the register tile
constexpr int64_t kKC = 192;              // depth of a packed slice: a B panel (36 KiB) fits L1
constexpr int64_t kMC = 18 * kMR;         // 144 rows: the packed A block (108 KiB) sits in L2
constexpr int64_t kNC = 20 * kNV * kVec;  // 960 columns: the packed B block (720 KiB), L2/L3
#else
// ... and for 8-float ymm registers (AVX2 + FMA: 16 registers, so a smaller tile).
using Vec = __m256;
inline Vec vzero() { return _mm256_setzero_ps(); }
inline Vec vload(const float* p) { return _mm256_load_ps(p); }
inline Vec vloadu(const float* p) { return _mm256_loadu_ps(p); }
inline void vstoreu(float* p, Vec v) { _mm256_storeu_ps(p, v); }
inline Vec vbroadcast(const float* p) { return _mm256_broadcast_ss(p); }
inline Vec vfma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
inline Vec vadd(Vec a, Vec b) { return _mm256_add_ps(a, b); }
constexpr int64_t kVec = 8;
constexpr int64_t kMR = 6;
constexpr int64_t kNV = 2;
constexpr int64_t kKC = 256;              // a B panel is 16 KiB, half of a 32 KiB L1
constexpr int64_t kMC = 24 * kMR;         // 144 rows: the packed A block (144 KiB) sits in L2
constexpr int64_t kNC = 64 * kNV * kVec;  // 1024 columns: the packed B block (1 MiB), L2/L3
#endif
constexpr int64_t kNR = kNV * kVec;  // columns of the register tile

// One thread's packing buffers, allocated on first use and kept (OpenMP's threads persist).
struct Packs {
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float, Free> a, b;
  Packs() {
    a.reset(static_cast<float*>(std::aligned_alloc(64, sizeof(float) * kMC * kKC)));
    b.reset(static_cast<float*>(std::aligned_alloc(64, sizeof(float) * kKC * kNC)));
    if (!a || !b) throw std::bad_alloc();
  }
};

Packs& thread_packs() {
  thread_local Packs packs;
  return packs;
}

// Whether off[0..n) steps by one (a contiguous run in memory).
bool unit_run(const int64_t* off, int64_t n) {
  for (int64_t t = 1; t < n; ++t)
    if (off[t] != off[0] + t) return false;
  return true;
}

// A's rows [i0, i0+mc) x k [k0, k0+kc) as MR-tall panels: panel p holds, for each k, the MR values
// of its rows (zero past mc). The k range is walked in runs where A's columns are contiguous in
// memory (one run for a plain matrix; panel-wide runs for Winograd's weights in panel order).
void pack_a(const GemmView<const float>& a, int64_t i0, int64_t mc, int64_t k0, int64_t kc, float* dst) {
  const int64_t* col = a.col_off + k0;
  for (int64_t p = 0; p < mc; p += kMR) {
    const int64_t mr = std::min(kMR, mc - p);
    float* panel = dst + p * kc;
    const float* rows[kMR];
    for (int64_t i = 0; i < mr; ++i) rows[i] = a.data + a.row_off[i0 + p + i];
    for (int64_t k = 0; k < kc;) {
      int64_t len = 1;
      while (k + len < kc && col[k + len] == col[k] + len) ++len;
      int64_t r = 0;
#if defined(__AVX512F__)
      // A full panel 16 k at a time: 8 rows of 16 contiguous values, transposed in registers into
      // 16 columns of 8 (two per vector, as the panel stores them).
      for (; mr == kMR && r + 16 <= len; r += 16) {
        __m512 v[16];
        for (int i = 0; i < 8; ++i) v[i] = _mm512_loadu_ps(rows[i] + col[k] + r);
        for (int i = 8; i < 16; ++i) v[i] = _mm512_setzero_ps();
        transpose16(v);  // v[j]: column k + r + j, rows 0..7 in lanes 0..7
        for (int j = 0; j < 8; ++j)
          _mm512_storeu_ps(panel + (k + r + 2 * j) * kMR, _mm512_shuffle_f32x4(v[2 * j], v[2 * j + 1], 0x44));
      }
#endif
      for (int64_t i = 0; i < mr; ++i) {
        const float* src = rows[i] + col[k];
        for (int64_t q = r; q < len; ++q) panel[(k + q) * kMR + i] = src[q];
      }
      k += len;
    }
    for (int64_t k = 0; mr < kMR && k < kc; ++k)
      for (int64_t i = mr; i < kMR; ++i) panel[k * kMR + i] = 0.0f;
  }
}

// B's k [k0, k0+kc) x columns [j0, j0+nc) as NR-wide panels: panel q holds, for each k, the NR
// values of its columns (zero past nc). A panel whose columns are contiguous is a copy per k; any
// other (an im2col gather, a transposed B) reads through the column table.
void pack_b(const GemmView<const float>& b, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* dst) {
  for (int64_t q = 0; q < nc; q += kNR) {
    const int64_t nr = std::min(kNR, nc - q);
    float* panel = dst + q * kc;
    const int64_t* col = b.col_off + j0 + q;
    const bool unit = unit_run(col, nr);
    for (int64_t k = 0; k < kc; ++k) {
      const float* row = b.data + b.row_off[k0 + k];
      float* out = panel + k * kNR;
      if (unit) {
        std::copy_n(row + col[0], nr, out);
      } else {
        for (int64_t j = 0; j < nr; ++j) out[j] = row[col[j]];
      }
      std::fill(out + nr, out + kNR, 0.0f);
    }
  }
}

// The register kernel: tile = sum over k of (A panel column k) x (B panel row k), then
// C = tile (first slice, no accumulation) or C += tile. Row i of the tile is stored at
// c + row[i], its v-th vector of kVec at + col[v]; the caller passes a scratch tile when C's
// layout or the tile's edge does not allow that. NV <= kNV vectors across: a panel whose last
// columns are padding (the matrix ends inside it) runs with fewer, skipping the zeros.
template <int NV>
void kernel(int64_t kc, const float* __restrict a, const float* __restrict b, float* c, const int64_t* row,
            const int64_t* col, bool add) {
  Vec acc[kMR][NV];
#pragma GCC unroll 8
  for (int i = 0; i < kMR; ++i)
#pragma GCC unroll 3
    for (int v = 0; v < NV; ++v) acc[i][v] = vzero();
  for (int64_t k = 0; k < kc; ++k) {
    Vec bv[NV];
#pragma GCC unroll 3
    for (int v = 0; v < NV; ++v) bv[v] = vload(b + v * kVec);
#pragma GCC unroll 8
    for (int i = 0; i < kMR; ++i) {
      const Vec ai = vbroadcast(a + i);
#pragma GCC unroll 3
      for (int v = 0; v < NV; ++v) acc[i][v] = vfma(ai, bv[v], acc[i][v]);
    }
    a += kMR;
    b += kNR;
  }
#pragma GCC unroll 8
  for (int i = 0; i < kMR; ++i)
#pragma GCC unroll 3
    for (int v = 0; v < NV; ++v) {
      float* p = c + row[i] + col[v];
      vstoreu(p, add ? vadd(vloadu(p), acc[i][v]) : acc[i][v]);
    }
}

// kernel<nv> for nv = 1 .. kNV vectors.
void kernel_n(int64_t nv, int64_t kc, const float* a, const float* b, float* c, const int64_t* row,
              const int64_t* col, bool add) {
  static_assert(kNV == 2 || kNV == 3, "kernel_n covers 1 to 3 vectors");
  if (nv >= 3) {
    if constexpr (kNV == 3) kernel<kNV>(kc, a, b, c, row, col, add);
  } else if (nv == 2) {
    kernel<2>(kc, a, b, c, row, col, add);
  } else {
    kernel<1>(kc, a, b, c, row, col, add);
  }
}

// One thread's share: C rows [m0, m1) x columns [n0, n1), the whole depth.
// With `packed_b`, B is already in panel order (PackedPanels) and `b` only gives its shape: the
// kernel reads the panels in place, from row pc on.
void gemm_range(const GemmView<const float>& a, const GemmView<const float>& b, const float* packed_b,
                const GemmView<float>& c, bool accumulate, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  Packs& packs = thread_packs();
  const int64_t K = a.cols;
  alignas(64) float tile[kMR * kNR];
  int64_t tile_rows[kMR], tile_cols[kNV];
  for (int64_t i = 0; i < kMR; ++i) tile_rows[i] = i * kNR;
  for (int64_t v = 0; v < kNV; ++v) tile_cols[v] = v * kVec;
  for (int64_t jc = n0; jc < n1; jc += kNC) {
    const int64_t nc = std::min(kNC, n1 - jc);
    for (int64_t pc = 0; pc < K; pc += kKC) {
      const int64_t kc = std::min(kKC, K - pc);
      const bool add = accumulate || pc > 0;
      if (!packed_b) pack_b(b, pc, kc, jc, nc, packs.b.get());
      for (int64_t ic = m0; ic < m1; ic += kMC) {
        const int64_t mc = std::min(kMC, m1 - ic);
        pack_a(a, ic, mc, pc, kc, packs.a.get());
        for (int64_t jr = 0; jr < nc; jr += kNR) {
          const int64_t nr = std::min(kNR, nc - jr);
          const float* bp =
              packed_b ? packed_b + (jc + jr) / kNR * K * kNR + pc * kNR : packs.b.get() + jr * kc;
          // Vectors that hold columns of C (the rest of the panel is padding), and straight into C
          // when each of them is contiguous there.
          const int64_t nv = (nr + kVec - 1) / kVec;
          const int64_t* ccol = c.col_off + jc + jr;
          int64_t vec_at[kNV];
          bool direct = nr == nv * kVec;
          for (int64_t v = 0; direct && v < nv; ++v) {
            direct = unit_run(ccol + v * kVec, kVec);
            vec_at[v] = ccol[v * kVec];
          }
          for (int64_t ir = 0; ir < mc; ir += kMR) {
            const int64_t mr = std::min(kMR, mc - ir);
            const float* ap = packs.a.get() + ir * kc;
            const int64_t* crow = c.row_off + ic + ir;
            if (direct && mr == kMR) {
              kernel_n(nv, kc, ap, bp, c.data, crow, vec_at, add);
              continue;
            }
            kernel_n(nv, kc, ap, bp, tile, tile_rows, tile_cols, false);
            for (int64_t i = 0; i < mr; ++i)
              for (int64_t j = 0; j < nr; ++j) {
                float& dst = c.data[crow[i] + ccol[j]];
                dst = add ? dst + tile[i * kNR + j] : tile[i * kNR + j];
              }
          }
        }
      }
    }
  }
}

std::vector<int64_t> steps(int64_t n, int64_t stride) {
  std::vector<int64_t> t(n);
  for (int64_t i = 0; i < n; ++i) t[i] = i * stride;
  return t;
}

}  // namespace

bool sgemm_available() {
  static const bool on = !std::getenv("XGAN_EIGEN");
  return on;
}

void sgemm(const GemmView<const float>& a, const GemmView<const float>& b, const GemmView<float>& c,
           bool accumulate) {
  sgemm_batch(1, a, 0, b, 0, c, 0, accumulate);
}

namespace {

// sgemm_batch for B as offset tables (packed == false) or already in panels (packed == true, the
// data of `b` is the panels and its tables are unused).
void batch(int64_t count, const GemmView<const float>& a, int64_t a_step, const GemmView<const float>& b,
           bool packed, int64_t b_step, const GemmView<float>& c, int64_t c_step, bool accumulate) {
  const int64_t M = c.rows, N = c.cols, K = a.cols;
  if (a.rows != M || b.rows != K || b.cols != N)
    throw std::logic_error("sgemm: [" + std::to_string(a.rows) + ", " + std::to_string(a.cols) + "] x [" +
                           std::to_string(b.rows) + ", " + std::to_string(b.cols) + "] -> [" +
                           std::to_string(M) + ", " + std::to_string(N) + "]");
  if (M == 0 || N == 0 || count <= 0) return;
  if (K == 0) {
    if (!accumulate)
      for (int64_t p = 0; p < count; ++p)
        for (int64_t i = 0; i < M; ++i)
          for (int64_t j = 0; j < N; ++j) c.data[p * c_step + c.row_off[i] + c.col_off[j]] = 0.0f;
    return;
  }
  // Each thread takes the same share of every product: split by columns (rows when there are more
  // rows), in whole panels. Small work runs on one thread, where a team would cost more than it
  // saves.
  const bool by_cols = N >= M;
  const int64_t extent = by_cols ? N : M, unit = by_cols ? kNR : kMR;
  const bool big = count * M * N * K >= (int64_t{1} << 18);
#pragma omp parallel if (big)
  {
    int64_t threads = 1, t = 0;
#ifdef _OPENMP
    threads = omp_get_num_threads();
    t = omp_get_thread_num();
#endif
    const int64_t per = ((extent + threads - 1) / threads + unit - 1) / unit * unit;
    const int64_t lo = std::min(extent, t * per), hi = std::min(extent, lo + per);
    for (int64_t p = 0; p < count && lo < hi; ++p) {
      const GemmView<const float> ap{a.data + p * a_step, a.rows, a.cols, a.row_off, a.col_off};
      const GemmView<const float> bp{b.data + p * b_step, b.rows, b.cols, b.row_off, b.col_off};
      const float* panels = packed ? bp.data : nullptr;
      const GemmView<float> cp{c.data + p * c_step, c.rows, c.cols, c.row_off, c.col_off};
      if (by_cols)
        gemm_range(ap, bp, panels, cp, accumulate, 0, M, lo, hi);
      else
        gemm_range(ap, bp, panels, cp, accumulate, lo, hi, 0, N);
    }
  }
}

}  // namespace

int64_t sgemm_panel_width() { return kNR; }

void sgemm_batch(int64_t count, const GemmView<const float>& a, int64_t a_step,
                 const GemmView<const float>& b, int64_t b_step, const GemmView<float>& c, int64_t c_step,
                 bool accumulate) {
  batch(count, a, a_step, b, false, b_step, c, c_step, accumulate);
}

void sgemm_batch(int64_t count, const GemmView<const float>& a, int64_t a_step, const PackedPanels& b,
                 int64_t b_step, const GemmView<float>& c, int64_t c_step, bool accumulate) {
  if (reinterpret_cast<uintptr_t>(b.data) % 64 != 0 || (b_step * sizeof(float)) % 64 != 0)
    throw std::logic_error("sgemm_batch: packed panels must start 64-byte aligned, for every product");
  batch(count, a, a_step, GemmView<const float>{b.data, b.rows, b.cols, nullptr, nullptr}, true, b_step, c,
        c_step, accumulate);
}

void sgemm(StridedMat<const float> a, StridedMat<const float> b, StridedMat<float> c, bool accumulate) {
  const std::vector<int64_t> ar = steps(a.rows, a.rs), ac = steps(a.cols, a.cs), br = steps(b.rows, b.rs),
                             bc = steps(b.cols, b.cs), cr = steps(c.rows, c.rs), cc = steps(c.cols, c.cs);
  sgemm(GemmView<const float>{a.data, a.rows, a.cols, ar.data(), ac.data()},
        GemmView<const float>{b.data, b.rows, b.cols, br.data(), bc.data()},
        GemmView<float>{c.data, c.rows, c.cols, cr.data(), cc.data()}, accumulate);
}

#else  // neither AVX-512 nor AVX2 + FMA: the callers use Eigen

bool sgemm_available() { return false; }

[[noreturn]] static void no_kernel() {
  throw std::logic_error(
      "sgemm: this build has no vector kernel (needs AVX2 + FMA or AVX-512) (check sgemm_available() first)");
}
void sgemm(const GemmView<const float>&, const GemmView<const float>&, const GemmView<float>&, bool) {
  no_kernel();
}
void sgemm(StridedMat<const float>, StridedMat<const float>, StridedMat<float>, bool) { no_kernel(); }
void sgemm_batch(int64_t, const GemmView<const float>&, int64_t, const GemmView<const float>&, int64_t,
                 const GemmView<float>&, int64_t, bool) {
  no_kernel();
}
int64_t sgemm_panel_width() { no_kernel(); }
void sgemm_batch(int64_t, const GemmView<const float>&, int64_t, const PackedPanels&, int64_t,
                 const GemmView<float>&, int64_t, bool) {
  no_kernel();
}

#endif

}  // namespace xgan::cpu
