// Winograd F(2x2, 2x2) and F(4x4, 2x2) for the 4x4, stride-2, padding-1 convolutions
// (kernels/cpu/winograd.h).
//
// Polyphase. With xp the input padded by one pixel, a 4x4 stride-2 correlation
//   y[p][q] = sum_{c,i,j} w[c][i][j] xp[c][2p+i][2q+j]
// splits i = 2i'+a, j = 2j'+b (a, b, i', j' in {0, 1}) into four "phases":
//   y[p][q] = sum_{c,a,b} sum_{i',j'} w_ab[c][i'][j'] e_ab[c][p+i'][q+j'],
//   w_ab[c][i'][j'] = w[c][2i'+a][2j'+b],  e_ab[c][u][v] = xp[c][2u+a][2v+b],
// a stride-1 2x2 correlation over 4 Ci channels k = (2a+b) Ci + c.
//
// Winograd F(2, 2) computes two outputs of a 2-tap correlation, y0 = g0 d0 + g1 d1 and
// y1 = g0 d1 + g1 d2, from three products: y = A^T [(G g) . (B^T d)] with, for the evaluation
// points 1, -1 and infinity (the most accurate of the three-point choices in float32),
//   B^T d = (d0 + d1, d0 - d1, d2 - d0),  G g = ((g0 + g1)/2, (g0 - g1)/2, g1),
//   A^T m = (m0 + m1, m0 - m1 + m2).
// Nested over rows and columns, a 2x2 output tile comes from a 3x3 input tile with 9 products
// instead of 16: V = B^T E B, U = G w G^T, M = sum_k U_k . V_k, Y = A^T M A. The sum over k of
// each of the 9 transformed positions is one GEMM over all tiles t of the batch:
//   forward       M[o][t] = sum_k U[o][k] V[k][t]      then Y = A^T M A
//   input grad    M[t][k] = sum_o Z[t][o] U[o][k]      with Z = A dY A^T, then dE = B M B^T
//   weight grad   M[o][k] = sum_t Z[o][t] V[t][k]      then dw_ab = G^T M G
// The input gradient is the adjoint of the forward map and the weight gradient its adjoint in w,
// so each uses the transposed transforms; dE tiles overlap by one e-pixel and are added up.
//
// F(4, 2) is the same construction with five points (0, 1, -1, 2, infinity; matrices at struct
// F4): a 4x4 output tile from a 5x5 input tile with 25 products instead of 64, so 25 GEMMs. Its
// transforms mix values with weights up to 8 (A^T) and 3 (B^T) instead of 1, so float32 error
// grows by a small constant factor; tests/test_winograd.cpp bounds it for both tile sizes.
//
// The transforms run 16 lanes wide (AVX-512), with lanes over tiles or over channels, whichever is
// contiguous in the matrix the GEMM reads; they read the images with gathers and write results
// through 16 x 16 register transposes (kernels/cpu/transpose16.h) rather than scatters. Everything
// between transforms is plain row-major, so the GEMMs are kernels/cpu/sgemm's, one batch of 9 or 25.
#include "kernels/cpu/winograd.h"

#include <algorithm>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/allocator.h"
#include "kernels/cpu/sgemm.h"
#include "kernels/cpu/transpose16.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#define XGAN_WINOGRAD 1
#endif

