// Scoring generators (train/eval.h): image conventions, the two feature extractors, real and
// generated statistics, progress lines and the trainer's periodic scorer. The commands built on
// it live in train/cmd_eval.cpp and train/cmd_classifier.cpp. Tested by tests/test_lenet.cpp.
#include "train/eval.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "models/inception.h"
#include "models/lenet.h"

namespace xgan {

namespace {

// The first k images of x (a CPU tensor), copied.
Tensor head(const Tensor& x, int64_t k) {
  if (k == x.size(0)) return x;
  Shape s = x.shape();
  s[0] = k;
  Tensor out = empty(s, x.dtype(), kCPU);
  std::memcpy(out.raw(), x.raw(), out.nbytes());
  return out;
}

class LenetExtractor : public Extractor {
 public:
  LenetExtractor(Lenet net, Device device) : net_(std::move(net)), device_(device) {}
  Extracted run(const Tensor& images) const override {
    NoGradGuard no_grad;
    const LenetOutput out = net_.forward(lenet_input(images.to(device_)));
    return {out.features.to(kCPU), out.logits.to(kCPU)};
  }
  int64_t feature_dim() const override { return Lenet::kFeatures; }
  std::string name() const override { return "lenet"; }

 private:
  Lenet net_;
  Device device_;
};

class InceptionExtractor : public Extractor {
 public:
  InceptionExtractor(FidInception net, Device device) : net_(std::move(net)), device_(device) {}
  Extracted run(const Tensor& images) const override {
    NoGradGuard no_grad;
    // The model resizes to 299 and repeats a grey channel itself (models/inception.h).
    const FidInception::Output out = net_.forward(images.to(device_), images.size(0));
    return {out.pool3.to(kCPU), out.logits.to(kCPU)};
  }
  int64_t feature_dim() const override { return 2048; }
  std::string name() const override { return "inception"; }

 private:
  FidInception net_;
  Device device_;
};

// Maps every element of a CPU float32 tensor through f into a new tensor.
template <class F>
Tensor map_values(const Tensor& x_in, F f) {
  const Tensor x = x_in.to(kCPU).to(DType::f32);
  Tensor out = empty(x.shape(), DType::f32, kCPU);
  const float* src = x.data<float>();
  float* dst = out.data<float>();
  for (int64_t i = 0, n = x.numel(); i < n; ++i) dst[i] = f(src[i]);
  return out;
}

}  // namespace

std::string default_lenet_path(const std::string& dataset) {
  return "runs/lenet-" + dataset + ".safetensors";
}

Tensor real_to_uint8(const Tensor& x) {
  // The data were (u / 255 - 0.5) / 0.5 in float32; (x + 1) * 127.5 is within 1e-4 of u, so
  // rounding recovers the pixel exactly.
  return map_values(x, [](float v) { return std::nearbyint((v + 1.0f) * 127.5f); });
}

Tensor fake_to_uint8(const Tensor& x, bool minmax) {
  if (minmax) return metrics::to_uint8_range(x.to(kCPU));
  return map_values(x, [](float v) {
    const float u = std::nearbyint((v + 1.0f) * 127.5f);
    return std::isfinite(u) ? std::clamp(u, 0.0f, 255.0f) : 0.0f;
  });
}

Tensor lenet_input(const Tensor& u8) {
  // The data pipeline's own formula (train/data.cpp), in float32, so real images arrive bit for bit
  // as the classifier saw them in training.
  Tensor x = (u8 / 255.0 - 0.5) / 0.5;
  if (x.size(2) != Lenet::kImageSize || x.size(3) != Lenet::kImageSize)
    x = resize_bilinear(x, Lenet::kImageSize, Lenet::kImageSize);
  return x;
}

std::unique_ptr<Extractor> make_lenet_extractor(const std::string& weights, int channels, Device device) {
  Lenet net = Lenet::load(weights, device);
  if (net.channels() != channels)
    throw std::runtime_error("the LeNet classifier " + weights + " takes " + std::to_string(net.channels()) +
                             "-channel images, these images have " + std::to_string(channels) +
                             " channels (train a classifier on this data set with xgan train-classifier, or"
                             " use --extractor inception)");
  return std::make_unique<LenetExtractor>(std::move(net), device);
}

std::unique_ptr<Extractor> make_extractor(const std::string& kind, const std::string& weights, int channels,
                                          Device device) {
  if (kind == "lenet") return make_lenet_extractor(weights, channels, device);
  if (kind == "inception") {
    if (weights.empty())
      throw std::runtime_error(
          "--extractor inception needs --weights FILE: the FID Inception's weights as safetensors"
          " (see docs/metrics.md for the converter)");
    return std::make_unique<InceptionExtractor>(FidInception::load(weights, device), device);
  }
  throw std::runtime_error("unknown extractor '" + kind + "' (lenet or inception)");
}

metrics::GaussianStats real_statistics(const Extractor& ex, const Dataset& data, int64_t n, int batch,
                                       uint64_t seed, const ProgressFn& progress) {
  const int64_t total = data.images.size(0);
  if (n < 1 || n > total)
    throw std::runtime_error("cannot take " + std::to_string(n) + " real images: data set '" + data.name +
                             "' has " + std::to_string(total));
  if (batch < 1) throw std::runtime_error("batch must be positive");
  // A Loader's first epoch is a seeded permutation: its first n images are a random subset.
  Loader loader(data, static_cast<int>(std::min<int64_t>(batch, total)), seed);
  metrics::StatsAccumulator acc(ex.feature_dim());
  for (int64_t done = 0; done < n;) {
    Tensor x = loader.next();
    const int64_t k = std::min<int64_t>(x.size(0), n - done);
    acc.add(ex.run(real_to_uint8(head(x, k))).features);
    done += k;
    if (progress) progress(done, n);
  }
  return acc.finish();
}

GeneratedScores generated_statistics(const Extractor& ex, GanGenerator& G, int64_t n, int batch,
                                     uint64_t seed, bool minmax, const ProgressFn& progress) {
  if (n < 1) throw std::runtime_error("the number of generated images must be positive");
  if (batch < 1) throw std::runtime_error("batch must be positive");
  NoGradGuard no_grad;
  Generator rng(seed);
  metrics::StatsAccumulator acc(ex.feature_dim());
  std::vector<float> logits;
  int64_t classes = 0;
  for (int64_t done = 0; done < n;) {
    const int64_t k = std::min<int64_t>(batch, n - done);
    const Tensor z = rng.normal({k, G.config().z_dim, 1, 1}, 0.0, 1.0, DType::f32, G.device());
    // Eval mode: batch norm uses its running statistics and leaves them alone.
    const Tensor images = G.forward(z, /*train=*/false).to(kCPU);
    const Extracted e = ex.run(fake_to_uint8(images, minmax));
    acc.add(e.features);
    const Tensor l = e.logits.to(DType::f32);
    classes = l.size(1);
    logits.insert(logits.end(), l.data<float>(), l.data<float>() + l.numel());
    done += k;
    if (progress) progress(done, n);
  }
  GeneratedScores out;
  out.stats = acc.finish();
  // The split shuffle is numpy's RandomState, which takes 32-bit seeds.
  out.is = metrics::inception_score(from_vector(logits, {n, classes}), 10, seed & 0xffffffffu);
  return out;
}

std::string format_seconds(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const long s = std::lround(seconds);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, (s / 60) % 60);
  else if (s >= 60)
    std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%lds", s);
  return buf;
}

