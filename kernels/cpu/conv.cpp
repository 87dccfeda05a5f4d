// CPU convolutions: conv2d, its adjoint conv_transpose2d and its weight gradient, each as
// im2col/col2im plus one Eigen GEMM per chunk of samples. The samples of a chunk share one GEMM
// because the GAN's end layers have tiny maps (4x4 -> 1 logit, 1x1 noise -> 4x4) where a GEMM per
// sample degenerates into a GEMV; Eigen threads the GEMM, OpenMP the (memory-bound) copies.
// This is the numerical reference the CUDA convolutions are checked against.
#include <Eigen/Dense>
#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "engine/primitives.h"

namespace xgan {
namespace {

template <class T>
using RowMat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using Buffer = Eigen::Matrix<T, Eigen::Dynamic, 1>;  // aligned, left uninitialised

// A column buffer (rows x samples*cols) is kept under this many elements: 32 MiB in float32 is
// enough for a whole batch of 32 at the benchmarked layer sizes (one deep GEMM), and bounds the
// memory of large images, which then run in several chunks.
constexpr int64_t kColumnBudget = int64_t{1} << 23;

void require(bool ok, const char* op, const std::string& what) {
  if (!ok) throw std::runtime_error(std::string(op) + ": " + what);
}

// Runs f(T{}) for the float type of `out`.
template <class F>
void dispatch_float(const Tensor& out, const char* op, F&& f) {
  switch (out.dtype()) {
    case DType::f32:
      return f(float{});
    case DType::f64:
      return f(double{});
    default:
      throw std::runtime_error(std::string(op) + ": no CPU kernel for " + out.str());
  }
}

// Requires b > 0.
int64_t ceil_div(int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }

void require_stride_pad(int stride, int pad, const char* op) {
  require(stride >= 1 && pad >= 0, op,
          "needs stride >= 1 and pad >= 0, got stride " + std::to_string(stride) + ", pad " +
              std::to_string(pad));
}

// A convolution in conv2d's terms: `image` is the convolved input (C x H x W), `grid` the output
// positions (OH x OW). A column matrix has one row per (c, i, j) of the kernel window and one
// column per grid position.
struct ConvGeometry {
  int64_t C, H, W;
  int64_t kh, kw;
  int64_t OH, OW;
  int64_t stride, pad;
  int64_t rows() const { return C * kh * kw; }
  int64_t cols() const { return OH * OW; }
  // [*lo, *hi): the grid positions o with image position o * stride - pad + k inside [0, n).
  void valid(int64_t n, int64_t k, int64_t grid, int64_t* lo, int64_t* hi) const {
    *lo = std::clamp<int64_t>(ceil_div(pad - k, stride), 0, grid);
    *hi = std::clamp<int64_t>(ceil_div(n + pad - k, stride), *lo, grid);
  }
};

// Writes the column matrix of one image into col (row r starts at col + r * ld); zero padding.
template <class T>
void im2col(const T* image, const ConvGeometry& g, T* col, int64_t ld) {
  for (int64_t c = 0; c < g.C; ++c) {
    for (int64_t i = 0; i < g.kh; ++i) {
      int64_t oh_lo, oh_hi;
      g.valid(g.H, i, g.OH, &oh_lo, &oh_hi);
      for (int64_t j = 0; j < g.kw; ++j) {
        int64_t ow_lo, ow_hi;
        g.valid(g.W, j, g.OW, &ow_lo, &ow_hi);
        T* row = col + ((c * g.kh + i) * g.kw + j) * ld;
        std::fill(row, row + oh_lo * g.OW, T(0));
        for (int64_t oh = oh_lo; oh < oh_hi; ++oh) {
          const T* src = image + (c * g.H + oh * g.stride - g.pad + i) * g.W;
          T* dst = row + oh * g.OW;
          std::fill(dst, dst + ow_lo, T(0));
          const int64_t off = j - g.pad;
          if (g.stride == 1) {
            std::copy(src + ow_lo + off, src + ow_hi + off, dst + ow_lo);
          } else {
            for (int64_t ow = ow_lo; ow < ow_hi; ++ow) dst[ow] = src[ow * g.stride + off];
          }
          std::fill(dst + ow_hi, dst + g.OW, T(0));
        }
        std::fill(row + oh_hi * g.OW, row + g.OH * g.OW, T(0));
      }
    }
  }
}

// The adjoint of im2col: adds every column entry into the image position it was read from.
// Requires `image` zeroed (or holding what the sum should start from).
template <class T>
void col2im(const T* col, int64_t ld, const ConvGeometry& g, T* image) {
  for (int64_t c = 0; c < g.C; ++c) {
    for (int64_t i = 0; i < g.kh; ++i) {
      int64_t oh_lo, oh_hi;
      g.valid(g.H, i, g.OH, &oh_lo, &oh_hi);
      for (int64_t j = 0; j < g.kw; ++j) {
        int64_t ow_lo, ow_hi;
        g.valid(g.W, j, g.OW, &ow_lo, &ow_hi);
        const T* row = col + ((c * g.kh + i) * g.kw + j) * ld;
        const int64_t off = j - g.pad;
        for (int64_t oh = oh_lo; oh < oh_hi; ++oh) {
          T* dst = image + (c * g.H + oh * g.stride - g.pad + i) * g.W;
          const T* src = row + oh * g.OW;
          if (g.stride == 1) {
            for (int64_t ow = ow_lo; ow < ow_hi; ++ow) dst[ow + off] += src[ow];
          } else {
            for (int64_t ow = ow_lo; ow < ow_hi; ++ow) dst[ow * g.stride + off] += src[ow];
          }
        }
      }
    }
  }
}

int64_t chunk_samples(int64_t n, int64_t per_sample) {
  return std::clamp<int64_t>(kColumnBudget / std::max<int64_t>(per_sample, 1), 1,
                             std::max<int64_t>(n, 1));
}

// Between [nb][rows][cols] (a chunk of NCHW samples) and [rows][nb * cols] (the GEMM's layout).
template <class T>
void samples_to_wide(const T* s, int64_t nb, int64_t rows, int64_t cols, T* wide) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < nb; ++b)
    for (int64_t r = 0; r < rows; ++r)
      std::memcpy(wide + r * nb * cols + b * cols, s + (b * rows + r) * cols, cols * sizeof(T));
}
template <class T>
void wide_to_samples(const T* wide, int64_t nb, int64_t rows, int64_t cols, T* s) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < nb; ++b)
    for (int64_t r = 0; r < rows; ++r)
      std::memcpy(s + (b * rows + r) * cols, wide + r * nb * cols + b * cols, cols * sizeof(T));
}

