// CUDA reductions (sum, max over any set of dims) and softmax along one dim.
// A reduction maps each output element to a base offset (its kept coordinates) and walks the
// reduced coordinates from there. Many short reductions get one thread each; long ones get a
// block each, reduced in shared memory in a fixed order, so results do not vary from run to run.
// Sums accumulate in double, as on the CPU; only the order of the additions differs.
#include <limits>

#include "engine/primitives.h"
#include "kernels/cuda/common.cuh"

namespace xgan {
namespace {
using namespace cuda;

struct ReduceIndex {
  int nk = 0, nr = 0;
  int64_t ksize[kMaxDims] = {}, kstride[kMaxDims] = {};
  int64_t rsize[kMaxDims] = {}, rstride[kMaxDims] = {};
  __device__ int64_t kept_base(int64_t o) const {
    int64_t off = 0;
    for (int k = nk - 1; k >= 0; --k) {
      off += (o % ksize[k]) * kstride[k];
      o /= ksize[k];
    }
    return off;
  }
  __device__ int64_t reduced_offset(int64_t r) const {
    int64_t off = 0;
    for (int k = nr - 1; k >= 0; --k) {
      off += (r % rsize[k]) * rstride[k];
      r /= rsize[k];
    }
    return off;
  }
};

ReduceIndex reduce_index(const char* op, const Shape& s, const std::vector<int>& dims, int64_t& nout,
                         int64_t& nred) {
  if (s.size() > static_cast<size_t>(kMaxDims))
    fail(op, "supports at most " + std::to_string(kMaxDims) + " dims, got " + shape_str(s));
  ReduceIndex ri;
  std::vector<int64_t> stride(s.size(), 1);
  for (int d = static_cast<int>(s.size()) - 2; d >= 0; --d) stride[d] = stride[d + 1] * s[d + 1];
  nout = 1;
  nred = 1;
  for (int d = 0; d < static_cast<int>(s.size()); ++d) {
    const bool red = std::find(dims.begin(), dims.end(), d) != dims.end();
    if (red) {
      ri.rsize[ri.nr] = s[d];
      ri.rstride[ri.nr++] = stride[d];
      nred *= s[d];
    } else {
      ri.ksize[ri.nk] = s[d];
      ri.kstride[ri.nk++] = stride[d];
      nout *= s[d];
    }
  }
  return ri;
}

struct SumOp {
  template <class T>
  __device__ static double init() {
    return 0.0;
  }
  __device__ static double step(double a, double v) { return a + v; }
};
struct MaxOp {
  template <class T>
  __device__ static T init() {
    return -std::numeric_limits<T>::infinity();
  }
  // NaN propagates, as in torch.amax (and the CPU kernel's step).
  template <class T>
  __device__ static T step(T a, T v) {
    return (v > a || isnan(v)) && !isnan(a) ? v : a;
  }
};

template <class T, class Acc, class R>
__global__ void reduce_per_thread(const T* __restrict__ x, T* __restrict__ o, int64_t nout, int64_t nred,
                                  ReduceIndex ri) {
  XGAN_GRID_STRIDE(out, nout) {
    const T* base = x + ri.kept_base(out);
    Acc acc = R::template init<T>();
    for (int64_t r = 0; r < nred; ++r) acc = R::step(acc, static_cast<Acc>(base[ri.reduced_offset(r)]));
    o[out] = static_cast<T>(acc);
  }
}

template <class T, class Acc, class R>
__global__ void reduce_per_block(const T* __restrict__ x, T* __restrict__ o, int64_t nout, int64_t nred,
                                 ReduceIndex ri) {
  for (int64_t out = blockIdx.x; out < nout; out += gridDim.x) {  // uniform across the block
    const T* base = x + ri.kept_base(out);
    Acc acc = R::template init<T>();
    for (int64_t r = threadIdx.x; r < nred; r += blockDim.x)
      acc = R::step(acc, static_cast<Acc>(base[ri.reduced_offset(r)]));
    acc = block_reduce(acc, [](Acc a, Acc b) { return R::step(a, b); });
    if (threadIdx.x == 0) o[out] = static_cast<T>(acc);
  }
}

// Below this many reduced elements per output, one thread per output beats a block per output.
constexpr int64_t kPerThreadMax = 64;

template <class R, bool kSum>
void run_reduce(const char* op, const std::vector<Tensor>& in, const std::vector<int>& dims, Tensor& out) {
  if (in.size() != 1) fail(op, "expects one input");
  require_cuda(op, {&in[0], &out});
  int64_t nout = 0, nred = 0;
  const ReduceIndex ri = reduce_index(op, in[0].shape(), dims, nout, nred);
  if (nout != out.numel()) fail(op, "output " + out.str() + " does not match " + in[0].str());
  if (nout == 0) return;
  dispatch_float(out.dtype(), op, [&](auto t) {
    using T = decltype(t);
    using Acc = std::conditional_t<kSum, double, T>;
    if (nred <= kPerThreadMax)
      reduce_per_thread<T, Acc, R>
          <<<grid_for(nout), kBlock, 0, stream()>>>(in[0].data<T>(), out.data<T>(), nout, nred, ri);
    else
      reduce_per_block<T, Acc, R>
          <<<static_cast<unsigned>(std::min<int64_t>(nout, 65535)), kBlock, 0, stream()>>>(
              in[0].data<T>(), out.data<T>(), nout, nred, ri);
  });
  XGAN_LAUNCH_CHECK();
}

// One thread per (outer, inner) line along the softmax dim: max, exp and sum (in double), scale.
template <class T>
__global__ void softmax_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t outer, int64_t along,
                               int64_t inner) {
  XGAN_GRID_STRIDE(idx, outer * inner) {
    const int64_t o = idx / inner, i = idx % inner;
    const T* src = x + o * along * inner + i;
    T* dst = y + o * along * inner + i;
    T m = src[0];
    for (int64_t j = 1; j < along; ++j) {
      const T v = src[j * inner];
      m = m < v ? v : m;  // std::max's rule
    }
    double total = 0;
    for (int64_t j = 0; j < along; ++j) {
      const T e = dexp(src[j * inner] - m);
      dst[j * inner] = e;
      total += e;
    }
    const T r = static_cast<T>(1.0 / total);
    for (int64_t j = 0; j < along; ++j) dst[j * inner] *= r;
  }
}

}  // namespace

void Sum::eval_cuda(const std::vector<Tensor>& in, Tensor& out) {
  run_reduce<SumOp, true>("sum", in, dims, out);
}
void Max::eval_cuda(const std::vector<Tensor>& in, Tensor& out) {
  run_reduce<MaxOp, false>("max", in, dims, out);
}

void Softmax::eval_cuda(const std::vector<Tensor>& in, Tensor& out) {
  const char* op = "softmax";
  if (in.size() != 1 || dim < 0 || dim >= in[0].dim())
    fail(op, "expects one input with dim " + std::to_string(dim));
  require_cuda(op, {&in[0], &out});
  if (in[0].numel() == 0) return;
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < in[0].dim(); ++d) {
    if (d < dim) outer *= in[0].size(d);
    if (d > dim) inner *= in[0].size(d);
  }
  const int64_t along = in[0].size(dim);
  dispatch_float(out.dtype(), op, [&](auto t) {
    using T = decltype(t);
    softmax_kernel<T><<<grid_for(outer * inner), kBlock, 0, stream()>>>(in[0].data<T>(), out.data<T>(), outer,
                                                                        along, inner);
  });
  XGAN_LAUNCH_CHECK();
}

}  // namespace xgan
