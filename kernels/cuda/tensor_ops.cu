// CUDA concat and slice (strided 2-D copies on the xgan stream: a tensor viewed as
// [outer, along, inner] moves in contiguous runs) and matmul (cuBLAS; FP32 without TF32, so it
// agrees with the CPU's Eigen GEMM to float rounding). Twin of kernels/cpu/tensor_ops.cpp.
#include <limits>

#include "engine/backend.h"
#include "engine/primitives.h"
#include "kernels/cuda/common.cuh"

namespace xgan {
namespace {
using namespace cuda;

struct DimView {
  int64_t outer = 1, along = 1, inner = 1;
};
DimView view_at(const Shape& s, int d) {
  DimView v;
  for (int i = 0; i < static_cast<int>(s.size()); ++i) {
    if (i < d) v.outer *= s[static_cast<size_t>(i)];
    if (i > d) v.inner *= s[static_cast<size_t>(i)];
  }
  v.along = s[static_cast<size_t>(d)];
  return v;
}

// rows x width bytes from src (rows spitch apart) to dst (dpitch apart).
void copy_rows(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t rows) {
  if (width == 0 || rows == 0) return;
  if (rows == 1)
    XGAN_CUDA_CHECK(cudaMemcpyAsync(dst, src, width, cudaMemcpyDeviceToDevice, stream()));
  else
    XGAN_CUDA_CHECK(
        cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, rows, cudaMemcpyDeviceToDevice, stream()));
}

void require(bool ok, const char* op, const std::string& what) {
  if (!ok) fail(op, what);
}

}  // namespace

void Concat::eval_cuda(const std::vector<Tensor>& in, Tensor& out) {
  const char* op = "concat";
  require(!in.empty(), op, "needs at least one input");
  require_cuda(op, {&out});
  int64_t along = 0;
  for (const Tensor& t : in) {
    require_cuda(op, {&t});
    require(t.dim() == out.dim() && dim < t.dim(), op, "input " + t.str() + " does not fit " + out.str());
    for (int d = 0; d < t.dim(); ++d)
      require(d == dim || t.size(d) == out.size(d), op, "input " + t.str() + " does not fit " + out.str());
    along += t.size(dim);
  }
  require(along == out.size(dim), op, "inputs do not add up to " + out.str());
  const size_t es = dtype_size(out.dtype());
  const DimView o = view_at(out.shape(), dim);
  char* od = static_cast<char*>(out.raw());
  int64_t offset = 0;
  for (const Tensor& t : in) {
    const DimView v = view_at(t.shape(), dim);
    const size_t run = static_cast<size_t>(v.along * v.inner) * es;
    copy_rows(od + static_cast<size_t>(offset * o.inner) * es, static_cast<size_t>(o.along * o.inner) * es,
              t.raw(), run, run, static_cast<size_t>(v.outer));
    offset += v.along;
  }
}

void Slice::eval_cuda(const std::vector<Tensor>& in, Tensor& out) {
  const char* op = "slice";
  require(in.size() == 1, op, "expects one input");
  const Tensor& x = in[0];
  require_cuda(op, {&x, &out});
  require(dim < x.dim() && out.dim() == x.dim() && start >= 0 && start + length <= x.size(dim) &&
              out.size(dim) == length,
          op,
          "range [" + std::to_string(start) + ", " + std::to_string(start + length) + ") of dim " +
              std::to_string(dim) + " does not fit " + x.str() + " -> " + out.str());
  const size_t es = dtype_size(out.dtype());
  const DimView v = view_at(x.shape(), dim), o = view_at(out.shape(), dim);
  const size_t run = static_cast<size_t>(o.along * o.inner) * es;
  copy_rows(out.raw(), run, static_cast<const char*>(x.raw()) + static_cast<size_t>(start * v.inner) * es,
            static_cast<size_t>(v.along * v.inner) * es, run, static_cast<size_t>(o.outer));
}

// Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: cuBLAS gets B first. A row-major
// [r, c] matrix is a column-major c x r one with leading dimension c, whatever the transpose flag.
void MatMul::eval_cuda(const std::vector<Tensor>& in, Tensor& out) {
  const char* op = "matmul";
  require(in.size() == 2, op, "expects two inputs");
  const Tensor &a = in[0], &b = in[1];
  require_cuda(op, {&a, &b, &out});
  require(a.dim() == 2 && b.dim() == 2 && out.dim() == 2, op, "expects 2-D operands");
  const int64_t m = trans_a ? a.size(1) : a.size(0), ka = trans_a ? a.size(0) : a.size(1);
  const int64_t kb = trans_b ? b.size(1) : b.size(0), n = trans_b ? b.size(0) : b.size(1);
  require(ka == kb && out.size(0) == m && out.size(1) == n, op,
          a.str() + (trans_a ? "^T" : "") + " @ " + b.str() + (trans_b ? "^T" : "") + " does not give " +
              out.str());
  if (m == 0 || n == 0) return;
  if (ka == 0) {  // an empty inner dim: the product is zero
    cuda::fill(out, 0.0);
    return;
  }
  const int64_t limit = std::numeric_limits<int>::max();
  require(m <= limit && n <= limit && ka <= limit && a.size(1) <= limit && b.size(1) <= limit, op,
          "dimensions beyond cuBLAS's 32-bit int: " + a.str() + " @ " + b.str());
  const cublasOperation_t opa = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                          opb = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int M = static_cast<int>(m), N = static_cast<int>(n), K = static_cast<int>(ka);
  const int lda = static_cast<int>(a.size(1)), ldb = static_cast<int>(b.size(1));
  cublasHandle_t h = cublas_handle();
  if (out.dtype() == DType::f32) {
    const float one = 1.0f, zero = 0.0f;
    XGAN_CUBLAS_CHECK(cublasSgemm(h, opb, opa, N, M, K, &one, b.data<float>(), ldb, a.data<float>(), lda,
                                  &zero, out.data<float>(), N));
  } else if (out.dtype() == DType::f64) {
    const double one = 1.0, zero = 0.0;
    XGAN_CUBLAS_CHECK(cublasDgemm(h, opb, opa, N, M, K, &one, b.data<double>(), ldb, a.data<double>(), lda,
                                  &zero, out.data<double>(), N));
  } else {
    fail(op, std::string("unsupported dtype ") + dtype_name(out.dtype()));
  }
}

}  // namespace xgan
