// Adam (engine/optim.h): per-parameter state and the device dispatch of the update kernel
// (kernels/*/adam). The kernels write storage directly, so updates are never recorded by autograd.
// Tested by tests/test_adam.cpp and the PyTorch golden test.
#include "engine/optim.h"

#include <stdexcept>
#include <string>

namespace xgan {

namespace {
void check_config(const AdamConfig& c) {
  // The bounds torch.optim.Adam checks, with its wording.
  auto bad = [](const std::string& what, double x) {
    throw std::invalid_argument("Adam: invalid " + what + ": " + std::to_string(x));
  };
  if (!(c.lr >= 0.0)) bad("learning rate", c.lr);
  if (!(c.eps >= 0.0)) bad("epsilon value", c.eps);
  if (!(c.beta1 >= 0.0 && c.beta1 < 1.0)) bad("beta parameter at index 0", c.beta1);
  if (!(c.beta2 >= 0.0 && c.beta2 < 1.0)) bad("beta parameter at index 1", c.beta2);
  if (!(c.weight_decay >= 0.0)) bad("weight_decay value", c.weight_decay);
}
}  // namespace

Adam::Adam(std::vector<Tensor> params, AdamConfig cfg) : params_(std::move(params)), cfg_(cfg) {
  check_config(cfg_);
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    const std::string which = "Adam: parameter " + std::to_string(i);
    if (!p.defined()) throw std::invalid_argument(which + " is undefined");
    if (!p.is_leaf()) throw std::invalid_argument(which + " (" + p.str() + ") is not a leaf tensor");
    if (!p.requires_grad()) throw std::invalid_argument(which + " (" + p.str() + ") does not require grad");
    if (p.dtype() != DType::f32 && p.dtype() != DType::f64)
      throw std::invalid_argument(which + " (" + p.str() + ") is not float32 or float64");
  }
  m_.reserve(params_.size());
  v_.reserve(params_.size());
  for (const Tensor& p : params_) {
    m_.push_back(zeros_like(p));
    v_.push_back(zeros_like(p));
  }
  steps_.assign(params_.size(), 0);
}

void Adam::step() {
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor g = params_[i].grad();
    if (!g.defined()) continue;  // as PyTorch: a parameter without a gradient keeps its state
    // The kernel checks shapes, dtypes and devices; the count moves only once it has succeeded.
    const int64_t step = steps_[i] + 1;
    if (params_[i].device().is_cpu())
      cpu::adam_step(params_[i], g, m_[i], v_[i], step, cfg_);
    else
      cuda::adam_step(params_[i], g, m_[i], v_[i], step, cfg_);
    steps_[i] = step;
  }
}

void Adam::zero_grad() {
  for (Tensor& p : params_) p.zero_grad();
}

}  // namespace xgan
