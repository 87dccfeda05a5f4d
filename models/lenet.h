// The offline metrics' classifier: a small LeNet-style net trained by xgan itself on an
// MNIST-family data set (`xgan train-classifier`). Its 128-d penultimate activations are the
// features of "FID-LeNet" and its 10 logits give "IS-LeNet" (docs/metrics.md), so scores need no
// downloaded Inception weights. Tested by tests/test_lenet.cpp.
//   input [N, C, 32, 32] in [-1, 1] (the data pipeline's format, train/data.h)
//   conv1 5x5 C->32 (+bias) ReLU, max pool 2  -> [N, 32, 14, 14]
//   conv2 5x5 32->64 (+bias) ReLU, max pool 2 -> [N, 64, 5, 5]
//   fc1 1600->128 ReLU (the features), fc2 128->10 (the logits)
// Names are those of a PyTorch module with attributes conv1, conv2, fc1, fc2, so the weights load
// into such a module with load_state_dict.
#pragma once
#include <map>
#include <string>

#include "engine/rng.h"
#include "engine/tensor.h"
#include "models/gan.h"

namespace xgan {

struct LenetOutput {
  Tensor features;  // [N, 128], after fc1's ReLU
  Tensor logits;    // [N, 10]
};

class Lenet : public Module {
 public:
  static constexpr int kImageSize = 32;
  static constexpr int kFeatures = 128;
  static constexpr int kClasses = 10;
  // The metadata key of the JSON a saved file carries (data set, test accuracy, ...).
  static constexpr const char* kMetadataKey = "xgan-lenet";

  explicit Lenet(int channels = 1);
  // PyTorch's default nn.Conv2d / nn.Linear initialisation: weight and bias ~ U(-b, b) with
  // b = 1 / sqrt(fan_in) (kaiming_uniform with a = sqrt(5) reduces to that bound).
  void init(Generator& rng);

  // Requires x [N, channels, 32, 32] of the module's dtype and device. Records for autograd
  // unless a NoGradGuard is active.
  LenetOutput forward(const Tensor& x) const;
  int channels() const { return channels_; }

  // Writes the weights (float32) and `info` (a JSON object string, stored under kMetadataKey)
  // to path atomically (temporary file, then rename).
  void save(const std::string& path, const std::string& info = "{}") const;
  // Reads a file written by save(). A missing file says how to make one; a file with other
  // tensors or shapes raises one error listing every missing, unexpected and mismatched tensor.
  // `info` (if given) receives the stored JSON string ("{}" when absent).
  static Lenet load(const std::string& path, Device device = kCPU, std::string* info = nullptr);

 private:
  int channels_;
};

}  // namespace xgan
