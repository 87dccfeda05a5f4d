// Kernels that are not autograd ops: filling, casting and copying storage, the optimiser update,
// random numbers. Each backend (kernels/cpu, kernels/cuda) implements the same list, declared
// once here; engine/ops.def names them as XGAN_KERNEL lines.
#pragma once
#include <cstdint>
#include <string>

#include "engine/tensor.h"

namespace xgan {

// Adam hyper-parameters, PyTorch's defaults. `step` is the 1-based step count after increment.
struct AdamConfig {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
};

// The nonlinearities DeepLIFT's rescale rule replaces (slope: LeakyReLU's negative slope).
enum class DeepLiftNonlinearity { leaky_relu, sigmoid, tanh };

#define XGAN_BACKEND_KERNELS                                                                       \
  /* every element of t = value */                                                                 \
  void fill(Tensor& t, double value);                                                              \
  /* dst = src converted to dst's dtype; same numel, same device */                                \
  void cast(const Tensor& src, Tensor& dst);                                                       \
  /* dst += src, same shape and dtype: gradient accumulation into .grad */                         \
  void add_inplace(Tensor& dst, const Tensor& src);                                                \
  /* one Adam update of param with grad; m, v are its state; step counts from 1 */                 \
  void adam_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, int64_t step,            \
                 const AdamConfig& cfg);                                                           \
  /* element i gets a draw from Philox4x32-10 with key `seed`, counter `offset + i / k` */         \
  void random_normal(Tensor& t, uint64_t seed, uint64_t offset, double mean, double stddev);       \
  void random_uniform(Tensor& t, uint64_t seed, uint64_t offset, double low, double high);         \
  /* X-GAN's normalise-and-weight, fused: E = 1 + (M - min) / (max - min) over the batch or per    \
     sample (E = 1 where max == min); guided = E * g, or (sum E) * g when as_coded. E and          \
     guided are preallocated like M; M and g have the same shape [N, ...]. */                      \
  void xai_guidance(const Tensor& map, const Tensor& g, bool per_sample, bool as_coded, Tensor& E, \
                    Tensor& guided);                                                               \
  /* DeepLIFT's rescale rule at one nonlinearity f, fused: I is f's input over the 2N batch        \
     [x; x0] (first dim even), G the gradient arriving at f's output; out = G * multiplier, with   \
     multiplier (f(a) - f(b)) / (a - b) for each pair (a in the first half, b at the same place in \
     the second), or f' of the element's own half where |a - b| < 1e-10. All shaped like I. */     \
  void deeplift_rescale(const Tensor& I, const Tensor& G, DeepLiftNonlinearity f, double slope, Tensor& out);

namespace cpu {
XGAN_BACKEND_KERNELS
}
namespace cuda {
XGAN_BACKEND_KERNELS
// Host <-> device copies of raw bytes, ordered on the backend's stream with its kernels.
// copy_to_host returns with the bytes in place; copy_to_device once `src` may be reused.
void copy_to_device(void* dst, const void* src, size_t bytes);
void copy_to_host(void* dst, const void* src, size_t bytes);
void copy_device_to_device(void* dst, const void* src, size_t bytes);
bool compiled();            // true when built with XGAN_CUDA
int device_count();         // 0 when not compiled or no GPU
std::string device_name();  // "" when none
// The caching allocator's bytes handed out to tensors and held in its free lists.
struct MemoryStats {
  size_t in_use = 0, cached = 0;
};
MemoryStats memory_stats();
void empty_cache();  // returns the cached blocks to the driver (waits for the stream first)
void synchronize();  // waits until all queued GPU work is done (timing, tests)
}  // namespace cuda

// Frozen parameters. While a FrozenParameters object lives on a thread, its owner promises that
// every write to a parameter (a leaf tensor that requires grad) goes through the engine and bumps
// the tensor's version (copy_, the optimisers' kernels), never through a raw data<T>() pointer.
// Kernels may then keep forms derived from a parameter's values, checked against its version: the
// CPU's 4x4 stride-2 convolutions keep the Winograd transform of their weights and make it again
// only after a write, so a weight is transformed once per optimiser step instead of once per
// convolution. The outermost scope's end drops them. train_step opens one per half-step; the
// training loops (xgan train, xgan bench) hold one around all their iterations, so D's transform
// from a G step serves the next D step, and G's from a D step the G step after it. Scopes nest.
class FrozenParameters {
 public:
  FrozenParameters();
  ~FrozenParameters();
  FrozenParameters(const FrozenParameters&) = delete;
  FrozenParameters& operator=(const FrozenParameters&) = delete;
  static bool active();  // inside a scope on this thread
};
namespace cpu {
void drop_parameter_forms();  // what the CPU kernels kept for this thread's frozen parameters
// The gradient of training-mode batch norm (batch statistics recomputed from x) in one kernel,
// for backward passes that record no graph; the pointers that are null are skipped, the others
// preallocated (dx like x, dgamma and dbeta [C]). CPU only: elsewhere, and when a graph is
// recorded (WGAN-GP's double backward), BatchNormTrain::vjp composes engine ops.
void batch_norm_train_backward(const Tensor& x, const Tensor& g, const Tensor& gamma, double eps, Tensor* dx,
                               Tensor* dgamma, Tensor* dbeta);
}  // namespace cpu

// Dispatch helpers: run the kernel of the tensor's device.
void fill(Tensor& t, double value);
void cast(const Tensor& src, Tensor& dst);
void add_inplace(Tensor& dst, const Tensor& src);

}  // namespace xgan
