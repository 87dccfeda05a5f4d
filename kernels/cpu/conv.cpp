// CPU convolutions: conv2d, its adjoint conv_transpose2d and its weight gradient, each as
// im2col/col2im plus one Eigen GEMM per chunk of samples. A chunk shares one GEMM because per
// sample the GEMMs are thin (an 8x8 map is 64 columns); a window covering the whole map (D's last
// layer, G's first) skips im2col. OpenMP splits the GEMMs by output blocks and the copies by
// sample. This is the numerical reference the CUDA convolutions are checked against.
#include <Eigen/Dense>
#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "engine/backend.h"
#include "engine/primitives.h"
#include "kernels/cpu/dispatch.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/winograd.h"

namespace xgan {
namespace {

using cpu::ConstMap;
using cpu::parallel_product;
using cpu::RowMat;
template <class T>
using Buffer = Eigen::Matrix<T, Eigen::Dynamic, 1>;  // aligned, left uninitialised

// A column buffer (rows x samples*cols) is kept under this many elements: 32 MiB in float32 is
// enough for a whole batch of 32 at the benchmarked layer sizes (one deep GEMM), and bounds the
// memory of large images, which then run in several chunks.
constexpr int64_t kColumnBudget = int64_t{1} << 23;

void require(bool ok, const char* op, const std::string& what) {
  if (!ok) throw std::runtime_error(std::string(op) + ": " + what);
}

void require_stride_pad(int stride, Pad2d pad, const char* op) {
  require(stride >= 1 && pad.h >= 0 && pad.w >= 0, op,
          "needs stride >= 1 and pad >= 0, got stride " + std::to_string(stride) + ", pad " +
              std::to_string(pad.h) + "x" + std::to_string(pad.w));
}

// A convolution in conv2d's terms: `image` is the convolved input (C x H x W), `grid` the output
// positions (OH x OW). A column matrix has one row per (c, i, j) of the kernel window and one
// column per grid position.
struct ConvGeometry {
  int64_t C, H, W;
  int64_t kh, kw;
  int64_t OH, OW;
  int64_t stride, pad_h, pad_w;
  int64_t rows() const { return C * kh * kw; }
  int64_t cols() const { return OH * OW; }
  // im2col/col2im work on the image zero-padded so that every window of the grid lies inside it:
  // no bounds checks in the inner loops, which on a GAN's small maps cost more than the copy.
  int64_t padded_h() const { return std::max(H + 2 * pad_h, (OH - 1) * stride + kh); }
  int64_t padded_w() const { return std::max(W + 2 * pad_w, (OW - 1) * stride + kw); }
  bool needs_padding() const { return padded_h() != H || padded_w() != W; }
  int64_t scratch_size() const { return needs_padding() ? C * padded_h() * padded_w() : 0; }
  // One window covering the whole image at a single grid position (D's last layer, G's first):
  // the column matrix of a sample is the sample itself and the convolution a plain GEMM.
  bool dense() const { return OH == 1 && OW == 1 && pad_h == 0 && pad_w == 0 && kh == H && kw == W; }
};

// Column matrix of an image padded as ConvGeometry says; row r starts at col + r * ld.
template <class T>
void im2col(const T* padded, const ConvGeometry& g, T* col, int64_t ld) {
  const int64_t ph = g.padded_h(), pw = g.padded_w(), s = g.stride;
  for (int64_t c = 0; c < g.C; ++c) {
    for (int64_t i = 0; i < g.kh; ++i) {
      for (int64_t j = 0; j < g.kw; ++j) {
        const T* window = padded + (c * ph + i) * pw + j;
        T* row = col + ((c * g.kh + i) * g.kw + j) * ld;
        for (int64_t oh = 0; oh < g.OH; ++oh) {
          const T* src = window + oh * s * pw;
          T* dst = row + oh * g.OW;
          if (s == 1) {
            std::copy(src, src + g.OW, dst);
          } else {
            for (int64_t ow = 0; ow < g.OW; ++ow) dst[ow] = src[ow * s];
          }
        }
      }
    }
  }
}

// The adjoint of im2col: adds every column entry to the padded-image position it was read from.
template <class T>
void col2im(const T* col, int64_t ld, const ConvGeometry& g, T* padded) {
  const int64_t ph = g.padded_h(), pw = g.padded_w(), s = g.stride;
  for (int64_t c = 0; c < g.C; ++c) {
    for (int64_t i = 0; i < g.kh; ++i) {
      for (int64_t j = 0; j < g.kw; ++j) {
        T* window = padded + (c * ph + i) * pw + j;
        const T* row = col + ((c * g.kh + i) * g.kw + j) * ld;
        for (int64_t oh = 0; oh < g.OH; ++oh) {
          T* dst = window + oh * s * pw;
          const T* src = row + oh * g.OW;
          if (s == 1) {
            for (int64_t ow = 0; ow < g.OW; ++ow) dst[ow] += src[ow];
          } else {
            for (int64_t ow = 0; ow < g.OW; ++ow) dst[ow * s] += src[ow];
          }
        }
      }
    }
  }
}

// The image zero-padded as ConvGeometry says, into `padded` (g.scratch_size() elements).
template <class T>
void pad_image(const T* image, const ConvGeometry& g, T* padded) {
  const int64_t ph = g.padded_h(), pw = g.padded_w();
  std::fill(padded, padded + g.scratch_size(), T(0));
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t h = 0; h < g.H; ++h)
      std::copy_n(image + (c * g.H + h) * g.W, g.W, padded + (c * ph + h + g.pad_h) * pw + g.pad_w);
}

// image -> column matrix; `scratch` holds g.scratch_size() elements.
template <class T>
void image_to_columns(const T* image, const ConvGeometry& g, T* scratch, T* col, int64_t ld) {
  if (!g.needs_padding()) return im2col(image, g, col, ld);
  pad_image(image, g, scratch);
  im2col(scratch, g, col, ld);
}

// column matrix -> image (overwritten), the adjoint of image_to_columns.
template <class T>
void columns_to_image(const T* col, int64_t ld, const ConvGeometry& g, T* scratch, T* image) {
  if (!g.needs_padding()) {
    std::fill(image, image + g.C * g.H * g.W, T(0));
    return col2im(col, ld, g, image);
  }
  const int64_t ph = g.padded_h(), pw = g.padded_w();
  std::fill(scratch, scratch + g.scratch_size(), T(0));
  col2im(col, ld, g, scratch);
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t h = 0; h < g.H; ++h)
      std::copy_n(scratch + (c * ph + h + g.pad_h) * pw + g.pad_w, g.W, image + (c * g.H + h) * g.W);
}

