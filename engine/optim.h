// Adam, with PyTorch 1.13's update rule (torch.optim.Adam, single-tensor path, amsgrad off):
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// weight_decay adds wd * p to g first (PyTorch's L2 form). Scalars are computed in double, as
// Python does, and applied in the parameter's dtype.
#pragma once
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/tensor.h"

namespace xgan {

class Adam {
 public:
  // Requires every param to be a leaf that requires grad.
  Adam(std::vector<Tensor> params, AdamConfig cfg = {});

  // One update of every parameter whose .grad is defined (others are skipped, as in PyTorch).
  void step();
  // Drops every parameter's .grad (PyTorch's set_to_none=True).
  void zero_grad();

  const AdamConfig& config() const { return cfg_; }
  const std::vector<Tensor>& params() const { return params_; }
  // State for checkpoints: per parameter i, exp_avg m[i], exp_avg_sq v[i] and its step count.
  std::vector<Tensor>& exp_avg() { return m_; }
  std::vector<Tensor>& exp_avg_sq() { return v_; }
  std::vector<int64_t>& steps() { return steps_; }

 private:
  std::vector<Tensor> params_;
  AdamConfig cfg_;
  std::vector<Tensor> m_, v_;
  std::vector<int64_t> steps_;
};

}  // namespace xgan