template <class T>
void conv2d(const Tensor& x, const Tensor& w, Tensor& y, int stride, int pad) {
  require(x.dim() == 4 && w.dim() == 4 && y.dim() == 4, "conv2d", "expects 4-D x, w and output");
  const int64_t N = x.size(0), Co = w.size(0);
  const ConvGeometry g{x.size(1), x.size(2), x.size(3), w.size(2), w.size(3),
                       y.size(2), y.size(3), stride,    pad};
  require(w.size(1) == g.C && y.size(0) == N && y.size(1) == Co, "conv2d",
          "x " + x.str() + ", w " + w.str() + ", out " + y.str() + " do not fit together");
  const int64_t K = g.rows(), P = g.cols();
  const T* xd = x.data<T>();
  T* yd = y.data<T>();
  const Eigen::Map<const RowMat<T>> wm(w.data<T>(), Co, K);

  const int64_t B = chunk_samples(N, K * P);
  Buffer<T> col(K * B * P), wide(B > 1 ? Co * B * P : 0);
  for (int64_t n0 = 0; n0 < N; n0 += B) {
    const int64_t nb = std::min(B, N - n0), ld = nb * P;
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < nb; ++b)
      im2col(xd + (n0 + b) * g.C * g.H * g.W, g, col.data() + b * P, ld);
    const Eigen::Map<const RowMat<T>> cm(col.data(), K, ld);
    // One sample's product is already in NCHW order: write it in place.
    T* dst = nb == 1 ? yd + n0 * Co * P : wide.data();
    Eigen::Map<RowMat<T>>(dst, Co, ld).noalias() = wm * cm;
    if (nb > 1) wide_to_samples(wide.data(), nb, Co, P, yd + n0 * Co * P);
  }
}