// f(b, scratch) for b in [0, nb), spread over the OpenMP threads, one scratch buffer per thread.
template <class T, class F>
void for_each_sample(int64_t nb, int64_t scratch_size, F&& f) {
#pragma omp parallel
  {
    Buffer<T> scratch(scratch_size);
#pragma omp for schedule(static)
    for (int64_t b = 0; b < nb; ++b) f(b, scratch.data());
  }
}

int64_t chunk_samples(int64_t n, int64_t per_sample) {
  return std::clamp<int64_t>(kColumnBudget / std::max<int64_t>(per_sample, 1), 1, std::max<int64_t>(n, 1));
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

// ---- float convolutions on xgan's own GEMM (kernels/cpu/sgemm.h) ----------------------------------
// The column matrix is never built: the GEMM gathers its panels straight from the (padded) images
// through offset tables, since tap (c, i, j) of output position (b, oh, ow) sits at
// [offset of the tap in an image] + [offset of the position's window]. Samples are read and written
// in NCHW place as columns of one [C, N*H*W] matrix, so nothing is reordered either.
namespace fast {

std::vector<int64_t> steps(int64_t n, int64_t stride) {
  std::vector<int64_t> t(n);
  for (int64_t i = 0; i < n; ++i) t[i] = i * stride;
  return t;
}

// Offset of each kernel tap (c, i, j) inside an image padded as g says (the GEMM's k for conv2d).
std::vector<int64_t> tap_offsets(const ConvGeometry& g) {
  const int64_t ph = g.padded_h(), pw = g.padded_w();
  std::vector<int64_t> t;
  t.reserve(g.rows());
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j) t.push_back((c * ph + i) * pw + j);
  return t;
}

// Offset of the window of each output position (b, oh, ow) of nb images `image_stride` apart.
std::vector<int64_t> window_offsets(const ConvGeometry& g, int64_t nb, int64_t image_stride) {
  const int64_t pw = g.padded_w();
  std::vector<int64_t> t;
  t.reserve(nb * g.cols());
  for (int64_t b = 0; b < nb; ++b)
    for (int64_t oh = 0; oh < g.OH; ++oh)
      for (int64_t ow = 0; ow < g.OW; ++ow) t.push_back(b * image_stride + (oh * pw + ow) * g.stride);
  return t;
}

// Columns (b, p) of nb samples [rows][cols] stored `sample_stride` apart, as one [rows, nb*cols].
std::vector<int64_t> sample_columns(int64_t nb, int64_t cols, int64_t sample_stride) {
  std::vector<int64_t> t;
  t.reserve(nb * cols);
  for (int64_t b = 0; b < nb; ++b)
    for (int64_t p = 0; p < cols; ++p) t.push_back(b * sample_stride + p);
  return t;
}

// The images of samples [n0, n0+nb) as the GEMM reads them: in place when no padding is needed,
// else padded into `buffer`. Returns the first image and the distance between images.
std::pair<const float*, int64_t> padded_images(const float* x, int64_t n0, int64_t nb, const ConvGeometry& g,
                                               Buffer<float>& buffer) {
  const int64_t image = g.C * g.H * g.W;
  if (!g.needs_padding()) return {x + n0 * image, image};
  const int64_t size = g.scratch_size();
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < nb; ++b) pad_image(x + (n0 + b) * image, g, buffer.data() + b * size);
  return {buffer.data(), size};
}