namespace xgan::cpu {

#if XGAN_WINOGRAD
namespace {

using V = __m512;
constexpr int64_t kLanes = 16;
// The width of sgemm's column panels (8 x 48 register tile on AVX-512): the transforms write the
// GEMMs' B operands straight in that order (PackedPanels), sparing the GEMM its copy of B.
constexpr int64_t kPanel = 48;

inline V add(V a, V b) { return _mm512_add_ps(a, b); }
inline V sub(V a, V b) { return _mm512_sub_ps(a, b); }
inline V times(float c, V a) { return _mm512_mul_ps(_mm512_set1_ps(c), a); }
inline V fma(float c, V a, V b) { return _mm512_fmadd_ps(_mm512_set1_ps(c), a, b); }  // c a + b

// ---- the 1D transforms of each tile size; transform2d applies one along columns, then rows ------
// F(2, 2): points 1, -1 and infinity (the most accurate three-point choice in float32).
struct F2 {
  static constexpr int m = 2, n = 3;  // outputs and inputs of a 1D tile
  struct InputT {                     // B^T, 3 -> 3
    static constexpr int kIn = 3, kOut = 3;
    static void apply(const V* d, V* o) {
      o[0] = add(d[0], d[1]);
      o[1] = sub(d[0], d[1]);
      o[2] = sub(d[2], d[0]);
    }
  };
  struct InputAdjT {  // B, 3 -> 3
    static constexpr int kIn = 3, kOut = 3;
    static void apply(const V* m, V* o) {
      o[0] = sub(add(m[0], m[1]), m[2]);
      o[1] = sub(m[0], m[1]);
      o[2] = m[2];
    }
  };
  struct OutputT {  // A^T, 3 -> 2
    static constexpr int kIn = 3, kOut = 2;
    static void apply(const V* m, V* o) {
      o[0] = add(m[0], m[1]);
      o[1] = add(sub(m[0], m[1]), m[2]);
    }
  };
  struct OutputAdjT {  // A, 2 -> 3
    static constexpr int kIn = 2, kOut = 3;
    static void apply(const V* y, V* o) {
      o[0] = add(y[0], y[1]);
      o[1] = sub(y[0], y[1]);
      o[2] = y[1];
    }
  };
  struct WeightT {  // G, 2 -> 3 (the halves are exact)
    static constexpr int kIn = 2, kOut = 3;
    static void apply(const V* g, V* o) {
      o[0] = times(0.5f, add(g[0], g[1]));
      o[1] = times(0.5f, sub(g[0], g[1]));
      o[2] = g[1];
    }
  };
  struct WeightAdjT {  // G^T, 3 -> 2
    static constexpr int kIn = 3, kOut = 2;
    static void apply(const V* m, V* o) {
      o[0] = times(0.5f, add(m[0], m[1]));
      o[1] = add(times(0.5f, sub(m[0], m[1])), m[2]);
    }
  };
};

// F(4, 2): points 0, 1, -1, 2 and infinity (of the five-point sets with small integers, the one
// with the smallest float32 error on random data; its G carries the only inexact factor, 1/6).
//   A^T = [1 1 1 1 0; 0 1 -1 2 0; 0 1 1 4 0; 0 1 -1 8 1]
//   G   = [1/2 0; 1/2 1/2; -1/6 1/6; 1/6 1/3; 0 1]
//   B^T = [2 -1 -2 1 0; 0 2 1 -1 0; 0 2 -3 1 0; 0 -1 0 1 0; 0 2 -1 -2 1]
struct F4 {
  static constexpr int m = 4, n = 5;
  struct InputT {  // B^T, 5 -> 5
    static constexpr int kIn = 5, kOut = 5;
    static void apply(const V* d, V* o) {
      const V d31 = sub(d[3], d[1]);
      o[0] = fma(2.0f, sub(d[0], d[2]), d31);
      o[1] = fma(2.0f, d[1], sub(d[2], d[3]));
      o[2] = fma(2.0f, d[1], fma(-3.0f, d[2], d[3]));
      o[3] = d31;
      o[4] = fma(-2.0f, d31, sub(d[4], d[2]));
    }
  };
  struct InputAdjT {  // B, 5 -> 5
    static constexpr int kIn = 5, kOut = 5;
    static void apply(const V* m, V* o) {
      o[0] = times(2.0f, m[0]);
      o[1] = sub(times(2.0f, add(add(m[1], m[2]), m[4])), add(m[0], m[3]));
      o[2] = sub(fma(-3.0f, m[2], m[1]), fma(2.0f, m[0], m[4]));
      o[3] = fma(-2.0f, m[4], add(sub(m[0], m[1]), add(m[2], m[3])));
      o[4] = m[4];
    }
  };
  struct OutputT {  // A^T, 5 -> 4
    static constexpr int kIn = 5, kOut = 4;
    static void apply(const V* m, V* o) {
      const V s = add(m[1], m[2]), d = sub(m[1], m[2]);
      o[0] = add(add(m[0], s), m[3]);
      o[1] = fma(2.0f, m[3], d);
      o[2] = fma(4.0f, m[3], s);
      o[3] = add(fma(8.0f, m[3], d), m[4]);
    }
  };
  struct OutputAdjT {  // A, 4 -> 5
    static constexpr int kIn = 4, kOut = 5;
    static void apply(const V* y, V* o) {
      const V e = add(y[0], y[2]), f = add(y[1], y[3]);
      o[0] = y[0];
      o[1] = add(e, f);
      o[2] = sub(e, f);
      o[3] = add(fma(2.0f, y[1], y[0]), fma(8.0f, y[3], times(4.0f, y[2])));
      o[4] = y[3];
    }
  };
  struct WeightT {  // G, 2 -> 5
    static constexpr int kIn = 2, kOut = 5;
    static void apply(const V* g, V* o) {
      const float sixth = 1.0f / 6.0f;
      o[0] = times(0.5f, g[0]);
      o[1] = times(0.5f, add(g[0], g[1]));
      o[2] = times(sixth, sub(g[1], g[0]));
      o[3] = times(sixth, fma(2.0f, g[1], g[0]));
      o[4] = g[1];
    }
  };
  struct WeightAdjT {  // G^T, 5 -> 2
    static constexpr int kIn = 5, kOut = 2;
    static void apply(const V* m, V* o) {
      const float sixth = 1.0f / 6.0f;
      o[0] = fma(0.5f, add(m[0], m[1]), times(sixth, sub(m[3], m[2])));
      o[1] = add(fma(0.5f, m[1], times(sixth, fma(2.0f, m[3], m[2]))), m[4]);
    }
  };
};

// out = F in F^T for the 1D matrix F.
template <class F>
inline void transform2d(const V (&in)[F::kIn][F::kIn], V (&out)[F::kOut][F::kOut]) {
  V tmp[F::kOut][F::kIn];
  for (int s = 0; s < F::kIn; ++s) {
    V col[F::kIn], res[F::kOut];
    for (int r = 0; r < F::kIn; ++r) col[r] = in[r][s];
    F::apply(col, res);
    for (int r = 0; r < F::kOut; ++r) tmp[r][s] = res[r];
  }
  for (int r = 0; r < F::kOut; ++r) F::apply(tmp[r], out[r]);
}

inline V gather(const float* base, __m512i idx) { return _mm512_i32gather_ps(idx, base, 4); }
inline V gather(const float* base, __m512i idx, __mmask16 m) {
  return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, base, 4);
}
// Lane l at l * stride: 16 consecutive channels of an NCHW tensor, or of a weight.
inline __m512i lane_steps(int64_t stride) {
  return _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                            _mm512_set1_epi32(static_cast<int>(stride)));
}