template <class T>
void conv_transpose2d(const Tensor& x, const Tensor& w, Tensor& y, int stride, int pad) {
  require(x.dim() == 4 && w.dim() == 4 && y.dim() == 4, "conv_transpose2d",
          "expects 4-D x, w and output");
  const int64_t N = x.size(0), Ci = x.size(1);
  // The conv2d this is the adjoint of: y is its image, x its output grid.
  const ConvGeometry g{w.size(1), y.size(2), y.size(3), w.size(2), w.size(3),
                       x.size(2), x.size(3), stride,    pad};
  require(w.size(0) == Ci && y.size(0) == N && y.size(1) == g.C, "conv_transpose2d",
          "x " + x.str() + ", w " + w.str() + ", out " + y.str() + " do not fit together");
  const int64_t K = g.rows(), P = g.cols(), image = g.C * g.H * g.W;
  const T* xd = x.data<T>();
  T* yd = y.data<T>();
  const Eigen::Map<const RowMat<T>> wm(w.data<T>(), Ci, K);

  const int64_t B = chunk_samples(N, K * P);
  Buffer<T> col(K * B * P), wide(B > 1 ? Ci * B * P : 0);
  for (int64_t n0 = 0; n0 < N; n0 += B) {
    const int64_t nb = std::min(B, N - n0), ld = nb * P;
    const T* xs = xd + n0 * Ci * P;
    if (nb > 1) {
      samples_to_wide(xs, nb, Ci, P, wide.data());
      xs = wide.data();
    }
    Eigen::Map<RowMat<T>>(col.data(), K, ld).noalias() =
        wm.transpose() * Eigen::Map<const RowMat<T>>(xs, Ci, ld);
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < nb; ++b) {
      T* yn = yd + (n0 + b) * image;
      std::fill(yn, yn + image, T(0));
      col2im(col.data() + b * P, ld, g, yn);
    }
  }
}

template <class T>
void conv2d_weight_grad(const Tensor& x, const Tensor& dy, Tensor& dw, int stride, int pad) {
  require(x.dim() == 4 && dy.dim() == 4 && dw.dim() == 4, "conv2d_weight_grad",
          "expects 4-D x, dy and output");
  const int64_t N = x.size(0), Co = dy.size(1);
  const ConvGeometry g{x.size(1),  x.size(2),  x.size(3), dw.size(2), dw.size(3),
                       dy.size(2), dy.size(3), stride,    pad};
  require(dy.size(0) == N && dw.size(0) == Co && dw.size(1) == g.C, "conv2d_weight_grad",
          "x " + x.str() + ", dy " + dy.str() + ", out " + dw.str() + " do not fit together");
  const int64_t K = g.rows(), P = g.cols();
  const T* xd = x.data<T>();
  const T* dyd = dy.data<T>();
  Eigen::Map<RowMat<T>> dwm(dw.data<T>(), Co, K);
  dwm.setZero();

  // The sum over samples is the GEMM's inner dimension, so there is nothing to race on and the
  // GEMM is deep; chunks (large images only) add up in a fixed order.
  const int64_t B = chunk_samples(N, K * P);
  Buffer<T> col(K * B * P), wide(B > 1 ? Co * B * P : 0);
  for (int64_t n0 = 0; n0 < N; n0 += B) {
    const int64_t nb = std::min(B, N - n0), ld = nb * P;
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < nb; ++b)
      im2col(xd + (n0 + b) * g.C * g.H * g.W, g, col.data() + b * P, ld);
    const T* dys = dyd + n0 * Co * P;
    if (nb > 1) {
      samples_to_wide(dys, nb, Co, P, wide.data());
      dys = wide.data();
    }
    dwm.noalias() += Eigen::Map<const RowMat<T>>(dys, Co, ld) *
                     Eigen::Map<const RowMat<T>>(col.data(), K, ld).transpose();
  }
}

}  // namespace

void Conv2d::eval_cpu(const std::vector<Tensor>& in, Tensor& out) {
  require_stride_pad(stride, pad, "conv2d");
  require(in.size() == 2, "conv2d", "expects inputs (x, w)");
  dispatch_float(out, "conv2d",
                 [&](auto t) { conv2d<decltype(t)>(in[0], in[1], out, stride, pad); });
}

void ConvTranspose2d::eval_cpu(const std::vector<Tensor>& in, Tensor& out) {
  require_stride_pad(stride, pad, "conv_transpose2d");
  require(in.size() == 2, "conv_transpose2d", "expects inputs (x, w)");
  dispatch_float(out, "conv_transpose2d",
                 [&](auto t) { conv_transpose2d<decltype(t)>(in[0], in[1], out, stride, pad); });
}

void Conv2dWeightGrad::eval_cpu(const std::vector<Tensor>& in, Tensor& out) {
  require_stride_pad(stride, pad, "conv2d_weight_grad");
  require(in.size() == 2, "conv2d_weight_grad", "expects inputs (x, dy)");
  require(out.dim() == 4 && out.size(2) == kh && out.size(3) == kw, "conv2d_weight_grad",
          "output " + out.str() + " does not match the kernel size");
  dispatch_float(out, "conv2d_weight_grad",
                 [&](auto t) { conv2d_weight_grad<decltype(t)>(in[0], in[1], out, stride, pad); });
}

}  // namespace xgan