using View = cpu::GemmView<const float>;
using OutView = cpu::GemmView<float>;

// Samples per GEMM: all of them unless padded copies would pass the column budget.
int64_t padded_chunk(const ConvGeometry& g, int64_t N) {
  return g.needs_padding() ? chunk_samples(N, g.scratch_size()) : std::max<int64_t>(N, 1);
}

void conv2d(const float* x, const float* w, float* y, const ConvGeometry& g, int64_t N, int64_t Co) {
  const int64_t K = g.rows(), P = g.cols();
  const std::vector<int64_t> taps = tap_offsets(g), w_rows = steps(Co, K), w_cols = steps(K, 1),
                             y_rows = steps(Co, P);
  const int64_t B = padded_chunk(g, N);
  Buffer<float> buffer(g.needs_padding() ? B * g.scratch_size() : 0);
  for (int64_t n0 = 0; n0 < N; n0 += B) {
    const int64_t nb = std::min(B, N - n0);
    const auto [images, stride] = padded_images(x, n0, nb, g, buffer);
    const std::vector<int64_t> windows = window_offsets(g, nb, stride),
                               y_cols = sample_columns(nb, P, Co * P);
    cpu::sgemm(View{w, Co, K, w_rows.data(), w_cols.data()},
               View{images, K, nb * P, taps.data(), windows.data()},
               OutView{y + n0 * Co * P, Co, nb * P, y_rows.data(), y_cols.data()}, false);
  }
}

void conv2d_weight_grad(const float* x, const float* dy, float* dw, const ConvGeometry& g, int64_t N,
                        int64_t Co) {
  const int64_t K = g.rows(), P = g.cols();
  const std::vector<int64_t> taps = tap_offsets(g), dy_rows = steps(Co, P), dw_rows = steps(Co, K),
                             dw_cols = steps(K, 1);
  const int64_t B = padded_chunk(g, N);
  Buffer<float> buffer(g.needs_padding() ? B * g.scratch_size() : 0);
  for (int64_t n0 = 0; n0 < N; n0 += B) {
    const int64_t nb = std::min(B, N - n0);
    const auto [images, stride] = padded_images(x, n0, nb, g, buffer);
    const std::vector<int64_t> windows = window_offsets(g, nb, stride),
                               dy_cols = sample_columns(nb, P, Co * P);
    // dw (+)= dy [Co, nb*P] x columns^T [nb*P, K]; chunks add up in a fixed order.
    cpu::sgemm(View{dy + n0 * Co * P, Co, nb * P, dy_rows.data(), dy_cols.data()},
               View{images, nb * P, K, windows.data(), taps.data()},
               OutView{dw, Co, K, dw_rows.data(), dw_cols.data()}, n0 > 0);
  }
}