// A float buffer from the CPU allocator, which keeps large blocks for reuse (no page faults per call).
class Scratch {
 public:
  explicit Scratch(int64_t n) : bytes_(std::max<int64_t>(n, 1) * sizeof(float)) {
    data_ = static_cast<float*>(cpu_allocator().allocate(bytes_));
  }
  ~Scratch() { cpu_allocator().deallocate(data_, bytes_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  float* data() { return data_; }

 private:
  size_t bytes_;
  float* data_;
};

// The shape in tile terms, for output tiles of m x m (m = F::m). Tile t = (n TY + ty) TX + tx
// covers outputs [m ty, m ty + m) x [m tx, m tx + m) and the input region rows
// [2m ty - 1, 2m ty + 2n - 1) x the same in columns (all four phases of its n x n e-tiles);
// `ld` is T rounded up to whole GEMM panels (kPanel columns, a multiple of 16 lanes). `KP` is K4
// rounded up the same way: the weight gradient's V has its channels in panels.
template <class F>
struct Tiles {
  static constexpr int m = F::m, n = F::n, kPoints = F::n * F::n;  // transformed positions of a tile
  int64_t N, Ci, Co, OH, OW, H, W, TY, TX, T, ld, K4, KP;
  explicit Tiles(const WinogradConv& s)
      : N(s.N),
        Ci(s.Ci),
        Co(s.Co),
        OH(s.OH),
        OW(s.OW),
        H(2 * s.OH),
        W(2 * s.OW),
        TY(s.OH / m),
        TX(s.OW / m),
        T(s.N * TY * TX),
        ld((T + kPanel - 1) / kPanel * kPanel),
        K4(4 * s.Ci),
        KP((K4 + kPanel - 1) / kPanel * kPanel) {}
  int64_t groups() const { return ld / kLanes; }
  int64_t n_of(int64_t t) const { return t / (TY * TX); }
  int64_t ty(int64_t t) const { return t / TX % TY; }
  int64_t tx(int64_t t) const { return t % TX; }
};

// 16 consecutive tiles as lanes: each lane's offset of a tile origin (scale * (ty, tx) + shift) in
// an NCHW batch with `image` elements per sample and rows of `width`, and which lanes see region
// row r / column s inside [0, height) x [0, width) (always false past the last tile).
template <int R>
struct TileLanes {
  __m512i offset;
  __mmask16 row[R], col[R];
  template <class Tl>
  TileLanes(const Tl& tl, int64_t t0, int64_t image, int64_t height, int64_t width, int64_t scale,
            int64_t shift) {
    alignas(64) int32_t off[kLanes];
    for (int r = 0; r < R; ++r) row[r] = col[r] = 0;
    for (int64_t l = 0; l < kLanes; ++l) {
      const int64_t t = t0 + l;
      off[l] = 0;
      if (t >= tl.T) continue;
      const int64_t oy = scale * tl.ty(t) + shift, ox = scale * tl.tx(t) + shift;
      off[l] = static_cast<int32_t>(tl.n_of(t) * image + oy * width + ox);
      for (int r = 0; r < R; ++r) {
        if (oy + r >= 0 && oy + r < height) row[r] |= __mmask16(1u << l);
        if (ox + r >= 0 && ox + r < width) col[r] |= __mmask16(1u << l);
      }
    }
    offset = _mm512_load_si512(off);
  }
};

// A tile region's pixels, as `load(r, s)` gives them (r, s < 2n), split into the four phases'
// n x n e-tiles (every region pixel belongs to exactly one), each transformed by B^T . B;
// emit(phase, position, vector) stores the results.
template <class F, class Load, class Emit>
inline void input_tiles(Load&& load, Emit&& emit) {
  constexpr int n = F::n;
  for (int a = 0; a < 2; ++a)
    for (int b = 0; b < 2; ++b) {
      V e[n][n], v[n][n];
      for (int u = 0; u < n; ++u)
        for (int w = 0; w < n; ++w) e[u][w] = load(2 * u + a, 2 * w + b);
      transform2d<typename F::InputT>(e, v);
      for (int p = 0; p < n * n; ++p) emit(2 * a + b, p, v[p / n][p % n]);
    }
}

// U[p][o][k] = (G w_ab G^T)[p] for k = (2a+b) Ci + c, lanes over 16 channels, with each p's
// [Co, K4] matrix in kPanel-wide column panels (zero past K4): what the input gradient's GEMM reads
// as its B, and the forward's as its A through offset tables (conv2d_tiles).
template <class F>
void transform_weights(const Tiles<F>& tl, const float* w, float* panels) {
  constexpr int n = F::n, P = Tiles<F>::kPoints;
  if (tl.KP != tl.K4)
    for (int p = 0; p < P; ++p)
      std::fill_n(panels + p * tl.Co * tl.KP + (tl.KP - kPanel) * tl.Co, tl.Co * kPanel, 0.0f);
#pragma omp parallel for schedule(static)
  for (int64_t o = 0; o < tl.Co; ++o) {
    for (int64_t c0 = 0; c0 < tl.Ci; c0 += kLanes) {
      // 16 channels' 4x4 taps are 256 consecutive floats: load them as rows, use them as columns.
      const float* src = w + (o * tl.Ci + c0) * 16;
      V taps[16];
      for (int c = 0; c < 16; ++c) taps[c] = _mm512_loadu_ps(src + c * 16);
      transpose16(taps);
      for (int a = 0; a < 2; ++a)
        for (int b = 0; b < 2; ++b) {
          const V g[2][2] = {{taps[a * 4 + b], taps[a * 4 + b + 2]},
                             {taps[(a + 2) * 4 + b], taps[(a + 2) * 4 + b + 2]}};
          V u[n][n];
          transform2d<typename F::WeightT>(g, u);
          const int64_t k = (2 * a + b) * tl.Ci + c0;
          for (int p = 0; p < P; ++p)
            _mm512_storeu_ps(panels + p * tl.Co * tl.KP + (k / kPanel * tl.Co + o) * kPanel + k % kPanel,
                             u[p / n][p % n]);
        }
    }
  }
}

// Row and column offset tables of row-major matrices, for sgemm's views.
std::vector<int64_t> steps(int64_t n, int64_t stride) {
  std::vector<int64_t> t(n);
  for (int64_t i = 0; i < n; ++i) t[i] = i * stride;
  return t;
}

// The `count` products C_p = A_p B_p of an [M, K] A (row-major with leading dimension lda, or at
// a_rows[i] + a_cols[k] when tables are given) and a [K, N] B in sgemm's panels (PackedPanels,
// kPanel columns wide) into a row-major C (ldc), stored one after the other: one per transformed
// position. A_p starts at A + p * a_step.
void gemm_points(int count, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, int64_t a_step,
                 const PackedPanels& B, float* C, int64_t ldc, const int64_t* a_rows = nullptr,
                 const int64_t* a_cols = nullptr) {
  const std::vector<int64_t> ar = steps(M, lda), ac = steps(K, 1), cr = steps(M, ldc), cc = steps(N, 1);
  sgemm_batch(count, GemmView<const float>{A, M, K, a_rows ? a_rows : ar.data(), a_cols ? a_cols : ac.data()},
              a_step, B, B.rows * ((B.cols + kPanel - 1) / kPanel * kPanel),
              GemmView<float>{C, M, N, cr.data(), cc.data()}, M * ldc, false);
}

template <class F>
void conv2d_tiles(const WinogradConv& s, const float* x, const float* U, float* y) {
  constexpr int m = F::m, n = F::n, P = Tiles<F>::kPoints;
  const Tiles<F> tl(s);
  Scratch Vt(P * tl.K4 * tl.ld), M(P * tl.Co * tl.ld);
  // V[p] = [K4, ld] in GEMM panels: lanes over 16 tiles, gathered from the input with the padding
  // masked to zero (so are the tiles past T).
  const int64_t image = tl.Ci * tl.H * tl.W;
  float* v = Vt.data();
#pragma omp parallel for schedule(static)
  for (int64_t g = 0; g < tl.groups(); ++g) {
    const TileLanes<2 * n> lanes(tl, g * kLanes, image, tl.H, tl.W, 2 * m, -1);
    // In panels: tile t's column sits in panel t / kPanel, at t % kPanel of each of its K4 rows.
    float* panel = v + g * kLanes / kPanel * tl.K4 * kPanel + g * kLanes % kPanel;
    for (int64_t c = 0; c < tl.Ci; ++c) {
      const float* base = x + c * tl.H * tl.W;
      input_tiles<F>(
          [&](int r, int s2) {
            return gather(base + r * tl.W + s2, lanes.offset, lanes.row[r] & lanes.col[s2]);
          },
          [&](int phase, int p, V val) {
            _mm512_store_ps(panel + p * tl.K4 * tl.ld + (phase * tl.Ci + c) * kPanel, val);
          });
    }
  }
  // U (panels) read as the row-major [Co, K4] A: element (o, k) sits in panel k / kPanel, row o.
  std::vector<int64_t> u_rows(tl.Co), u_cols(tl.K4);
  for (int64_t o = 0; o < tl.Co; ++o) u_rows[o] = o * kPanel;
  for (int64_t k = 0; k < tl.K4; ++k) u_cols[k] = k / kPanel * tl.Co * kPanel + k % kPanel;
  // T columns, not ld: the GEMM skips the padding of the last panel (its columns of M are not read).
  gemm_points(P, tl.Co, tl.T, tl.K4, U, 0, tl.Co * tl.KP, PackedPanels{v, tl.K4, tl.T}, M.data(), tl.ld,
              u_rows.data(), u_cols.data());
  // Y = A^T M A for 16 tiles (lanes) at a time; a 16 x 16 transpose gives each tile its m x m
  // values in a row of their own, stored as m rows of m floats (masked stores) at the tile's origin.
  std::vector<int64_t> origin(tl.T);  // tile t's output origin in y, channel 0
  for (int64_t t = 0; t < tl.T; ++t)
    origin[t] = tl.n_of(t) * tl.Co * tl.OH * tl.OW + m * tl.ty(t) * tl.OW + m * tl.tx(t);
  const float* mp = M.data();
#pragma omp parallel for schedule(static)
  for (int64_t o = 0; o < tl.Co; ++o) {
    float* dst = y + o * tl.OH * tl.OW;
    for (int64_t g = 0; g < (tl.T + kLanes - 1) / kLanes; ++g) {  // the groups that hold tiles
      V mt[n][n], yt[m][m], r[16];
      for (int p = 0; p < P; ++p)
        mt[p / n][p % n] = _mm512_load_ps(mp + (p * tl.Co + o) * tl.ld + g * kLanes);
      transform2d<typename F::OutputT>(mt, yt);
      for (int q = 0; q < 16; ++q) r[q] = q < m * m ? yt[q / m][q % m] : _mm512_setzero_ps();
      transpose16(r);  // r[l]: tile g * 16 + l, its value (i, j) at i * m + j
      const int64_t lanes = std::min(kLanes, tl.T - g * kLanes);
      for (int64_t l = 0; l < lanes; ++l) {
        float* at = dst + origin[g * kLanes + l];
        for (int i = 0; i < m; ++i)  // lanes i*m .. i*m+m-1 of r[l] to row i of the tile
          _mm512_mask_storeu_ps(at + i * (tl.OW - m), static_cast<__mmask16>(((1u << m) - 1) << (i * m)),
                                r[l]);
      }
    }
  }
}

template <class F>
void data_grad_tiles(const WinogradConv& s, const float* dy, const float* U, float* dx) {
  constexpr int m = F::m, n = F::n, P = Tiles<F>::kPoints;
  const Tiles<F> tl(s);
  Scratch Z(P * tl.T * tl.Co), M(P * tl.T * tl.K4);
  // Z[p][t][o] = (A dY A^T)[p]: lanes over 16 channels of dy.
  const int64_t plane = tl.OH * tl.OW;
  const __m512i by_plane = lane_steps(plane);
  float* z = Z.data();
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < tl.T; ++t) {
    const float* tile = dy + tl.n_of(t) * tl.Co * plane + m * tl.ty(t) * tl.OW + m * tl.tx(t);
    for (int64_t o0 = 0; o0 < tl.Co; o0 += kLanes) {
      const float* src = tile + o0 * plane;
      V d[m][m], zt[n][n];
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < m; ++j) d[i][j] = gather(src + i * tl.OW + j, by_plane);
      transform2d<typename F::OutputAdjT>(d, zt);
      for (int p = 0; p < P; ++p) _mm512_storeu_ps(z + (p * tl.T + t) * tl.Co + o0, zt[p / n][p % n]);
    }
  }
  gemm_points(P, tl.T, tl.K4, tl.Co, z, tl.Co, tl.T * tl.Co, PackedPanels{U, tl.Co, tl.K4}, M.data(), tl.K4);
  // dE = B M B^T added into dx. A work item owns one image and 16 channels: it adds each of the
  // image's tiles, all four phases, into a channels-last buffer [H][W][16] with plain vector adds
  // (overlapping tiles add up in tile order), then writes the buffer to the 16 channel planes of
  // dx, 16 pixels at a time through an in-register transpose. H W is a multiple of 16, as H and W
  // are multiples of 4.
  const int64_t HW = tl.H * tl.W, groups_c = tl.Ci / kLanes, per_image = tl.TY * tl.TX;
  const float* mp = M.data();
#pragma omp parallel
  {
    std::vector<float> acc(HW * kLanes);
#pragma omp for schedule(static)
    for (int64_t item = 0; item < tl.N * groups_c; ++item) {
      const int64_t img = item / groups_c, c0 = item % groups_c * kLanes;
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t t = img * per_image; t < (img + 1) * per_image; ++t)
        for (int64_t phase = 0; phase < 4; ++phase) {
          const int64_t a = phase / 2, b = phase % 2;
          V mt[n][n], e[n][n];
          for (int p = 0; p < P; ++p)
            mt[p / n][p % n] = _mm512_loadu_ps(mp + (p * tl.T + t) * tl.K4 + phase * tl.Ci + c0);
          transform2d<typename F::InputAdjT>(mt, e);
          for (int u = 0; u < n; ++u) {
            const int64_t row = 2 * m * tl.ty(t) + 2 * u + a - 1;
            if (row < 0 || row >= tl.H) continue;
            for (int v = 0; v < n; ++v) {
              const int64_t col = 2 * m * tl.tx(t) + 2 * v + b - 1;
              if (col < 0 || col >= tl.W) continue;
              float* at = acc.data() + (row * tl.W + col) * kLanes;
              _mm512_storeu_ps(at, _mm512_add_ps(_mm512_loadu_ps(at), e[u][v]));
            }
          }
        }
      float* out = dx + (img * tl.Ci + c0) * HW;
      for (int64_t px = 0; px < HW; px += kLanes) {
        V r[16];
        for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(acc.data() + (px + i) * kLanes);
        transpose16(r);  // r[l]: channel c0 + l at pixels px .. px + 15
        for (int l = 0; l < 16; ++l) _mm512_storeu_ps(out + l * HW + px, r[l]);
      }
    }
  }
}

