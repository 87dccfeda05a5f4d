// The paper's GAN models (the authors' lib/models.py, itself AlexiaJM's DCGAN "arch 0"), built
// for any power-of-two image size >= 16, with PyTorch state_dict names so weights move both ways.
//   G: ConvT(z -> h*s/8, k4 s1 p0) BN ReLU, then ConvT(k4 s2 p1) halving channels + BN + ReLU
//      while the multiplier > 1, then ConvT(-> C, k4 s2 p1) Tanh.
//   D: Conv(C -> h, k4 s2 p1) LeakyReLU(0.2), then Conv(k4 s2 p1) doubling channels + BN +
//      LeakyReLU(0.2) while the map is larger than 4x4, then Conv(-> 1, k4 s1 p0) [+ Sigmoid].
// Names: `main.Start-ConvTranspose2d.weight`, `main.Middle-BatchNorm2d_1.running_mean`, ... (the
// PyTorch key with spaces removed and `[n]` written `_n`; G's middle blocks count from 1, D's
// from 0, as in the original code).
#pragma once
#include <map>
#include <string>
#include <vector>

#include "engine/rng.h"
#include "engine/tensor.h"

namespace xgan {

struct GanConfig {
  int image_size = 32;  // power of two >= 16
  int width = 128;      // h: feature maps of G's last and D's first hidden layer
  int channels = 1;     // 1 (MNIST) or 3 (CIFAR-10)
  int z_dim = 128;
};

// `main.Middle-Conv2d [0].weight` -> `main.Middle-Conv2d_0.weight`; canonical names pass unchanged.
std::string canonical_param_name(const std::string& name);

struct NamedTensor {
  std::string name;
  Tensor tensor;
};

// A list of layers with named parameters and buffers, like an nn.Sequential's state_dict.
class Module {
 public:
  virtual ~Module() = default;
  // Learnable tensors (leaves requiring grad), in state_dict order.
  const std::vector<NamedTensor>& parameters() const { return params_; }
  std::vector<Tensor> parameter_tensors() const;
  // running_mean / running_var (float) and num_batches_tracked (int64), in state_dict order.
  const std::vector<NamedTensor>& buffers() const { return buffers_; }
  // Parameters and buffers by canonical name.
  std::map<std::string, Tensor> state_dict() const;
  // Copies values in (converting dtype; names canonicalised; `prefix` stripped, e.g. "D.").
  // Missing or unexpected tensors and shape mismatches raise one error listing all of them;
  // num_batches_tracked may be absent.
  void load_state_dict(const std::map<std::string, Tensor>& tensors, const std::string& prefix = "");
  // DCGAN initialisation: conv weights ~ N(0, 0.02), BN weight ~ N(1, 0.02), BN bias = 0;
  // running statistics reset to 0 / 1.
  void init_dcgan(Generator& rng);
  // Moves/converts every tensor (parameters stay leaves requiring grad).
  void to(DType dtype, Device device);
  DType dtype() const;
  Device device() const;

 protected:
  Tensor& add_param(const std::string& name, Shape shape);
  Tensor& add_buffer(const std::string& name, Shape shape, DType dtype);
  Tensor& param(const std::string& name);
  Tensor& buffer(const std::string& name);
  // Batch norm of layer `prefix` (e.g. "main.Start-BatchNorm2d"): train mode uses batch
  // statistics and updates running statistics and num_batches_tracked.
  Tensor batch_norm_layer(const std::string& prefix, const Tensor& x, bool train);

  std::vector<NamedTensor> params_;
  std::vector<NamedTensor> buffers_;
};

class GanGenerator : public Module {
 public:
  explicit GanGenerator(const GanConfig& cfg);
  // z: [N, z_dim, 1, 1] -> images [N, C, s, s] in (-1, 1).
  Tensor forward(const Tensor& z, bool train = true);
  const GanConfig& config() const { return cfg_; }

 private:
  GanConfig cfg_;
  int middle_ = 0;  // number of middle blocks
};

class GanDiscriminator : public Module {
 public:
  // sigmoid: DCGAN's D ends in a sigmoid; WGAN-GP and RaGAN output raw logits.
  GanDiscriminator(const GanConfig& cfg, bool sigmoid);
  // x: [N, C, s, s] -> [N] (one score per image).
  Tensor forward(const Tensor& x, bool train = true);
  const GanConfig& config() const { return cfg_; }
  bool has_sigmoid() const { return sigmoid_; }

 private:
  GanConfig cfg_;
  bool sigmoid_;
  int middle_ = 0;
};

// Infers a GanConfig (image size, width, channels, z) from state_dict shapes (`prefix` as above).
GanConfig infer_generator_config(const std::map<std::string, Tensor>& tensors, const std::string& prefix);

}  // namespace xgan