// col [K, nb*P] = w^T [K, Ci] x (samples [n0, n0+nb) of x as [Ci, nb*P]).
void transposed_columns(const float* x, const float* w, float* col, const ConvGeometry& g, int64_t n0,
                        int64_t nb, int64_t Ci) {
  const int64_t K = g.rows(), P = g.cols();
  const std::vector<int64_t> w_rows = steps(K, 1), w_cols = steps(Ci, K), x_rows = steps(Ci, P),
                             x_cols = sample_columns(nb, P, Ci * P), c_rows = steps(K, nb * P),
                             c_cols = steps(nb * P, 1);
  cpu::sgemm(View{w, K, Ci, w_rows.data(), w_cols.data()},
             View{x + n0 * Ci * P, Ci, nb * P, x_rows.data(), x_cols.data()},
             OutView{col, K, nb * P, c_rows.data(), c_cols.data()}, false);
}

}  // namespace fast

// ---- Winograd weights, kept for parameters while they are frozen ----------------------------------
// The transformed form of each parameter used as a Winograd weight inside a FrozenParameters scope
// (engine/backend.h), on this thread. An entry holds its parameter, so the storage cannot be freed
// and its address reused while the entry lives; the version is checked as well, so a write the
// engine sees (copy_, an optimiser step) is never served stale: the entry is transformed again,
// in place. A parameter has one entry per convolution shape it serves.
struct ParameterForm {
  Tensor param;
  uint64_t version;
  int64_t ci, co;
  int tile;
  Tensor U;
};
thread_local std::vector<ParameterForm> t_parameter_forms;

// U = G w G^T for the convolution s: the kept form when w is a frozen parameter (made on first use,
// remade after a write), otherwise transformed into `own`.
const float* winograd_weights(const Tensor& w, const cpu::WinogradConv& s, Tensor& own) {
  if (FrozenParameters::active() && w.is_leaf() && w.requires_grad()) {
    for (ParameterForm& f : t_parameter_forms)
      if (f.param.impl() == w.impl() && f.ci == s.Ci && f.co == s.Co && f.tile == s.tile) {
        if (f.version != w.version()) {
          cpu::winograd_transform_weights(s, w.data<float>(), f.U.data<float>());
          f.version = w.version();
        }
        return f.U.data<float>();
      }
    ParameterForm f{w, w.version(), s.Ci, s.Co, s.tile, empty({cpu::winograd_weight_floats(s)})};
    cpu::winograd_transform_weights(s, w.data<float>(), f.U.data<float>());
    t_parameter_forms.push_back(f);
    return f.U.data<float>();
  }
  own = empty({cpu::winograd_weight_floats(s)});
  cpu::winograd_transform_weights(s, w.data<float>(), own.data<float>());
  return own.data<float>();
}

template <class T>
void conv2d(const Tensor& x, const Tensor& w, Tensor& y, int stride, Pad2d pad) {
  require(x.dim() == 4 && w.dim() == 4 && y.dim() == 4, "conv2d", "expects 4-D x, w and output");
  const int64_t N = x.size(0), Co = w.size(0);
  const ConvGeometry g{x.size(1), x.size(2), x.size(3), w.size(2), w.size(3),
                       y.size(2), y.size(3), stride,    pad.h,     pad.w};
  require(w.size(1) == g.C && y.size(0) == N && y.size(1) == Co, "conv2d",
          "x " + x.str() + ", w " + w.str() + ", out " + y.str() + " do not fit together");
  const int64_t K = g.rows(), P = g.cols(), image = g.C * g.H * g.W;
  const T* xd = x.data<T>();
  T* yd = y.data<T>();
  const ConstMap<T> wm(w.data<T>(), Co, K);
  if (g.dense()) {
    parallel_product(Eigen::Map<RowMat<T>>(yd, N, Co), ConstMap<T>(xd, N, K), wm.transpose(), false);
    return;
  }
  if constexpr (std::is_same_v<T, float>) {
    if (cpu::winograd_applies(g.C, Co, g.H, g.W, g.OH, g.OW, N, g.kh, g.kw, g.stride, g.pad_h, g.pad_w)) {
      const cpu::WinogradConv s{N, g.C, Co, g.OH, g.OW, cpu::winograd_tile(g.OH, g.OW)};
      Tensor own;
      return cpu::winograd_conv2d(s, xd, winograd_weights(w, s, own), yd);
    }
    if (cpu::sgemm_available()) return fast::conv2d(xd, w.data<T>(), yd, g, N, Co);
  }
  const int64_t B = chunk_samples(N, K * P);
  Buffer<T> col(K * B * P), wide(B > 1 ? Co * B * P : 0);
  for (int64_t n0 = 0; n0 < N; n0 += B) {
    const int64_t nb = std::min(B, N - n0), ld = nb * P;
    for_each_sample<T>(nb, g.scratch_size(), [&](int64_t b, T* scratch) {
      image_to_columns(xd + (n0 + b) * image, g, scratch, col.data() + b * P, ld);
    });
    // One sample's product is already in NCHW order: write it in place.
    T* dst = nb == 1 ? yd + n0 * Co * P : wide.data();
    parallel_product(Eigen::Map<RowMat<T>>(dst, Co, ld), wm, ConstMap<T>(col.data(), K, ld), false);
    if (nb > 1) wide_to_samples(wide.data(), nb, Co, P, yd + n0 * Co * P);
  }
}