template <class F>
void weight_grad_tiles(const WinogradConv& s, const float* x, const float* dy, float* dw) {
  constexpr int m = F::m, n = F::n, P = Tiles<F>::kPoints;
  const Tiles<F> tl(s);
  Scratch Z(P * tl.Co * tl.ld), Vt(P * tl.T * tl.KP), M(P * tl.Co * tl.K4);
  // Z[p][o][t] = (A dY A^T)[p]: lanes over 16 tiles.
  const int64_t plane = tl.OH * tl.OW;
  float* z = Z.data();
#pragma omp parallel for schedule(static)
  for (int64_t g = 0; g < tl.groups(); ++g) {
    const TileLanes<m> lanes(tl, g * kLanes, tl.Co * plane, tl.OH, tl.OW, m, 0);
    const __mmask16 all = lanes.row[0];  // the lanes that hold a tile
    for (int64_t o = 0; o < tl.Co; ++o) {
      const float* src = dy + o * plane;
      V d[m][m], zt[n][n];
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < m; ++j) d[i][j] = gather(src + i * tl.OW + j, lanes.offset, all);
      transform2d<typename F::OutputAdjT>(d, zt);
      for (int p = 0; p < P; ++p) _mm512_store_ps(z + (p * tl.Co + o) * tl.ld + g * kLanes, zt[p / n][p % n]);
    }
  }
  // V[p] = [T, K4] in GEMM panels: lanes over 16 channels (never across a panel's edge, as both
  // are multiples of 16); a region pixel in the padding is zero for every lane. Columns K4..KP of
  // the last panel are zero.
  const int64_t HW = tl.H * tl.W;
  const __m512i by_hw = lane_steps(HW);
  float* v = Vt.data();
  if (tl.KP != tl.K4)
    for (int p = 0; p < P; ++p)
      std::fill_n(v + p * tl.T * tl.KP + (tl.KP - kPanel) * tl.T, tl.T * kPanel, 0.0f);
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < tl.T; ++t) {
    const int64_t r0 = 2 * m * tl.ty(t) - 1, s0 = 2 * m * tl.tx(t) - 1;
    for (int64_t c0 = 0; c0 < tl.Ci; c0 += kLanes) {
      const float* img = x + (tl.n_of(t) * tl.Ci + c0) * HW;
      input_tiles<F>(
          [&](int r, int s2) {
            const int64_t row = r0 + r, col = s0 + s2;
            return row < 0 || row >= tl.H || col < 0 || col >= tl.W ? _mm512_setzero_ps()
                                                                    : gather(img + row * tl.W + col, by_hw);
          },
          [&](int phase, int p, V val) {
            const int64_t k = phase * tl.Ci + c0;
            _mm512_storeu_ps(v + p * tl.T * tl.KP + (k / kPanel * tl.T + t) * kPanel + k % kPanel, val);
          });
    }
  }
  gemm_points(P, tl.Co, tl.K4, tl.T, z, tl.ld, tl.Co * tl.ld, PackedPanels{v, tl.T, tl.K4}, M.data(), tl.K4);
  // dw_ab = G^T M G, lanes over 16 channels: the four phases give the 16 taps
  // dw[o][c][2i'+a][2j'+b] of 16 channels, which one 16 x 16 transpose turns into the 16
  // channels' consecutive 4 x 4 taps (the inverse of transform_weights' load).
  const float* mp = M.data();