ProgressFn progress_printer(const std::string& label) {
  using clock = std::chrono::steady_clock;
  struct State {
    clock::time_point start = clock::now(), shown{};
    int last_tenth = -1;
  };
  auto st = std::make_shared<State>();
  const bool tty = ::isatty(::fileno(stderr));
  return [st, tty, label](int64_t done, int64_t total) {
    const auto now = clock::now();
    const bool end = done >= total;
    const int tenth = static_cast<int>(done * 10 / std::max<int64_t>(total, 1));
    // A terminal gets a line rewritten ten times a second; a log file one line per tenth.
    if (tty ? (now - st->shown < std::chrono::milliseconds(100) && !end) : tenth == st->last_tenth) return;
    st->shown = now;
    st->last_tenth = tenth;
    const double secs = std::chrono::duration<double>(now - st->start).count();
    const double eta = done > 0 ? secs / static_cast<double>(done) * static_cast<double>(total - done) : -1;
    char buf[160];
    std::snprintf(buf, sizeof buf, "%s %lld/%lld  %s elapsed  ETA %s", label.c_str(),
                  static_cast<long long>(done), static_cast<long long>(total), format_seconds(secs).c_str(),
                  format_seconds(eta).c_str());
    if (tty)
      std::fprintf(stderr, "\r%-90s%s", buf, end ? "\n" : "");
    else
      std::fprintf(stderr, "%s\n", buf);
    std::fflush(stderr);
  };
}

TrainingScorer::TrainingScorer(const std::string& weights, const Dataset& data, int64_t n, uint64_t seed,
                               Device device)
    : lenet_(make_lenet_extractor(weights, static_cast<int>(data.images.size(1)), device)),
      n_(n),
      seed_(seed) {
  real_ = real_statistics(*lenet_, data, n, 100, seed);
}

Scores TrainingScorer::score(GanGenerator& G) const {
  // The same noise at every call, so the scores of successive iterations differ only by G.
  const GeneratedScores g = generated_statistics(*lenet_, G, n_, 100, seed_ + 1, /*minmax=*/true);
  return {metrics::fid(real_, g.stats), g.is.mean, g.is.std};
}

}  // namespace xgan