template <class T>
void conv_transpose2d(const Tensor& x, const Tensor& w, Tensor& y, int stride, Pad2d pad) {
  require(x.dim() == 4 && w.dim() == 4 && y.dim() == 4, "conv_transpose2d", "expects 4-D x, w and output");
  const int64_t N = x.size(0), Ci = x.size(1);
  // The conv2d this is the adjoint of: y is its image, x its output grid.
  const ConvGeometry g{w.size(1), y.size(2), y.size(3), w.size(2), w.size(3),
                       x.size(2), x.size(3), stride,    pad.h,     pad.w};
  require(w.size(0) == Ci && y.size(0) == N && y.size(1) == g.C, "conv_transpose2d",
          "x " + x.str() + ", w " + w.str() + ", out " + y.str() + " do not fit together");
  const int64_t K = g.rows(), P = g.cols(), image = g.C * g.H * g.W;
  const T* xd = x.data<T>();
  T* yd = y.data<T>();
  const ConstMap<T> wm(w.data<T>(), Ci, K);
  if (g.dense()) {
    parallel_product(Eigen::Map<RowMat<T>>(yd, N, K), ConstMap<T>(xd, N, Ci), wm, false);
    return;
  }
  if constexpr (std::is_same_v<T, float>) {
    if (cpu::winograd_applies(g.C, Ci, g.H, g.W, g.OH, g.OW, N, g.kh, g.kw, g.stride, g.pad_h, g.pad_w)) {
      const cpu::WinogradConv s{N, g.C, Ci, g.OH, g.OW, cpu::winograd_tile(g.OH, g.OW)};
      Tensor own;
      return cpu::winograd_conv2d_data_grad(s, xd, winograd_weights(w, s, own), yd);
    }
  }
  // Float with xgan's sgemm: the GEMM reads x's samples in place (no reorder into the wide layout).
  bool own_gemm = false;
  if constexpr (std::is_same_v<T, float>) own_gemm = cpu::sgemm_available();
  const int64_t B = chunk_samples(N, K * P);
  Buffer<T> col(K * B * P), wide(B > 1 && !own_gemm ? Ci * B * P : 0);
  for (int64_t n0 = 0; n0 < N; n0 += B) {
    const int64_t nb = std::min(B, N - n0), ld = nb * P;
    if constexpr (std::is_same_v<T, float>) {
      if (own_gemm) fast::transposed_columns(xd, wm.data(), col.data(), g, n0, nb, Ci);
    }
    if (!own_gemm) {
      const T* xs = xd + n0 * Ci * P;
      if (nb > 1) {
        samples_to_wide(xs, nb, Ci, P, wide.data());
        xs = wide.data();
      }
      parallel_product(Eigen::Map<RowMat<T>>(col.data(), K, ld), wm.transpose(), ConstMap<T>(xs, Ci, ld),
                       false);
    }
    for_each_sample<T>(nb, g.scratch_size(), [&](int64_t b, T* scratch) {
      columns_to_image(col.data() + b * P, ld, g, scratch, yd + (n0 + b) * image);
    });
  }
}