#pragma omp parallel for schedule(static)
  for (int64_t o = 0; o < tl.Co; ++o) {
    for (int64_t c0 = 0; c0 < tl.Ci; c0 += kLanes) {
      V taps[16];
      for (int a = 0; a < 2; ++a)
        for (int b = 0; b < 2; ++b) {
          V mt[n][n], g[2][2];
          for (int p = 0; p < P; ++p)
            mt[p / n][p % n] = _mm512_loadu_ps(mp + (p * tl.Co + o) * tl.K4 + (2 * a + b) * tl.Ci + c0);
          transform2d<typename F::WeightAdjT>(mt, g);
          for (int i = 0; i < 2; ++i)
            for (int j = 0; j < 2; ++j) taps[(2 * i + a) * 4 + 2 * j + b] = g[i][j];
        }
      transpose16(taps);  // taps[l]: channel c0 + l's 16 taps in row-major order
      float* dst = dw + (o * tl.Ci + c0) * 16;
      for (int l = 0; l < 16; ++l) _mm512_storeu_ps(dst + l * 16, taps[l]);
    }
  }
}

// Calls f with the tile type of s (F2 or F4), after checking that s's maps split into such tiles.
template <class Fn>
decltype(auto) with_tiles(const WinogradConv& s, Fn&& f) {
  if (s.tile == 4 && s.OH % 4 == 0 && s.OW % 4 == 0) return f(F4{});
  if (s.tile == 2) return f(F2{});
  throw std::logic_error("winograd: tile " + std::to_string(s.tile) + " does not divide the " +
                         std::to_string(s.OH) + "x" + std::to_string(s.OW) +
                         " output (2, or 4 where both are multiples of 4)");
}

}  // namespace

