// CUDA convolutions through cuDNN: conv2d = cudnnConvolutionForward, conv_transpose2d (conv2d's
// adjoint) = cudnnConvolutionBackwardData, conv2d_weight_grad = cudnnConvolutionBackwardFilter.
// Each distinct geometry (kind, dtype, shapes, stride, padding) gets a plan, built once and cached:
// RAII descriptors and an algorithm chosen from cuDNN's heuristics (no trial runs, so building a
// plan never synchronises or allocates behind the allocator's back), preferring deterministic,
// GEMM-like algorithms whose workspace fits the cap (see choose()). float32 runs with
// CUDNN_FMA_MATH, i.e. no TF32 tensor cores, so the GPU agrees with the CPU reference to float
// rounding (TF32 would cost ~3 decimal digits). Cap: XGAN_CUDNN_WORKSPACE_MB (default 512).
#include <cstdlib>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "engine/backend.h"
#include "engine/primitives.h"
#include "kernels/cuda/common.cuh"

namespace xgan {
namespace {
using namespace cuda;

// ---- RAII descriptors --------------------------------------------------------------------------
class TensorDesc {
 public:
  TensorDesc() { XGAN_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d_)); }
  ~TensorDesc() { cudnnDestroyTensorDescriptor(d_); }
  TensorDesc(const TensorDesc&) = delete;
  TensorDesc& operator=(const TensorDesc&) = delete;
  cudnnTensorDescriptor_t get() const { return d_; }

 private:
  cudnnTensorDescriptor_t d_ = nullptr;
};
class FilterDesc {
 public:
  FilterDesc() { XGAN_CUDNN_CHECK(cudnnCreateFilterDescriptor(&d_)); }
  ~FilterDesc() { cudnnDestroyFilterDescriptor(d_); }
  FilterDesc(const FilterDesc&) = delete;
  FilterDesc& operator=(const FilterDesc&) = delete;
  cudnnFilterDescriptor_t get() const { return d_; }

 private:
  cudnnFilterDescriptor_t d_ = nullptr;
};
class ConvDesc {
 public:
  ConvDesc() { XGAN_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&d_)); }
  ~ConvDesc() { cudnnDestroyConvolutionDescriptor(d_); }
  ConvDesc(const ConvDesc&) = delete;
  ConvDesc& operator=(const ConvDesc&) = delete;
  cudnnConvolutionDescriptor_t get() const { return d_; }

 private:
  cudnnConvolutionDescriptor_t d_ = nullptr;
};

// ---- plans -------------------------------------------------------------------------------------
enum class Kind : int { forward, backward_data, backward_filter };
const char* kind_name(Kind k) {
  return k == Kind::forward         ? "conv2d (cudnnConvolutionForward)"
         : k == Kind::backward_data ? "conv_transpose2d (cudnnConvolutionBackwardData)"
                                    : "conv2d_weight_grad (cudnnConvolutionBackwardFilter)";
}

// A geometry in conv2d's terms: image [n, c, h, w], filter [k, c, kh, kw], output [n, k, oh, ow].
struct Geometry {
  int kind, dtype;
  int n, c, h, w, k, kh, kw, oh, ow, stride, ph, pw;
  bool operator==(const Geometry&) const = default;
  std::string str() const {
    return "image [" + std::to_string(n) + ", " + std::to_string(c) + ", " + std::to_string(h) + ", " +
           std::to_string(w) + "], filter [" + std::to_string(k) + ", " + std::to_string(c) + ", " +
           std::to_string(kh) + ", " + std::to_string(kw) + "], output [" + std::to_string(n) + ", " +
           std::to_string(k) + ", " + std::to_string(oh) + ", " + std::to_string(ow) + "], stride " +
           std::to_string(stride) + ", pad " + std::to_string(ph) + "x" + std::to_string(pw);
  }
};
struct GeometryHash {
  size_t operator()(const Geometry& g) const {
    const int v[] = {g.kind, g.dtype, g.n, g.c, g.h, g.w, g.k, g.kh, g.kw, g.oh, g.ow, g.stride, g.ph, g.pw};
    size_t h = 0;
    for (int x : v) h = h * 1000003u ^ std::hash<int>()(x);
    return h;
  }
};

