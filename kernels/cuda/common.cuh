// Shared pieces of the CUDA kernels: the one xgan stream and the cuBLAS/cuDNN handles bound to it,
// launch-size helpers (grid-stride loops, so no launch exceeds the grid limits whatever the
// tensor size), dtype dispatch, broadcast index arithmetic and a block reduction.
// Every kernel in kernels/cuda is launched on cuda::stream(); see docs/cuda.md.
#pragma once
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "engine/tensor.h"
#include "kernels/cuda/check.cuh"

namespace xgan::cuda {

// The stream all xgan GPU work is ordered on (created non-blocking on first use, so nothing
// synchronises with the legacy default stream and an iteration can be captured in a CUDA graph).
cudaStream_t stream();
// Handles bound to stream(), created on first use (cuDNN's creation loads its libraries).
cublasHandle_t cublas_handle();
cudnnHandle_t cudnn_handle();

// Temporary device memory from the caching allocator, returned when the object dies. Safe to
// drop right after enqueueing the kernels that use it: the allocator hands the block out again
// only to work enqueued later on the same stream.
class Scratch {
 public:
  explicit Scratch(size_t bytes);
  ~Scratch();
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  void* get() const { return ptr_; }
  size_t size() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

constexpr int kBlock = 256;  // threads per block of the 1-D kernels (a power of two: block_reduce)
// Blocks for n elements; capped because the kernels loop (grid-stride) over what is left.
inline unsigned grid_for(int64_t n) {
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  return static_cast<unsigned>(std::clamp<int64_t>(blocks, 1, int64_t{1} << 16));
}

#define XGAN_GRID_STRIDE(i, n)                                                           \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

// Checks the launch just made (a bad configuration shows up here, not at the next sync).
#define XGAN_LAUNCH_CHECK() XGAN_CUDA_CHECK(cudaGetLastError())

[[noreturn]] inline void fail(const char* op, const std::string& what) {
  throw std::runtime_error(std::string(op) + " (cuda): " + what);
}

// Calls f(T{}) with T = float or double according to dt.
template <class F>
void dispatch_float(DType dt, const char* op, F&& f) {
  switch (dt) {
    case DType::f32:
      f(float{});
      return;
    case DType::f64:
      f(double{});
      return;
    default:
      fail(op, std::string("unsupported dtype ") + dtype_name(dt));
  }
}

// Requires every tensor to live on the GPU (an op given a CPU tensor here is a dispatch bug).
inline void require_cuda(const char* op, std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts)
    if (!t->defined() || !t->device().is_cuda())
      fail(op, "expects GPU tensors, got " + (t->defined() ? t->str() : std::string("undefined")));
}

// Broadcast arithmetic, passed by value to kernels: output dims and each input's strides
// (0 along broadcast dims), as kernels/cpu/dispatch.h computes them.
constexpr int kMaxDims = 8;
struct BroadcastIndex {
  int nd = 0;
  int64_t size[kMaxDims] = {};
  int64_t stride[2][kMaxDims] = {};
  __host__ __device__ int64_t offset(int which, int64_t idx) const {
    int64_t off = 0;
    for (int k = nd - 1; k >= 0; --k) {
      off += (idx % size[k]) * stride[which][k];
      idx /= size[k];
    }
    return off;
  }
};
BroadcastIndex broadcast_index(const char* op, const Shape& out, const Shape& a, const Shape& b);

// Reduces v over the block (blockDim.x == kBlock) with the associative f; every thread gets the
// result. All threads of the block must call it.
template <class Acc, class F>
__device__ Acc block_reduce(Acc v, F f) {
  __shared__ Acc buf[kBlock];
  buf[threadIdx.x] = v;
  __syncthreads();
  for (int s = kBlock / 2; s > 0; s >>= 1) {
    if (static_cast<int>(threadIdx.x) < s) buf[threadIdx.x] = f(buf[threadIdx.x], buf[threadIdx.x + s]);
    __syncthreads();
  }
  const Acc r = buf[0];
  __syncthreads();  // buf may be reused by the next call
  return r;
}

// Float and double spellings of the math functions, so each kernel is written once.
template <class T>
__device__ __forceinline__ T dexp(T x) {
  if constexpr (std::is_same_v<T, float>)
    return expf(x);
  else
    return exp(x);
}
template <class T>
__device__ __forceinline__ T dlog(T x) {
  if constexpr (std::is_same_v<T, float>)
    return logf(x);
  else
    return log(x);
}
template <class T>
__device__ __forceinline__ T dsqrt(T x) {
  if constexpr (std::is_same_v<T, float>)
    return sqrtf(x);
  else
    return sqrt(x);
}
template <class T>
__device__ __forceinline__ T dpow(T x, T p) {
  if constexpr (std::is_same_v<T, float>)
    return powf(x, p);
  else
    return pow(x, p);
}
template <class T>
__device__ __forceinline__ T dtanh(T x) {
  if constexpr (std::is_same_v<T, float>)
    return tanhf(x);
  else
    return tanh(x);
}
template <class T>
__device__ __forceinline__ T dabs(T x) {
  if constexpr (std::is_same_v<T, float>)
    return fabsf(x);
  else
    return fabs(x);
}

template <class T>
__device__ __forceinline__ T dlog1p(T x) {
  if constexpr (std::is_same_v<T, float>)
    return log1pf(x);
  else
    return log1p(x);
}
template <class T>
__device__ __forceinline__ T dfloor(T x) {
  if constexpr (std::is_same_v<T, float>)
    return floorf(x);
  else
    return floor(x);
}

}  // namespace xgan::cuda
