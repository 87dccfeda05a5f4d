// Error checking for every CUDA runtime, cuBLAS and cuDNN call: the failing expression, file and
// line go into the exception message, so a failure deep in a training run says exactly which call
// broke. Kernel launches are checked with XGAN_CUDA_CHECK(cudaGetLastError()) right after them.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <stdexcept>
#include <string>

namespace xgan::cuda {
[[noreturn]] inline void throw_call_error(const char* lib, const char* what, const char* expr,
                                          const char* file, int line) {
  throw std::runtime_error(std::string(lib) + " error: " + what + " in " + expr + " at " + file + ":" +
                           std::to_string(line));
}
const char* cublas_status_name(cublasStatus_t s);  // kernels/cuda/context.cu
}  // namespace xgan::cuda

#define XGAN_CUDA_CHECK(expr)                                                                           \
  do {                                                                                                  \
    cudaError_t xgan_err_ = (expr);                                                                     \
    if (xgan_err_ != cudaSuccess)                                                                       \
      ::xgan::cuda::throw_call_error("CUDA", cudaGetErrorString(xgan_err_), #expr, __FILE__, __LINE__); \
  } while (0)

#define XGAN_CUBLAS_CHECK(expr)                                                                             \
  do {                                                                                                      \
    cublasStatus_t xgan_st_ = (expr);                                                                       \
    if (xgan_st_ != CUBLAS_STATUS_SUCCESS)                                                                  \
      ::xgan::cuda::throw_call_error("cuBLAS", ::xgan::cuda::cublas_status_name(xgan_st_), #expr, __FILE__, \
                                     __LINE__);                                                             \
  } while (0)

#define XGAN_CUDNN_CHECK(expr)                                                                           \
  do {                                                                                                   \
    cudnnStatus_t xgan_st_ = (expr);                                                                     \
    if (xgan_st_ != CUDNN_STATUS_SUCCESS)                                                                \
      ::xgan::cuda::throw_call_error("cuDNN", cudnnGetErrorString(xgan_st_), #expr, __FILE__, __LINE__); \
  } while (0)