struct Plan {
  TensorDesc image, output;
  FilterDesc filter;
  ConvDesc conv;
  int algo = 0;
  size_t workspace = 0;
};

size_t workspace_cap() {
  static const size_t cap = [] {
    const char* e = std::getenv("XGAN_CUDNN_WORKSPACE_MB");
    const long mb = e ? std::atol(e) : 512;
    return static_cast<size_t>(mb > 0 ? mb : 0) << 20;
  }();
  return cap;
}

// Algorithms that sum the products of a dot product directly (GEMM-like), as the CPU's im2col + GEMM
// does; FFT and Winograd transform the data first and lose a few more digits.
bool direct_sum(Kind kind, int algo) {
  switch (kind) {
    case Kind::forward:
      return algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM ||
             algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM ||
             algo == CUDNN_CONVOLUTION_FWD_ALGO_GEMM || algo == CUDNN_CONVOLUTION_FWD_ALGO_DIRECT;
    case Kind::backward_data:
      return algo == CUDNN_CONVOLUTION_BWD_DATA_ALGO_0 || algo == CUDNN_CONVOLUTION_BWD_DATA_ALGO_1;
    case Kind::backward_filter:
      return algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0 || algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1 ||
             algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3;
  }
  return false;
}

// Picks from cuDNN's heuristic ranking (best first) the first algorithm whose workspace fits the
// cap and that is, in order of preference: deterministic and GEMM-like; GEMM-like; anything.
// Algorithm 0 (GEMM-like, no or little workspace) when nothing qualifies.
template <class Perf>
void choose(const Perf* perf, int count, const Geometry& g, Plan& p,
            const std::function<size_t(int)>& size_of) {
  const size_t cap = workspace_cap();
  const Kind kind = static_cast<Kind>(g.kind);
  for (int pass = 0; pass < 3; ++pass)
    for (int i = 0; i < count; ++i) {
      const Perf& r = perf[i];
      const int algo = static_cast<int>(r.algo);
      if (r.status != CUDNN_STATUS_SUCCESS || r.memory > cap) continue;
      if (pass == 0 && r.determinism != CUDNN_DETERMINISTIC) continue;
      if (pass <= 1 && !direct_sum(kind, algo)) continue;
      if (g.dtype == static_cast<int>(DType::f32) &&
          (r.mathType == CUDNN_TENSOR_OP_MATH || r.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION))
        continue;  // TF32: see the file comment
      p.algo = algo;
      p.workspace = size_of(algo);
      return;
    }
  p.algo = 0;
  p.workspace = size_of(0);
}

