// Scoring generators with FID and IS (docs/metrics.md): the image conventions, the feature
// extractors (the offline LeNet of models/lenet.h, or the FID Inception from a user-supplied
// weights file), real and generated statistics, and the three users of them: `xgan
// train-classifier` (train/cmd_classifier.cpp), `xgan eval` (train/cmd_eval.cpp) and the trainer's
// --eval-every. Tested by tests/test_lenet.cpp.
//
// Image conventions. Every extractor sees images as float32 [N, C, H, W] holding integers 0..255,
// the uint8 images the authors' torchmetrics pipeline fed to its Inception:
//   real:       (x + 1) * 127.5 rounded: the exact inverse of the data pipeline's scaling, so
//               these are the data set's (resized) uint8 pixels;
//   generated:  the paper's per-batch min-max to [0, 255] (metrics::to_uint8_range), or with
//               minmax = false (x + 1) * 127.5 rounded and clamped.
// The LeNet maps 0..255 back to [-1, 1] with the data pipeline's formula (u / 255 - 0.5) / 0.5, so
// a real image reaches it exactly as in training; sizes other than 32 are resized bilinearly.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "engine/tensor.h"
#include "models/gan.h"
#include "train/data.h"
#include "train/metrics.h"

namespace xgan {

class Lenet;

// runs/lenet-<dataset>.safetensors: where scripts/run.sh trains the classifier and where `xgan
// eval` and `xgan train --eval-every` look for it by default.
std::string default_lenet_path(const std::string& dataset);

// ---- image conventions ----------------------------------------------------------------------

// Data-pipeline images in [-1, 1] -> their 0..255 pixel values.
Tensor real_to_uint8(const Tensor& x);
// Generator output in [-1, 1] -> 0..255 integers (per-batch min-max, or the fixed mapping).
Tensor fake_to_uint8(const Tensor& x, bool minmax);
// 0..255 images -> the LeNet's input: [-1, 1], resized to 32x32 when needed.
Tensor lenet_input(const Tensor& u8);

// ---- extractors -----------------------------------------------------------------------------

struct Extracted {
  Tensor features;  // [N, D]: LeNet fc1 activations (128) or Inception pool3 (2048)
  Tensor logits;    // [N, K]: LeNet class logits (10) or Inception's 1008 logits
};

class Extractor {
 public:
  virtual ~Extractor() = default;
  // images: float32 [N, C, H, W] with values 0..255, on any device. Runs without a graph.
  virtual Extracted run(const Tensor& images) const = 0;
  virtual int64_t feature_dim() const = 0;
  virtual std::string name() const = 0;  // "lenet" | "inception"
};

// The LeNet of `weights`; throws (saying how to make one) when the file is missing, and when its
// channel count differs from `channels`.
std::unique_ptr<Extractor> make_lenet_extractor(const std::string& weights, int channels, Device device);
// kind "lenet" | "inception" (the latter needs the FID Inception's weights file).
std::unique_ptr<Extractor> make_extractor(const std::string& kind, const std::string& weights, int channels,
                                          Device device);

// ---- statistics -----------------------------------------------------------------------------

// Called with (done, total) after each batch; may print progress.
using ProgressFn = std::function<void(int64_t, int64_t)>;

// Statistics of n real images: the first n of a permutation of `data` drawn from `seed`.
// Requires 1 <= n <= the data set's size.
metrics::GaussianStats real_statistics(const Extractor& ex, const Dataset& data, int64_t n, int batch,
                                       uint64_t seed, const ProgressFn& progress = {});

struct GeneratedScores {
  metrics::GaussianStats stats;
  metrics::InceptionScore is;
};
// n samples of G in eval mode (batch norm with running statistics), noise z ~ N(0, 1) from
// Generator(seed); statistics of their features and the IS of their logits (10 splits).
GeneratedScores generated_statistics(const Extractor& ex, GanGenerator& G, int64_t n, int batch,
                                     uint64_t seed, bool minmax, const ProgressFn& progress = {});

// A progress line on stderr ("label done/total  ETA"), rewritten in place on a terminal.
ProgressFn progress_printer(const std::string& label);
// "42s", "3m05s", "1h02m".
std::string format_seconds(double seconds);

// ---- the trainer's periodic scoring (xgan train --eval-every) --------------------------------

struct Scores {
  double fid = 0, is_mean = 0, is_std = 0;
};

// Holds the LeNet and the real statistics (computed once, in the constructor, from `data`), so
// each score() costs only the generated samples. Scoring never touches the training's random
// streams or G's batch-norm statistics, so it does not change the run.
class TrainingScorer {
 public:
  TrainingScorer(const std::string& weights, const Dataset& data, int64_t n, uint64_t seed, Device device);
  Scores score(GanGenerator& G) const;

 private:
  std::unique_ptr<Extractor> lenet_;
  metrics::GaussianStats real_;
  int64_t n_;
  uint64_t seed_;
};

// ---- xgan train-classifier -------------------------------------------------------------------

struct ClassifierConfig {
  std::string dataset = "mnist";  // mnist | fashion-mnist (cifar10 works, with low accuracy)
  std::string data_dir = "data/mnist";
  std::string out;  // weights file; default_lenet_path(dataset) when empty
  int epochs = 2;
  int batch = 64;
  double lr = 1e-3;  // Adam, betas (0.9, 0.999)
  uint64_t seed = 0;
  bool progress = true;
};

struct ClassifierResult {
  double test_accuracy = 0;  // fraction of the test split classified correctly
  double first_loss = 0;     // cross-entropy of the first batch (about ln 10 = 2.30 untrained)
  double last_loss = 0;      // mean cross-entropy of the last 100 iterations
  int64_t iterations = 0;
  double seconds = 0;
  std::string path;  // where the weights went
};

// Trains the LeNet on `train` with Adam and cross-entropy (last incomplete batch of an epoch
// dropped; each epoch a permutation drawn from (seed, epoch)), measures its accuracy on `test`
// and writes the weights with the accuracy in their metadata (atomically). Deterministic given
// the seed and thread count.
ClassifierResult train_classifier(const ClassifierConfig& cfg, const Dataset& train, const Dataset& test);
// The same, loading the training and test splits at 32x32.
ClassifierResult train_classifier(const ClassifierConfig& cfg);
// Fraction of `data` whose argmax logit equals its label.
double classifier_accuracy(const Lenet& net, const Dataset& data, int batch = 500);

// ---- xgan eval -------------------------------------------------------------------------------

struct EvalConfig {
  std::string ckpt;      // a checkpoint file or a run's directory
  std::string data_dir;  // default: the checkpoint's data_dir
  std::string dataset;   // default: the checkpoint's data set
  int64_t n = 50000;
  std::string extractor = "lenet";  // lenet | inception
  std::string weights;              // default for lenet: default_lenet_path(dataset)
  int batch = 100;
  std::string json;  // default: eval_<extractor>.json in the run's directory
  uint64_t seed = 0;
  bool minmax = true;
  std::string device = "cpu";
  bool progress = true;
};

struct EvalResult {
  double fid = 0, is_mean = 0, is_std = 0;
  int64_t n = 0;
  std::string extractor, ckpt, json_path;
};

// Loads G from the checkpoint, scores n of its samples against n real images, prints the result
// and writes {"fid", "is_mean", "is_std", "extractor", "n", "ckpt", ...} to the JSON file
// atomically.
EvalResult evaluate_checkpoint(const EvalConfig& cfg);

}  // namespace xgan