bool winograd_applies(int64_t Ci, int64_t Co, int64_t H, int64_t W, int64_t OH, int64_t OW, int64_t N,
                      int64_t kh, int64_t kw, int64_t stride, int64_t pad_h, int64_t pad_w) {
  static const bool off = [] {
    const char* e = std::getenv("XGAN_CONV");
    return e && std::string(e) == "direct";
  }();
  if (off || !sgemm_available() || sgemm_panel_width() != kPanel) return false;
  if (kh != 4 || kw != 4 || stride != 2 || pad_h != 1 || pad_w != 1) return false;
  if (OH < 2 || OW < 2 || OH % 2 || OW % 2 || H != 2 * OH || W != 2 * OW) return false;
  if (Ci < kLanes || Co < kLanes || Ci % kLanes || Co % kLanes || N < 1) return false;
  // Tile offsets in gathers are 32-bit.
  const int64_t limit = int64_t{1} << 31;
  return N * Ci * H * W < limit && N * Co * OH * OW < limit;
}

int winograd_tile(int64_t OH, int64_t OW) {
  static const int forced = [] {
    const char* e = std::getenv("XGAN_WINOGRAD_TILE");
    return e ? std::atoi(e) : 0;
  }();
  const bool fits4 = OH % 4 == 0 && OW % 4 == 0;
  if (forced == 2 || forced == 4) return forced == 4 && fits4 ? 4 : 2;
  return fits4 && OH * OW >= kF4MinOutputs ? 4 : 2;
}