std::unique_ptr<Plan> make_plan(const Geometry& g) {
  auto p = std::make_unique<Plan>();
  const bool f32 = g.dtype == static_cast<int>(DType::f32);
  const cudnnDataType_t dt = f32 ? CUDNN_DATA_FLOAT : CUDNN_DATA_DOUBLE;
  XGAN_CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->image.get(), CUDNN_TENSOR_NCHW, dt, g.n, g.c, g.h, g.w));
  XGAN_CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->output.get(), CUDNN_TENSOR_NCHW, dt, g.n, g.k, g.oh, g.ow));
  XGAN_CUDNN_CHECK(cudnnSetFilter4dDescriptor(p->filter.get(), dt, CUDNN_TENSOR_NCHW, g.k, g.c, g.kh, g.kw));
  XGAN_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(p->conv.get(), g.ph, g.pw, g.stride, g.stride, 1, 1,
                                                   CUDNN_CROSS_CORRELATION, dt));
  XGAN_CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv.get(), f32 ? CUDNN_FMA_MATH : CUDNN_DEFAULT_MATH));
  // cuDNN derives the output grid from the image; it must be ours (conv_transpose2d's output
  // padding keeps it so: floor division maps every allowed size back to the same grid).
  int n = 0, k = 0, oh = 0, ow = 0;
  XGAN_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(p->conv.get(), p->image.get(), p->filter.get(), &n,
                                                         &k, &oh, &ow));
  if (n != g.n || k != g.k || oh != g.oh || ow != g.ow)
    fail(kind_name(static_cast<Kind>(g.kind)),
         "cuDNN computes output " + std::to_string(oh) + "x" + std::to_string(ow) + " for " + g.str());
  cudnnHandle_t h = cudnn_handle();
  constexpr int kMaxAlgos = 16;
  int count = 0;
  switch (static_cast<Kind>(g.kind)) {
    case Kind::forward: {
      cudnnConvolutionFwdAlgoPerf_t perf[kMaxAlgos];
      XGAN_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(
          h, p->image.get(), p->filter.get(), p->conv.get(), p->output.get(), kMaxAlgos, &count, perf));
      choose(perf, count, g, *p, [&](int a) {
        size_t s = 0;
        XGAN_CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(
            h, p->image.get(), p->filter.get(), p->conv.get(), p->output.get(),
            static_cast<cudnnConvolutionFwdAlgo_t>(a), &s));
        return s;
      });
      break;
    }
    case Kind::backward_data: {
      cudnnConvolutionBwdDataAlgoPerf_t perf[kMaxAlgos];
      XGAN_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(
          h, p->filter.get(), p->output.get(), p->conv.get(), p->image.get(), kMaxAlgos, &count, perf));
      choose(perf, count, g, *p, [&](int a) {
        size_t s = 0;
        XGAN_CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(
            h, p->filter.get(), p->output.get(), p->conv.get(), p->image.get(),
            static_cast<cudnnConvolutionBwdDataAlgo_t>(a), &s));
        return s;
      });
      break;
    }
    case Kind::backward_filter: {
      cudnnConvolutionBwdFilterAlgoPerf_t perf[kMaxAlgos];
      XGAN_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(
          h, p->image.get(), p->output.get(), p->conv.get(), p->filter.get(), kMaxAlgos, &count, perf));
      choose(perf, count, g, *p, [&](int a) {
        size_t s = 0;
        XGAN_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(
            h, p->image.get(), p->output.get(), p->conv.get(), p->filter.get(),
            static_cast<cudnnConvolutionBwdFilterAlgo_t>(a), &s));
        return s;
      });
      break;
    }
  }
  return p;
}

// The plan cache: one entry per geometry for the life of the process (a GAN has a handful).
const Plan& plan_for(const Geometry& g) {
  static std::mutex mu;
  static auto* cache = new std::unordered_map<Geometry, std::unique_ptr<Plan>, GeometryHash>;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache->find(g);
  if (it == cache->end()) it = cache->emplace(g, make_plan(g)).first;
  return *it->second;
}

int as_int(int64_t v, Kind k, const Tensor& t) {
  if (v > std::numeric_limits<int>::max()) fail(kind_name(k), "tensor " + t.str() + " too large for cuDNN");
  return static_cast<int>(v);
}

// image, filter, output: the tensors in conv2d's roles.
Geometry geometry(Kind kind, const Tensor& image, const Tensor& filter, const Tensor& output, int stride,
                  Pad2d pad) {
  const char* op = kind_name(kind);
  if (image.dim() != 4 || filter.dim() != 4 || output.dim() != 4) fail(op, "expects 4-D tensors");
  if (image.size(0) != output.size(0) || filter.size(0) != output.size(1) || filter.size(1) != image.size(1))
    fail(op, "image " + image.str() + ", filter " + filter.str() + ", output " + output.str() +
                 " do not fit together");
  if (stride < 1 || pad.h < 0 || pad.w < 0) fail(op, "needs stride >= 1 and pad >= 0");
  for (const Tensor* t : {&image, &filter, &output}) as_int(t->numel(), kind, *t);
  auto i = [&](int64_t v) { return static_cast<int>(v); };
  return {static_cast<int>(kind),
          static_cast<int>(output.dtype()),
          i(image.size(0)),
          i(image.size(1)),
          i(image.size(2)),
          i(image.size(3)),
          i(filter.size(0)),
          i(filter.size(2)),
          i(filter.size(3)),
          i(output.size(2)),
          i(output.size(3)),
          stride,
          pad.h,
          pad.w};
}

