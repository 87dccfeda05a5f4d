// The CPU allocator: aligned operator new/delete for small blocks, and a cache of large blocks.
// A training iteration frees and re-allocates the same large activation and column buffers every
// time; glibc hands blocks this big to mmap/munmap, so each one came back as fresh pages that the
// kernel had to fault in and zero (about 2% of an iteration in a profile). Large blocks are kept
// on a free list per exact size instead, and reused by the next request of that size.
#include "engine/allocator.h"

#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

namespace xgan {
namespace {

class CpuAllocator final : public Allocator {
 public:
  void* allocate(size_t bytes) override {
    if (bytes >= kCacheMin) {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = free_.find(bytes);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached_ -= bytes;
        return p;
      }
    }
    try {
      return ::operator new (bytes, std::align_val_t{64});
    } catch (const std::bad_alloc&) {
      trim();  // the cache may hold what is missing
      try {
        return ::operator new (bytes, std::align_val_t{64});
      } catch (const std::bad_alloc&) {
        throw std::runtime_error("out of host memory allocating " + std::to_string(bytes) + " bytes");
      }
    }
  }

  void deallocate(void* ptr, size_t bytes) override {
    if (bytes >= kCacheMin) {
      std::lock_guard<std::mutex> lock(mu_);
      if (cached_ + bytes <= kCacheMax) {
        free_[bytes].push_back(ptr);
        cached_ += bytes;
        return;
      }
    }
    release(ptr);
  }

 private:
  static void release(void* p) { ::operator delete (p, std::align_val_t{64}); }
  void trim() {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [bytes, blocks] : free_)
      for (void* p : blocks) release(p);
    free_.clear();
    cached_ = 0;
  }

  // Below 256 KiB glibc's own free lists already reuse blocks; the cap bounds what an unusual
  // run (many distinct sizes) can hold on to.
  static constexpr size_t kCacheMin = size_t{256} << 10;
  static constexpr size_t kCacheMax = size_t{2} << 30;
  std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;
  size_t cached_ = 0;
};

}  // namespace

Allocator& cpu_allocator() {
  // Never destroyed: tensors in other static objects may be freed after it would have been.
  static CpuAllocator* a = new CpuAllocator;
  return *a;
}

Allocator& allocator_for(Device d) { return d.is_cpu() ? cpu_allocator() : cuda_allocator(); }

}  // namespace xgan
