// The FID Inception-v3: the TensorFlow 2015 graph ported to PyTorch by pytorch-fid and
// torch-fidelity (FeatureExtractorInceptionV3), the network FID and IS are computed with.
// Weights come from a file the user supplies (scripts/convert_inception.py, docs/metrics.md).
// Tested against an independent PyTorch build of the network: tests/test_inception.cpp.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace xgan {

class FidInception {
 public:
  // Loads weights from safetensors, keyed by the pytorch-fid / torch-fidelity state_dict names
  // (Conv2d_1a_3x3.conv.weight, Conv2d_1a_3x3.bn.running_var, ..., fc.weight, fc.bias); a
  // num_batches_tracked entry is ignored. A missing file, missing or unexpected tensors and wrong
  // shapes throw one error that lists every tensor that differs (name, expected and found shape).
  // Tensors are converted to float32 on `device`.
  static FidInception load(const std::string& path, Device device = Device{});
  // The same from tensors already in memory (names and shapes as in expected_tensors()).
  static FidInception from_tensors(const std::map<std::string, Tensor>& tensors, Device device = Device{});

  struct Output {
    Tensor pool3;   // [N, 2048], the FID features
    Tensor logits;  // [N, 1008] = pool3 @ fc.weight^T, without fc.bias (what IS uses)
  };
  // images: float32 [N, 1 or 3, H, W] with integer values in [0, 255] (uint8 images; a grey
  // channel is repeated to three), any H and W; resized to 299x299 with TF1's bilinear rule, then
  // (x - 128) / 128. Runs without recording gradients, `batch` images at a time (>= 1).
  // The images are moved to the model's device; the results are float32 there.
  Output forward(const Tensor& images, int64_t batch = 32) const;

  // For tests and debugging: the same run, with torch-fidelity's intermediate features — spatial
  // means after the first max pool ("64"), after the stem ("192") and after Mixed_6e ("768") —
  // next to "2048" (pool3) and "logits_unbiased", so a mismatch can be located by stage.
  std::map<std::string, Tensor> forward_features(const Tensor& images, int64_t batch = 32) const;

  // Every parameter and buffer name with its shape, in the network's order (the loader, the
  // converter and the tests all use this one list).
  static std::vector<std::pair<std::string, Shape>> expected_tensors();

  Device device() const { return device_; }

  // For tests: resize to size x size instead of 299 (>= 75, the smallest input every stride-2
  // stage accepts). Everything before the global pool is convolutional, so a small size runs the
  // same code several times faster (sanitizer builds); only 299 gives the FID features.
  void set_input_size(int64_t size);
  int64_t input_size() const { return input_size_; }

 private:
  // One BasicConv2d: conv (no bias) -> batch norm (inference, eps 0.001) -> ReLU.
  struct Layer {
    Tensor weight, gamma, beta, mean, var;
    int stride = 1;
    int pad_h = 0, pad_w = 0;
  };
  Tensor basic(const std::string& name, const Tensor& x) const;
  Tensor block_a(const std::string& name, const Tensor& x) const;
  Tensor block_b(const std::string& name, const Tensor& x) const;
  Tensor block_c(const std::string& name, const Tensor& x) const;
  Tensor block_d(const std::string& name, const Tensor& x) const;
  Tensor block_e(const std::string& name, const Tensor& x, bool max_pool) const;
  // One chunk of preprocessed [n, 3, 299, 299] images through the network.
  std::map<std::string, Tensor> run(const Tensor& x, bool taps) const;
  std::map<std::string, Tensor> run_chunks(const Tensor& images, int64_t batch, bool taps) const;

  std::map<std::string, Layer> layers_;
  Tensor fc_weight_, fc_bias_;
  Device device_;
  int64_t input_size_ = 299;
};

// TF1's bilinear resize (align_corners=False, no half-pixel centres): output pixel d reads source
// position d * in / out, interpolating between floor and min(floor + 1, in - 1). This is
// torch-fidelity's interpolate_bilinear_2d_like_tensorflow1x, the resize the FID network expects.
// x: float32 or float64 [N, C, H, W] on any device; computed on the host in x's dtype, returned
// on x's device, not recorded for autograd (the metrics never differentiate through it).
Tensor resize_bilinear_tf1(const Tensor& x, int64_t out_h, int64_t out_w);

}  // namespace xgan
