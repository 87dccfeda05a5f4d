// Training data: MNIST / Fashion-MNIST IDX files (raw or .gz) and CIFAR-10 binary batches,
// resized to the model's size like torchvision's Resize on PIL images (bilinear on uint8, result
// rounded to uint8) and scaled to [-1, 1] like ToTensor + Normalize(0.5, 0.5). Every malformed
// file gets an error that names the file and what is wrong with it.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace xgan {

struct Dataset {
  std::string name;
  Tensor images;  // float32 [N, C, S, S] in [-1, 1], CPU
  std::vector<uint8_t> labels;
};

// dataset: "mnist" | "fashion-mnist" | "cifar10". dir holds the files under their usual names
// (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-...; data_batch_{1..5}.bin,
// test_batch.bin, possibly inside cifar-10-batches-bin/).
Dataset load_dataset(const std::string& dataset, const std::string& dir, int image_size, bool train = true);

// IDX pair (images idx3, labels idx1), raw or gzip (detected by magic bytes, not the name).
Dataset load_idx(const std::string& images_path, const std::string& labels_path, int image_size);
Dataset load_cifar10(const std::string& dir, int image_size, bool train);

// PIL-style bilinear resize of one 8-bit plane (antialiasing support when shrinking), rounded.
std::vector<uint8_t> resize_bilinear_u8(const uint8_t* src, int h, int w, int out_h, int out_w);

// Shuffling batch loader: each epoch is a permutation drawn from (seed, epoch); the last
// incomplete batch is dropped (as the trainer wants equal batches). State is (epoch, position),
// so a resumed run sees exactly the batches an uninterrupted one would.
class Loader {
 public:
  Loader(const Dataset& data, int batch_size, uint64_t seed);
  Loader(Dataset&&, int, uint64_t) = delete;  // it keeps a reference: the data set must outlive it
  Tensor next();                              // [B, C, S, S]; advances, starting a new epoch when needed
  int64_t epoch() const { return epoch_; }
  int64_t position() const { return pos_; }  // batches taken in the current epoch
  int64_t batches_per_epoch() const;
  void set_state(int64_t epoch, int64_t position);

 private:
  void shuffle();
  const Dataset& data_;
  int batch_;
  uint64_t seed_;
  int64_t epoch_ = 0, pos_ = 0;
  std::vector<int64_t> perm_;
};

}  // namespace xgan
