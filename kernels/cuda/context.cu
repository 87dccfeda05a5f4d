// The CUDA backend's runtime: the xgan stream, the cuBLAS/cuDNN handles, the stream-ordered
// caching allocator, explicit host<->device copies and the device query.
//
// Allocator (after PyTorch's CUDACachingAllocator, much simplified): block sizes are rounded up
// (512 B steps below 1 MiB, quarter-power-of-two steps above, so a freed block fits later
// requests of about the same size); a freed block goes to a free list by size and is handed out
// again without cudaFree/cudaMalloc. Everything runs on one stream, so a block freed on the host
// while kernels that use it are still queued can be reused at once: the next user's kernels are
// queued behind them. On out-of-memory the cache is returned to the driver and the allocation
// retried once; then the error names the request and the bytes in use and cached.
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <unordered_map>

#include "engine/backend.h"
#include "engine/primitives.h"
#include "kernels/cuda/common.cuh"

namespace xgan {
namespace cuda {

const char* cublas_status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS:
      return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH:
      return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR:
      return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR:
      return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "CUBLAS_STATUS_NOT_SUPPORTED";
    default:
      return "unknown cuBLAS status";
  }
}

namespace {

// Created once and never destroyed: tensors freed during static destruction only go back to the
// free list, and the driver reclaims everything at exit.
struct Runtime {
  std::once_flag stream_once, cublas_once, cudnn_once;
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;
  cudnnHandle_t cudnn = nullptr;
  void* cublas_workspace = nullptr;
};
Runtime& runtime() {
  static Runtime* r = new Runtime;
  return *r;
}

constexpr size_t kSmallLimit = size_t{1} << 20;

size_t round_size(size_t bytes) {
  if (bytes <= kSmallLimit) return (bytes + 511) / 512 * 512;
  size_t p = size_t{1} << 20;
  while (p * 2 <= bytes) p *= 2;
  const size_t step = p / 4;
  return (bytes + step - 1) / step * step;
}

std::string mib(size_t b) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(b) / (1024.0 * 1024.0));
  return buf;
}

// XGAN_CUDA_NO_CACHE=1 turns the cache off (exact-size cudaMalloc/cudaFree per tensor), so
// compute-sanitizer sees every out-of-bounds access instead of one landing in a rounded-up block.
bool cache_disabled() {
  static const bool off = [] {
    const char* e = std::getenv("XGAN_CUDA_NO_CACHE");
    return e && *e && std::string(e) != "0";
  }();
  return off;
}

class CachingAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes) override {
    const size_t size = cache_disabled() ? bytes : round_size(bytes);
    std::lock_guard<std::mutex> lock(mu_);
    // This size class or the next (at most 25% more): bigger blocks stay for bigger requests.
    auto it = free_.lower_bound(size);
    if (it != free_.end() && it->first <= size + size / 4 && !cache_disabled()) {
      void* p = it->second;
      const size_t got = it->first;
      free_.erase(it);
      cached_ -= got;
      in_use_ += got;
      live_[p] = got;
      return p;
    }
    void* p = nullptr;
    const size_t cached_before = cached_;
    cudaError_t e = cudaMalloc(&p, size);
    if (e == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();  // clear it; the retry decides
      release_cache_locked();
      e = cudaMalloc(&p, size);
    }
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      (void)cudaMemGetInfo(&free_b, &total_b);
      throw std::runtime_error("CUDA out of memory: cannot allocate " + std::to_string(bytes) + " bytes (" +
                               mib(size) + " block) on the GPU: " + cudaGetErrorString(e) + "; xgan holds " +
                               mib(in_use_) + " in tensors and had " + mib(cached_before) +
                               " cached (returned to the driver before one retry); the device has " +
                               mib(free_b) + " free of " + mib(total_b) +
                               ". Use a smaller --batch or --width.");
    }
    in_use_ += size;
    live_[p] = size;
    return p;
  }

  void deallocate(void* ptr, size_t) override {
    if (!ptr) return;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = live_.find(ptr);
    if (it == live_.end()) return;  // not ours: nothing sensible to do in a destructor
    const size_t size = it->second;
    live_.erase(it);
    in_use_ -= size;
    if (cache_disabled()) {
      // Queued kernels may still use the block: wait for them first (debugging mode only).
      if (cudaStreamSynchronize(stream()) == cudaSuccess) (void)cudaFree(ptr);
      return;
    }
    cached_ += size;
    free_.emplace(size, ptr);
  }

  void release_cache() {
    std::lock_guard<std::mutex> lock(mu_);
    release_cache_locked();
  }

  MemoryStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    return {in_use_, cached_};
  }

 private:
  void release_cache_locked() {
    if (free_.empty()) return;
    // Queued kernels may still read cached blocks (freed on the host, in use on the stream).
    XGAN_CUDA_CHECK(cudaStreamSynchronize(stream()));
    for (auto& [size, p] : free_) XGAN_CUDA_CHECK(cudaFree(p));
    free_.clear();
    cached_ = 0;
  }

  std::mutex mu_;
  std::multimap<size_t, void*> free_;       // cached blocks by size
  std::unordered_map<void*, size_t> live_;  // handed-out blocks and their sizes
  size_t in_use_ = 0, cached_ = 0;
};