template <class T>
void conv2d_weight_grad(const Tensor& x, const Tensor& dy, Tensor& dw, int stride, Pad2d pad) {
  require(x.dim() == 4 && dy.dim() == 4 && dw.dim() == 4, "conv2d_weight_grad",
          "expects 4-D x, dy and output");
  const int64_t N = x.size(0), Co = dy.size(1);
  const ConvGeometry g{x.size(1),  x.size(2),  x.size(3), dw.size(2), dw.size(3),
                       dy.size(2), dy.size(3), stride,    pad.h,      pad.w};
  require(dy.size(0) == N && dw.size(0) == Co && dw.size(1) == g.C, "conv2d_weight_grad",
          "x " + x.str() + ", dy " + dy.str() + ", out " + dw.str() + " do not fit together");
  const int64_t K = g.rows(), P = g.cols(), image = g.C * g.H * g.W;
  const T* xd = x.data<T>();
  const T* dyd = dy.data<T>();
  Eigen::Map<RowMat<T>> dwm(dw.data<T>(), Co, K);
  if (g.dense()) {
    parallel_product(dwm, ConstMap<T>(dyd, N, Co).transpose(), ConstMap<T>(xd, N, K), false);
    return;
  }
  if constexpr (std::is_same_v<T, float>) {
    if (cpu::winograd_applies(g.C, Co, g.H, g.W, g.OH, g.OW, N, g.kh, g.kw, g.stride, g.pad_h, g.pad_w))
      return cpu::winograd_conv2d_weight_grad({N, g.C, Co, g.OH, g.OW, cpu::winograd_tile(g.OH, g.OW)}, xd,
                                              dyd, dw.data<T>());
    if (cpu::sgemm_available()) return fast::conv2d_weight_grad(xd, dyd, dw.data<T>(), g, N, Co);
  }
  // The sum over samples is the GEMM's inner dimension, so there is nothing to race on and the
  // GEMM is deep; chunks (large images only) add up in a fixed order.
  dwm.setZero();
  const int64_t B = chunk_samples(N, K * P);
  Buffer<T> col(K * B * P), wide(B > 1 ? Co * B * P : 0);
  for (int64_t n0 = 0; n0 < N; n0 += B) {
    const int64_t nb = std::min(B, N - n0), ld = nb * P;
    for_each_sample<T>(nb, g.scratch_size(), [&](int64_t b, T* scratch) {
      image_to_columns(xd + (n0 + b) * image, g, scratch, col.data() + b * P, ld);
    });
    const T* dys = dyd + n0 * Co * P;
    if (nb > 1) {
      samples_to_wide(dys, nb, Co, P, wide.data());
      dys = wide.data();
    }
    parallel_product(dwm, ConstMap<T>(dys, Co, ld), ConstMap<T>(col.data(), K, ld).transpose(), true);
  }
}

}  // namespace

void Conv2d::eval_cpu(const std::vector<Tensor>& in, Tensor& out) {
  require_stride_pad(stride, pad, "conv2d");
  require(in.size() == 2, "conv2d", "expects inputs (x, w)");
  cpu::dispatch_float(out.dtype(), "conv2d",
                      [&](auto t) { conv2d<decltype(t)>(in[0], in[1], out, stride, pad); });
}

void ConvTranspose2d::eval_cpu(const std::vector<Tensor>& in, Tensor& out) {
  require_stride_pad(stride, pad, "conv_transpose2d");
  require(in.size() == 2, "conv_transpose2d", "expects inputs (x, w)");
  cpu::dispatch_float(out.dtype(), "conv_transpose2d",
                      [&](auto t) { conv_transpose2d<decltype(t)>(in[0], in[1], out, stride, pad); });
}

void Conv2dWeightGrad::eval_cpu(const std::vector<Tensor>& in, Tensor& out) {
  require_stride_pad(stride, pad, "conv2d_weight_grad");
  require(in.size() == 2, "conv2d_weight_grad", "expects inputs (x, dy)");
  require(out.dim() == 4 && out.size(2) == kh && out.size(3) == kw, "conv2d_weight_grad",
          "output " + out.str() + " does not match the kernel size");
  cpu::dispatch_float(out.dtype(), "conv2d_weight_grad",
                      [&](auto t) { conv2d_weight_grad<decltype(t)>(in[0], in[1], out, stride, pad); });
}

void cpu::drop_parameter_forms() { t_parameter_forms.clear(); }

}  // namespace xgan
