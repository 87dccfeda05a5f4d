// The CPU allocator: aligned operator new/delete, nothing cached (glibc already pools small
// blocks and large ones are mmap'd; caching matters on the GPU, not here).
#include "engine/allocator.h"

#include <new>
#include <stdexcept>
#include <string>

namespace xgan {
namespace {

class CpuAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes) override {
    try {
      return ::operator new (bytes, std::align_val_t{64});
    } catch (const std::bad_alloc&) {
      throw std::runtime_error("out of host memory allocating " + std::to_string(bytes) + " bytes");
    }
  }
  void deallocate(void* ptr, size_t) override { ::operator delete (ptr, std::align_val_t{64}); }
};

}  // namespace

Allocator& cpu_allocator() {
  static CpuAllocator a;
  return a;
}

Allocator& allocator_for(Device d) { return d.is_cpu() ? cpu_allocator() : cuda_allocator(); }

}  // namespace xgan
