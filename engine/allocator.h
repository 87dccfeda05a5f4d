// Allocators hand out raw device memory for tensor storage.
// The CPU allocator returns 64-byte aligned blocks (AVX-512 friendly, one cache line). The CUDA
// allocator (kernels/cuda) is a stream-ordered caching allocator; without CUDA it throws.
#pragma once
#include <cstddef>

#include "engine/dtype.h"

namespace xgan {

class Allocator {
 public:
  virtual ~Allocator() = default;
  // Requires bytes > 0. Ensures a block of at least `bytes`, aligned to 64, or throws.
  virtual void* allocate(size_t bytes) = 0;
  virtual void deallocate(void* ptr, size_t bytes) = 0;
};

Allocator& cpu_allocator();
Allocator& cuda_allocator();  // defined by the CUDA backend (a stub that throws without CUDA)
Allocator& allocator_for(Device d);

}  // namespace xgan