CachingAllocator& caching_allocator() {
  static CachingAllocator* a = new CachingAllocator;  // never destroyed, as Runtime
  return *a;
}

}  // namespace

cudaStream_t stream() {
  Runtime& r = runtime();
  std::call_once(r.stream_once,
                 [&] { XGAN_CUDA_CHECK(cudaStreamCreateWithFlags(&r.stream, cudaStreamNonBlocking)); });
  return r.stream;
}

cublasHandle_t cublas_handle() {
  Runtime& r = runtime();
  std::call_once(r.cublas_once, [&] {
    XGAN_CUBLAS_CHECK(cublasCreate(&r.cublas));
    XGAN_CUBLAS_CHECK(cublasSetStream(r.cublas, stream()));
    // Plain FP32 arithmetic (no TF32), so the CPU reference and the GPU agree to float rounding.
    XGAN_CUBLAS_CHECK(cublasSetMathMode(r.cublas, CUBLAS_DEFAULT_MATH));
    // A workspace of our own, so cuBLAS never allocates behind the stream's back (graph capture).
    constexpr size_t kWorkspace = size_t{32} << 20;
    r.cublas_workspace = caching_allocator().allocate(kWorkspace);
    XGAN_CUBLAS_CHECK(cublasSetWorkspace(r.cublas, r.cublas_workspace, kWorkspace));
  });
  return r.cublas;
}

cudnnHandle_t cudnn_handle() {
  Runtime& r = runtime();
  std::call_once(r.cudnn_once, [&] {
    XGAN_CUDNN_CHECK(cudnnCreate(&r.cudnn));
    XGAN_CUDNN_CHECK(cudnnSetStream(r.cudnn, stream()));
  });
  return r.cudnn;
}

Scratch::Scratch(size_t bytes) : bytes_(bytes) {
  if (bytes_ > 0) ptr_ = caching_allocator().allocate(bytes_);
}
Scratch::~Scratch() {
  if (ptr_) caching_allocator().deallocate(ptr_, bytes_);
}

BroadcastIndex broadcast_index(const char* op, const Shape& out, const Shape& a, const Shape& b) {
  if (out.size() > static_cast<size_t>(kMaxDims))
    fail(op, "supports at most " + std::to_string(kMaxDims) + " dims, got " + shape_str(out));
  BroadcastIndex bi;
  bi.nd = static_cast<int>(out.size());
  const Shape* ins[2] = {&a, &b};
  for (int w = 0; w < 2; ++w) {
    const Shape& in = *ins[w];
    int64_t s = 1;
    for (size_t k = 0; k < in.size(); ++k) {
      const size_t i = in.size() - 1 - k, o = out.size() - 1 - k;
      bi.stride[w][o] = in[i] == 1 ? 0 : s;
      s *= in[i];
    }
  }
  for (int k = 0; k < bi.nd; ++k) bi.size[k] = out[static_cast<size_t>(k)];
  return bi;
}

MemoryStats memory_stats() { return caching_allocator().stats(); }
void empty_cache() { caching_allocator().release_cache(); }
void synchronize() { XGAN_CUDA_CHECK(cudaStreamSynchronize(stream())); }

// Copies are ordered on the xgan stream like the kernels. From the host: the source is staged
// before cudaMemcpyAsync returns, so the caller may free it. To the host: waits for the stream,
// since the caller reads the bytes next.
void copy_to_device(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  XGAN_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream()));
}
void copy_to_host(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  XGAN_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream()));
  XGAN_CUDA_CHECK(cudaStreamSynchronize(stream()));
}
void copy_device_to_device(void* dst, const void* src, size_t bytes) {
  if (bytes == 0 || dst == src) return;
  XGAN_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream()));
}

bool compiled() { return true; }
int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // no driver or no GPU: not an error here
    return 0;
  }
  return n;
}
std::string device_name() {
  if (device_count() == 0) return "";
  cudaDeviceProp p{};
  XGAN_CUDA_CHECK(cudaGetDeviceProperties(&p, 0));
  return p.name;
}

}  // namespace cuda

Allocator& cuda_allocator() { return cuda::caching_allocator(); }

// A reshape is a view (engine/ops.cpp); a forward is only ever a plain copy.
void Reshape::eval_cuda(const std::vector<Tensor>& in, Tensor& out) { out.copy_(in[0]); }

}  // namespace xgan
