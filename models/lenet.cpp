// The offline metrics' classifier (models/lenet.h): layers, PyTorch-default initialisation, and
// weights files. Tested by tests/test_lenet.cpp (shapes, round trip, error listing, training).
#include "models/lenet.h"

#include <cmath>
#include <filesystem>
#include <stdexcept>

#include "engine/ops.h"
#include "engine/safetensors.h"

namespace xgan {

namespace {

constexpr int kKernel = 5;
constexpr int64_t kConv1 = 32, kConv2 = 64;
// 32 -(conv 5)-> 28 -(pool 2)-> 14 -(conv 5)-> 10 -(pool 2)-> 5.
constexpr int64_t kFlat = kConv2 * 5 * 5;

// Parameter order (the indices forward() reads); the names a PyTorch module would have.
enum Param { kConv1W, kConv1B, kConv2W, kConv2B, kFc1W, kFc1B, kFc2W, kFc2B, kParamCount };

}  // namespace

Lenet::Lenet(int channels) : channels_(channels) {
  if (channels < 1)
    throw std::invalid_argument("Lenet: channels must be >= 1, got " + std::to_string(channels));
  add_param("conv1.weight", {kConv1, channels, kKernel, kKernel});
  add_param("conv1.bias", {kConv1});
  add_param("conv2.weight", {kConv2, kConv1, kKernel, kKernel});
  add_param("conv2.bias", {kConv2});
  add_param("fc1.weight", {kFeatures, kFlat});
  add_param("fc1.bias", {kFeatures});
  add_param("fc2.weight", {kClasses, kFeatures});
  add_param("fc2.bias", {kClasses});
}

void Lenet::init(Generator& rng) {
  // Each weight is followed by its bias; both use the weight's fan-in (in * kh * kw).
  for (size_t i = 0; i < params_.size(); i += 2) {
    const Shape& ws = params_[i].tensor.shape();
    const int64_t fan_in = numel_of(ws) / ws[0];
    const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
    for (size_t j = i; j < i + 2; ++j) {
      Tensor& t = params_[j].tensor;
      t.copy_(rng.uniform(t.shape(), -bound, bound, t.dtype(), t.device()));
    }
  }
}

LenetOutput Lenet::forward(const Tensor& x) const {
  if (x.dim() != 4 || x.size(1) != channels_ || x.size(2) != kImageSize || x.size(3) != kImageSize)
    throw std::invalid_argument("Lenet: images must be [N, " + std::to_string(channels_) + ", " +
                                std::to_string(kImageSize) + ", " + std::to_string(kImageSize) + "], got " +
                                x.str());
  auto p = [this](Param i) -> const Tensor& { return params_[i].tensor; };
  // pool(relu(conv + b)) computed as relu(pool(conv) + b): equal, since a per-channel constant
  // and a monotonic function commute with a window's max, and the broadcast bias add (conv2d has
  // no bias argument) then touches a quarter of the elements; it was a quarter of training time.
  auto block = [&](const Tensor& in, Param w, Param b) {
    return relu(max_pool2d(conv2d(in, p(w)), 2) + reshape(p(b), {1, -1, 1, 1}));
  };
  Tensor h = block(block(x, kConv1W, kConv1B), kConv2W, kConv2B);
  h = reshape(h, {h.size(0), kFlat});
  LenetOutput out;
  out.features = relu(linear(h, p(kFc1W), p(kFc1B)));
  out.logits = linear(out.features, p(kFc2W), p(kFc2B));
  return out;
}

void Lenet::save(const std::string& path, const std::string& info) const {
  std::map<std::string, Tensor> tensors;
  for (const auto& p : params_) tensors[p.name] = p.tensor.to(kCPU).to(DType::f32);
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);
  save_safetensors(path, tensors, {{"format", kMetadataKey}, {kMetadataKey, info}});
}

Lenet Lenet::load(const std::string& path, Device device, std::string* info) {
  if (!std::filesystem::exists(path))
    throw std::runtime_error("LeNet classifier weights " + path +
                             " not found; train them first with: xgan train-classifier --data DIR --out " +
                             path);
  TensorFile file = load_safetensors(path);
  // The channel count comes from conv1's weight; anything else wrong is listed by load_state_dict.
  int channels = 1;
  auto it = file.tensors.find("conv1.weight");
  if (it != file.tensors.end() && it->second.dim() == 4 && it->second.size(1) >= 1)
    channels = static_cast<int>(it->second.size(1));
  Lenet net(channels);
  try {
    net.load_state_dict(file.tensors);
  } catch (const std::exception& e) {
    throw std::runtime_error(path + " is not a LeNet classifier of xgan train-classifier: " + e.what());
  }
  if (info) {
    auto m = file.metadata.find(kMetadataKey);
    *info = m == file.metadata.end() ? "{}" : m->second;
  }
  net.to(DType::f32, device);
  return net;
}

}  // namespace xgan
