// The CUDA backend as it stands: device discovery, explicit copies, a plain device allocator and
// the trivial kernels. Op forwards still throw with the op's name; the CUDA issue replaces them
// with real kernels (cuDNN convolutions, cuBLAS) and the allocator with a caching one.
#include <cstdio>
#include <stdexcept>
#include <string>

#include "engine/backend.h"
#include "engine/primitives.h"
#include "kernels/cuda/check.cuh"

namespace xgan {
namespace {

[[noreturn]] void not_yet(const char* what) {
  throw std::runtime_error(std::string(what) + ": not implemented on CUDA yet (use --device cpu)");
}

// Plain cudaMalloc/cudaFree; the caching, stream-ordered allocator is part of the CUDA issue.
class CudaAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes) override {
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess)
      throw std::runtime_error("CUDA out of memory (or error) allocating " + std::to_string(bytes) +
                               " bytes: " + cudaGetErrorString(e));
    return p;
  }
  void deallocate(void* ptr, size_t) override { cudaFree(ptr); }
};

template <class T>
__global__ void fill_kernel(T* p, int64_t n, T v) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) p[i] = v;
}

template <class T>
__global__ void add_inplace_kernel(T* d, const T* s, int64_t n) {
  int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) d[i] += s[i];
}

constexpr int kBlock = 256;
unsigned grid_for(int64_t n) { return static_cast<unsigned>((n + kBlock - 1) / kBlock); }

}  // namespace

#define XGAN_OP(Class, name) \
  void Class::eval_cuda(const std::vector<Tensor>&, Tensor&) { not_yet(#name); }
#include "engine/ops.def"

Allocator& cuda_allocator() {
  static CudaAllocator a;
  return a;
}

namespace cuda {

void fill(Tensor& t, double value) {
  const int64_t n = t.numel();
  if (n == 0) return;
  switch (t.dtype()) {
    case DType::f32:
      fill_kernel<<<grid_for(n), kBlock>>>(t.data<float>(), n, static_cast<float>(value));
      break;
    case DType::f64:
      fill_kernel<<<grid_for(n), kBlock>>>(t.data<double>(), n, value);
      break;
    case DType::i64:
      fill_kernel<<<grid_for(n), kBlock>>>(t.data<int64_t>(), n, static_cast<int64_t>(value));
      break;
  }
  XGAN_CUDA_CHECK(cudaGetLastError());
  t.bump_version();
}

void add_inplace(Tensor& dst, const Tensor& src) {
  const int64_t n = dst.numel();
  if (n == 0) return;
  if (dst.dtype() == DType::f32)
    add_inplace_kernel<<<grid_for(n), kBlock>>>(dst.data<float>(), src.data<float>(), n);
  else if (dst.dtype() == DType::f64)
    add_inplace_kernel<<<grid_for(n), kBlock>>>(dst.data<double>(), src.data<double>(), n);
  else
    not_yet("add_inplace (int64)");
  XGAN_CUDA_CHECK(cudaGetLastError());
}

void cast(const Tensor&, Tensor&) { not_yet("cast"); }
void adam_step(Tensor&, const Tensor&, Tensor&, Tensor&, int64_t, const AdamConfig&) { not_yet("adam_step"); }
void random_normal(Tensor&, uint64_t, uint64_t, double, double) { not_yet("random_normal"); }
void random_uniform(Tensor&, uint64_t, uint64_t, double, double) { not_yet("random_uniform"); }
void xai_guidance(const Tensor&, const Tensor&, bool, bool, Tensor&, Tensor&) { not_yet("xai_guidance"); }

void copy_to_device(void* dst, const void* src, size_t bytes) {
  XGAN_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}
void copy_to_host(void* dst, const void* src, size_t bytes) {
  XGAN_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}
void copy_device_to_device(void* dst, const void* src, size_t bytes) {
  XGAN_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
}

bool compiled() { return true; }
int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;  // no driver or no GPU: not an error here
  return n;
}
std::string device_name() {
  if (device_count() == 0) return "";
  cudaDeviceProp p{};
  XGAN_CUDA_CHECK(cudaGetDeviceProperties(&p, 0));
  return p.name;
}

}  // namespace cuda
}  // namespace xgan
