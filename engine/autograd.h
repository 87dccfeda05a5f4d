// Reverse-mode autodiff over the tape of recorded ops, with PyTorch's API shape:
// backward(loss) accumulates into the .grad of leaves; grad(outputs, inputs) returns gradients
// without touching .grad; create_graph=true records the backward itself, so it can be
// differentiated again (the WGAN-GP penalty needs that).
#pragma once
#include <functional>
#include <vector>

#include "engine/tensor.h"

namespace xgan {

// Whether ops record themselves on the tape (per thread; on by default).
struct GradMode {
  static bool enabled();
  static void set_enabled(bool on);
};

// Disables recording for its scope (like torch.no_grad()).
class NoGradGuard {
 public:
  NoGradGuard() : prev_(GradMode::enabled()) { GradMode::set_enabled(false); }
  ~NoGradGuard() { GradMode::set_enabled(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool prev_;
};

class Op;
// A custom backward rule for some ops, active for the backward passes run in its scope (per
// thread). It is asked first for every op: returning true with `grads` filled (one entry per
// input, undefined where !need) replaces the op's vjp; returning false keeps the op's own.
// DeepLIFT uses this to swap each nonlinearity's derivative for its rescale multiplier.
using VjpOverride =
    std::function<bool(const Op& op, const std::vector<Tensor>& inputs, const Tensor& grad_out,
                       const std::vector<bool>& need, std::vector<Tensor>& grads)>;
class VjpOverrideGuard {
 public:
  explicit VjpOverrideGuard(VjpOverride rule);
  ~VjpOverrideGuard();
  VjpOverrideGuard(const VjpOverrideGuard&) = delete;
  VjpOverrideGuard& operator=(const VjpOverrideGuard&) = delete;

 private:
  VjpOverride prev_;
};

// Accumulates d(sum_i <outputs[i], grad_outputs[i]>)/d(leaf) into leaf.grad for every leaf that
// requires grad. An empty grad_outputs means ones (outputs must then be scalars).
// With create_graph the accumulated gradients carry history.
void backward(const std::vector<Tensor>& outputs, const std::vector<Tensor>& grad_outputs = {},
              bool create_graph = false);
inline void backward(const Tensor& loss) { backward(std::vector<Tensor>{loss}); }

// Returns d(sum_i <outputs[i], grad_outputs[i]>)/d(inputs[j]) for each j; inputs may be leaves or
// intermediate tensors. An input that does not influence the outputs is an error unless
// allow_unused, in which case its gradient is a zero tensor.
std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& inputs,
                         const std::vector<Tensor>& grad_outputs = {}, bool create_graph = false,
                         bool allow_unused = false);

}  // namespace xgan
