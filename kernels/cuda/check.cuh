// Error checking for every CUDA runtime call: the failing expression, file and line go into the
// exception message, so a failure deep in a training run says exactly which call broke.
#pragma once
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#define XGAN_CUDA_CHECK(expr)                                                                \
  do {                                                                                       \
    cudaError_t xgan_err_ = (expr);                                                          \
    if (xgan_err_ != cudaSuccess)                                                            \
      throw std::runtime_error(std::string("CUDA error: ") + cudaGetErrorString(xgan_err_) + \
                               " in " #expr " at " __FILE__ ":" + std::to_string(__LINE__)); \
  } while (0)
