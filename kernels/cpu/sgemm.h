// xgan's own single-precision GEMM for CPUs with AVX2 + FMA or AVX-512: C = A B or C += A B, in
// the classic blocked form: B packed into panels NR columns wide, A into panels MR rows tall, and
// an MR x NR register tile multiplied along k with broadcast FMAs (8 x 48 on AVX-512, 6 x 16 on
// AVX2). See kernels/cpu/sgemm.cpp for the blocking.
//
// Every operand is addressed through two offset tables, element (i, j) at data[row[i] + col[j]].
// A strided matrix is the special case row[i] = i rs, col[j] = j cs (transposes cost nothing), but
// the tables also describe what a convolution needs without copying anything first: the column
// matrix of im2col (row = offset of a kernel tap in the padded image, col = offset of an output
// position), and a batch of NCHW samples seen as one [C, N*H*W] matrix. Packing gathers straight
// from those layouts into the kernel's panels.
//
// Each C element is summed over k in the same order however the work is split across threads, so
// the result does not depend on the thread count. Where the engine is compiled for neither
// (XGAN_MARCH x86-64-v2), or the environment sets XGAN_EIGEN=1 (to measure one against the other),
// `sgemm_available()` is false and the callers use Eigen.
#pragma once
#include <cstdint>

namespace xgan::cpu {

// A matrix view: element (i, j) is at data[i * rs + j * cs].
template <class T>
struct StridedMat {
  T* data;
  int64_t rows, cols, rs, cs;
};

// An operand seen through offset tables (borrowed, rows and cols entries long).
template <class T>
struct GemmView {
  T* data;
  int64_t rows, cols;
  const int64_t* row_off;
  const int64_t* col_off;
};

bool sgemm_available();

void sgemm(const GemmView<const float>& a, const GemmView<const float>& b, const GemmView<float>& c,
           bool accumulate);

// `count` independent products: product p uses the views with data advanced by p * a_step,
// p * b_step and p * c_step (a batch of equally shaped matrices, as Winograd's transformed
// domain has). One OpenMP team for all of them, each thread taking the same share of each.
void sgemm_batch(int64_t count, const GemmView<const float>& a, int64_t a_step, const GemmView<const float>& b,
                 int64_t b_step, const GemmView<float>& c, int64_t c_step, bool accumulate);

// B handed over already in the kernel's panel order, which a producer that can write it directly
// (the Winograd transforms) uses to spare the GEMM its copy of B: column panel q (columns
// [q w, q w + w), w = sgemm_panel_width()) holds rows 0..rows-1 of w floats each, zero past `cols`,
// and the panels follow one another (panel q starts at data + q * rows * w). The kernel loads the
// panels with aligned vector loads, so data must be 64-byte aligned (the CPU allocator's blocks are).
struct PackedPanels {
  const float* data;
  int64_t rows, cols;
};
int64_t sgemm_panel_width();

// sgemm_batch with B in panels; product p's panels start at b.data + p * b_step.
void sgemm_batch(int64_t count, const GemmView<const float>& a, int64_t a_step, const PackedPanels& b, int64_t b_step,
                 const GemmView<float>& c, int64_t c_step, bool accumulate);

// c = a * b (accumulate: c += a * b) for a [M, K], b [K, N], c [M, N]; c must not alias a or b.
// Split over the OpenMP threads when the product is large enough to pay for a team.
void sgemm(StridedMat<const float> a, StridedMat<const float> b, StridedMat<float> c, bool accumulate);

}  // namespace xgan::cpu