// alpha = 1, beta = 0 in the type cuDNN wants: double for double data, float otherwise.
struct Scalars {
  float f1 = 1.0f, f0 = 0.0f;
  double d1 = 1.0, d0 = 0.0;
  const void* one(const Geometry& g) const {
    return g.dtype == static_cast<int>(DType::f64) ? (const void*)&d1 : &f1;
  }
  const void* zero(const Geometry& g) const {
    return g.dtype == static_cast<int>(DType::f64) ? (const void*)&d0 : &f0;
  }
};

void require_float(const char* op, const Tensor& t) {
  if (t.dtype() != DType::f32 && t.dtype() != DType::f64)
    fail(op, std::string("unsupported dtype ") + dtype_name(t.dtype()));
}

}  // namespace

void Conv2d::eval_cuda(const std::vector<Tensor>& in, Tensor& out) {
  if (in.size() != 2) fail("conv2d", "expects inputs (x, w)");
  const Tensor &x = in[0], &w = in[1];
  require_cuda("conv2d", {&x, &w, &out});
  require_float("conv2d", out);
  const Geometry g = geometry(Kind::forward, x, w, out, stride, pad);
  if (out.numel() == 0) return;
  if (x.numel() == 0) return cuda::fill(out, 0.0);
  const Plan& p = plan_for(g);
  Scratch ws(p.workspace);
  const Scalars s;
  XGAN_CUDNN_CHECK(cudnnConvolutionForward(cudnn_handle(), s.one(g), p.image.get(), x.raw(), p.filter.get(),
                                           w.raw(), p.conv.get(),
                                           static_cast<cudnnConvolutionFwdAlgo_t>(p.algo), ws.get(),
                                           p.workspace, s.zero(g), p.output.get(), out.raw()));
}

void ConvTranspose2d::eval_cuda(const std::vector<Tensor>& in, Tensor& out) {
  if (in.size() != 2) fail("conv_transpose2d", "expects inputs (x, w)");
  const Tensor &x = in[0], &w = in[1];
  require_cuda("conv_transpose2d", {&x, &w, &out});
  require_float("conv_transpose2d", out);
  // The conv2d this is the adjoint of: out is its image, x its output, w [Ci, Co, kh, kw] its filter.
  const Geometry g = geometry(Kind::backward_data, out, w, x, stride, pad);
  if (out.numel() == 0) return;
  if (x.numel() == 0) return cuda::fill(out, 0.0);
  const Plan& p = plan_for(g);
  Scratch ws(p.workspace);
  const Scalars s;
  XGAN_CUDNN_CHECK(cudnnConvolutionBackwardData(cudnn_handle(), s.one(g), p.filter.get(), w.raw(),
                                                p.output.get(), x.raw(), p.conv.get(),
                                                static_cast<cudnnConvolutionBwdDataAlgo_t>(p.algo), ws.get(),
                                                p.workspace, s.zero(g), p.image.get(), out.raw()));
}

void Conv2dWeightGrad::eval_cuda(const std::vector<Tensor>& in, Tensor& out) {
  if (in.size() != 2) fail("conv2d_weight_grad", "expects inputs (x, dy)");
  const Tensor &x = in[0], &dy = in[1];
  require_cuda("conv2d_weight_grad", {&x, &dy, &out});
  require_float("conv2d_weight_grad", out);
  if (out.dim() != 4 || out.size(2) != kh || out.size(3) != kw)
    fail("conv2d_weight_grad", "output " + out.str() + " does not match the kernel size");
  const Geometry g = geometry(Kind::backward_filter, x, out, dy, stride, pad);
  if (out.numel() == 0) return;
  if (x.numel() == 0 || dy.numel() == 0) return cuda::fill(out, 0.0);
  const Plan& p = plan_for(g);
  Scratch ws(p.workspace);
  const Scalars s;
  XGAN_CUDNN_CHECK(cudnnConvolutionBackwardFilter(
      cudnn_handle(), s.one(g), p.image.get(), x.raw(), p.output.get(), dy.raw(), p.conv.get(),
      static_cast<cudnnConvolutionBwdFilterAlgo_t>(p.algo), ws.get(), p.workspace, s.zero(g), p.filter.get(),
      out.raw()));
}

}  // namespace xgan