int64_t winograd_weight_floats(const WinogradConv& s) {
  return with_tiles(s, [&](auto f) {
    const Tiles<decltype(f)> tl(s);
    return tl.kPoints * tl.Co * tl.KP;
  });
}

void winograd_transform_weights(const WinogradConv& s, const float* w, float* U) {
  with_tiles(s, [&](auto f) { transform_weights(Tiles<decltype(f)>(s), w, U); });
}

void winograd_conv2d(const WinogradConv& s, const float* x, const float* U, float* y) {
  with_tiles(s, [&](auto f) { conv2d_tiles<decltype(f)>(s, x, U, y); });
}

void winograd_conv2d_data_grad(const WinogradConv& s, const float* dy, const float* U, float* dx) {
  with_tiles(s, [&](auto f) { data_grad_tiles<decltype(f)>(s, dy, U, dx); });
}

void winograd_conv2d_weight_grad(const WinogradConv& s, const float* x, const float* dy, float* dw) {
  with_tiles(s, [&](auto f) { weight_grad_tiles<decltype(f)>(s, x, dy, dw); });
}

#else  // no AVX-512: the callers keep the direct method

bool winograd_applies(int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                      int64_t, int64_t, int64_t) {
  return false;
}
[[noreturn]] static void no_winograd() {
  throw std::logic_error("winograd: this build has no AVX-512 transforms (check winograd_applies() first)");
}
int winograd_tile(int64_t, int64_t) { return 2; }
int64_t winograd_weight_floats(const WinogradConv&) { no_winograd(); }
void winograd_transform_weights(const WinogradConv&, const float*, float*) { no_winograd(); }
void winograd_conv2d(const WinogradConv&, const float*, const float*, float*) { no_winograd(); }
void winograd_conv2d_data_grad(const WinogradConv&, const float*, const float*, float*) { no_winograd(); }
void winograd_conv2d_weight_grad(const WinogradConv&, const float*, const float*, float*) { no_winograd(); }

#endif

}  // namespace xgan::cpu
