// Built when CUDA is off (XGAN_CUDA=OFF or no nvcc): every CUDA entry point throws with its name,
// so a CPU-only build links and a `--device cuda` request fails with a clear message.
#include <stdexcept>
#include <string>

#include "engine/backend.h"
#include "engine/primitives.h"

namespace xgan {
namespace {
[[noreturn]] void no_cuda(const char* what) {
  throw std::runtime_error(
      std::string(what) +
      ": xgan was built without CUDA (configure with -DXGAN_CUDA=ON on a machine with nvcc)");
}
}  // namespace

#define XGAN_OP(Class, name) \
  void Class::eval_cuda(const std::vector<Tensor>&, Tensor&) { no_cuda(#name); }
#include "engine/ops.def"

Allocator& cuda_allocator() { no_cuda("cuda allocator"); }

namespace cuda {
void fill(Tensor&, double) { no_cuda("fill"); }
void cast(const Tensor&, Tensor&) { no_cuda("cast"); }
void add_inplace(Tensor&, const Tensor&) { no_cuda("add_inplace"); }
void adam_step(Tensor&, const Tensor&, Tensor&, Tensor&, int64_t, const AdamConfig&) { no_cuda("adam_step"); }
void random_normal(Tensor&, uint64_t, uint64_t, double, double) { no_cuda("random_normal"); }
void random_uniform(Tensor&, uint64_t, uint64_t, double, double) { no_cuda("random_uniform"); }
void xai_guidance(const Tensor&, const Tensor&, bool, bool, Tensor&, Tensor&) { no_cuda("xai_guidance"); }
void deeplift_rescale(const Tensor&, const Tensor&, DeepLiftNonlinearity, double, Tensor&) {
  no_cuda("deeplift_rescale");
}
void copy_to_device(void*, const void*, size_t) { no_cuda("copy_to_device"); }
void copy_to_host(void*, const void*, size_t) { no_cuda("copy_to_host"); }
void copy_device_to_device(void*, const void*, size_t) { no_cuda("copy_device_to_device"); }
MemoryStats memory_stats() { return {}; }
void empty_cache() {}
void synchronize() {}
bool compiled() { return false; }
int device_count() { return 0; }
std::string device_name() { return ""; }
}  // namespace cuda
}  // namespace xgan
