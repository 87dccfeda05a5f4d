// `xgan train-classifier`: trains the offline metrics' LeNet (models/lenet.h) on an MNIST-family
// training split with Adam and cross-entropy, reports its test accuracy and writes the weights
// (accuracy in their metadata). FID-LeNet / IS-LeNet (train/eval.h) use it.
// Try: xgan train-classifier --data data/mnist --out runs/lenet-mnist.safetensors
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "engine/rng.h"
#include "models/lenet.h"
#include "train/commands.h"
#include "train/eval.h"

namespace xgan {

namespace {

// An epoch's order: indices sorted by a float64 uniform key drawn from (seed, epoch). Ties (about
// n^2 / 2^54) keep index order, so the permutation is a pure function of the seed and the epoch.
std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch) {
  Generator rng(seed);
  rng.set_state(seed, static_cast<uint64_t>(epoch) * static_cast<uint64_t>((n + 1) / 2));
  const std::vector<double> key = rng.uniform({n}, 0.0, 1.0, DType::f64).to_vector();
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return key[a] < key[b]; });
  return order;
}

// images[idx[first .. first + k)] and their labels as a one-hot [k, 10] matrix.
std::pair<Tensor, Tensor> gather_batch(const Dataset& d, const std::vector<int64_t>& idx, int64_t first,
                                       int64_t k) {
  Shape s = d.images.shape();
  const int64_t per = d.images.numel() / s[0];
  s[0] = k;
  Tensor x = empty(s, DType::f32, kCPU);
  std::vector<float> onehot(static_cast<size_t>(k * Lenet::kClasses), 0.0f);
  const float* src = d.images.data<float>();
  float* dst = x.data<float>();
  for (int64_t b = 0; b < k; ++b) {
    const int64_t i = idx[static_cast<size_t>(first + b)];
    std::memcpy(dst + b * per, src + i * per, static_cast<size_t>(per) * sizeof(float));
    onehot[static_cast<size_t>(b * Lenet::kClasses + d.labels[static_cast<size_t>(i)])] = 1.0f;
  }
  return {x, from_vector(onehot, {k, Lenet::kClasses})};
}

void check_labels(const Dataset& d, const char* split) {
  if (!d.images.defined() || d.images.dim() != 4 || d.images.size(2) != Lenet::kImageSize ||
      d.images.size(3) != Lenet::kImageSize)
    throw std::runtime_error(std::string("train-classifier: the ") + split +
                             " images must be [N, C, 32, 32], got " +
                             (d.images.defined() ? d.images.str() : std::string("none")));
  if (static_cast<int64_t>(d.labels.size()) != d.images.size(0))
    throw std::runtime_error(std::string("train-classifier: the ") + split + " split has " +
                             std::to_string(d.images.size(0)) + " images but " +
                             std::to_string(d.labels.size()) + " labels");
  for (uint8_t l : d.labels)
    if (l >= Lenet::kClasses)
      throw std::runtime_error(std::string("train-classifier: a ") + split + " label is " +
                               std::to_string(l) + ", expected 0..9");
}

}  // namespace

double classifier_accuracy(const Lenet& net, const Dataset& data, int batch) {
  NoGradGuard no_grad;
  const int64_t n = data.images.size(0);
  std::vector<int64_t> all(static_cast<size_t>(n));
  std::iota(all.begin(), all.end(), 0);
  int64_t correct = 0;
  for (int64_t first = 0; first < n; first += batch) {
    const int64_t k = std::min<int64_t>(batch, n - first);
    Tensor x = gather_batch(data, all, first, k).first;
    if (!net.device().is_cpu()) x = x.to(net.device());
    const std::vector<double> logits = net.forward(x).logits.to_vector();
    for (int64_t b = 0; b < k; ++b) {
      const auto row = logits.begin() + b * Lenet::kClasses;
      const auto pred = std::max_element(row, row + Lenet::kClasses) - row;
      correct += pred == data.labels[static_cast<size_t>(first + b)];
    }
  }
  return n > 0 ? static_cast<double>(correct) / static_cast<double>(n) : 0.0;
}

ClassifierResult train_classifier(const ClassifierConfig& cfg, const Dataset& train, const Dataset& test) {
  using clock = std::chrono::steady_clock;
  if (cfg.epochs < 1 || cfg.batch < 1 || !(cfg.lr > 0))
    throw std::runtime_error("train-classifier: epochs, batch and lr must be positive");
  check_labels(train, "training");
  check_labels(test, "test");
  const int64_t n = train.images.size(0);
  const int64_t per_epoch = n / cfg.batch;
  if (per_epoch < 1)
    throw std::runtime_error("train-classifier: " + std::to_string(n) +
                             " training images, fewer than one batch of " + std::to_string(cfg.batch));
  const int64_t total = per_epoch * cfg.epochs;
  const std::string out = cfg.out.empty() ? default_lenet_path(cfg.dataset) : cfg.out;

  Lenet net(static_cast<int>(train.images.size(1)));
  {
    Generator init(cfg.seed * 2 + 1);  // a stream apart from the shuffling's (seed * 2)
    net.init(init);
  }
  Adam opt(net.parameter_tensors(), AdamConfig{cfg.lr, 0.9, 0.999, 1e-8, 0.0});

  std::fprintf(
      stderr,
      "xgan train-classifier: %s, %lld training / %lld test images, %d epochs of %lld batches of %d, lr %g\n",
      cfg.dataset.c_str(), static_cast<long long>(n), static_cast<long long>(test.images.size(0)), cfg.epochs,
      static_cast<long long>(per_epoch), cfg.batch, cfg.lr);
  const bool tty = cfg.progress && ::isatty(::fileno(stderr));
  const auto t_start = clock::now();
  auto t_shown = t_start;
  std::vector<double> recent;  // the last 100 losses, for a smooth progress line
  int64_t it = 0;
  double first_loss = 0;
  for (int epoch = 0; epoch < cfg.epochs; ++epoch) {
    const std::vector<int64_t> order = epoch_order(n, cfg.seed * 2, epoch);
    for (int64_t b = 0; b < per_epoch; ++b) {
      auto [x, onehot] = gather_batch(train, order, b * cfg.batch, cfg.batch);
      // Cross-entropy: -mean over the batch of log p(label).
      const Tensor loss =
          -sum(onehot * log_softmax(net.forward(x).logits, 1)) / static_cast<double>(cfg.batch);
      opt.zero_grad();
      backward(loss);
      opt.step();
      const double l = loss.item();
      if (!std::isfinite(l))
        throw std::runtime_error("train-classifier: the loss became " + std::to_string(l) + " at iteration " +
                                 std::to_string(it + 1) + "; try a smaller --lr");
      if (it == 0) first_loss = l;
      if (recent.size() == 100) recent.erase(recent.begin());
      recent.push_back(l);
      ++it;
      const auto now = clock::now();
      const bool last = it == total;
      if (cfg.progress &&
          (tty ? (now - t_shown > std::chrono::milliseconds(100) || last) : (it % 100 == 0 || last))) {
        const double secs = std::chrono::duration<double>(now - t_start).count();
        const double mean =
            std::accumulate(recent.begin(), recent.end(), 0.0) / static_cast<double>(recent.size());
        char buf[160];
        std::snprintf(
            buf, sizeof buf, "iter %lld/%lld  epoch %d  loss %.4f  %.1f ms/iter  ETA %s",
            static_cast<long long>(it), static_cast<long long>(total), epoch, mean,
            secs * 1000.0 / static_cast<double>(it),
            format_seconds(secs / static_cast<double>(it) * static_cast<double>(total - it)).c_str());
        if (tty)
          std::fprintf(stderr, "\r%-90s%s", buf, last ? "\n" : "");
        else
          std::fprintf(stderr, "%s\n", buf);
        std::fflush(stderr);
        t_shown = now;
      }
    }
  }

  ClassifierResult r;
  r.iterations = it;
  r.first_loss = first_loss;
  r.last_loss = std::accumulate(recent.begin(), recent.end(), 0.0) / static_cast<double>(recent.size());
  r.test_accuracy = classifier_accuracy(net, test);
  r.seconds = std::chrono::duration<double>(clock::now() - t_start).count();
  r.path = out;
  const nlohmann::ordered_json info{{"format_version", 1},
                                    {"dataset", cfg.dataset},
                                    {"test_accuracy", r.test_accuracy},
                                    {"test_images", test.images.size(0)},
                                    {"train_images", n},
                                    {"epochs", cfg.epochs},
                                    {"batch", cfg.batch},
                                    {"lr", cfg.lr},
                                    {"seed", cfg.seed},
                                    {"final_loss", r.last_loss},
                                    {"seconds", std::round(r.seconds * 10.0) / 10.0}};
  net.save(out, info.dump());
  return r;
}

ClassifierResult train_classifier(const ClassifierConfig& cfg) {
  if (cfg.dataset != "mnist" && cfg.dataset != "fashion-mnist" && cfg.dataset != "cifar10")
    throw std::runtime_error("unknown data set '" + cfg.dataset + "' (mnist, fashion-mnist or cifar10)");
  const Dataset train = load_dataset(cfg.dataset, cfg.data_dir, Lenet::kImageSize, /*train=*/true);
  const Dataset test = load_dataset(cfg.dataset, cfg.data_dir, Lenet::kImageSize, /*train=*/false);
  return train_classifier(cfg, train, test);
}

namespace cli {

Run add_train_classifier(CLI::App& app) {
  auto cfg = std::make_shared<ClassifierConfig>();
  CLI::App* sub = app.add_subcommand(
      "train-classifier",
      "Train the small LeNet classifier the offline metrics use (FID-LeNet, IS-LeNet: xgan eval,\n"
      "xgan train --eval-every) on a data set's training split, with Adam and cross-entropy; print its\n"
      "accuracy on the test split and write its weights (the accuracy in their metadata).");
  sub->add_option("--data", cfg->data_dir,
                  "Directory with the data set's training and test files (IDX: train-* and t10k-*)")
      ->capture_default_str();
  sub->add_option("--dataset", cfg->dataset, "Data set")
      ->capture_default_str()
      ->check(CLI::IsMember({"mnist", "fashion-mnist", "cifar10"}));
  sub->add_option("--out", cfg->out, "Weights file (safetensors); default runs/lenet-<dataset>.safetensors");
  sub->add_option("--epochs", cfg->epochs, "Passes over the training split")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  sub->add_option("--batch", cfg->batch, "Images per batch")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  sub->add_option("--lr", cfg->lr, "Adam learning rate (betas 0.9, 0.999)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  sub->add_option("--seed", cfg->seed, "Seed of the initialisation and the shuffling")->capture_default_str();
  auto threads = std::make_shared<int>(0);
  sub->add_option("--threads", *threads, "OpenMP threads (default: OMP_NUM_THREADS or all cores)")
      ->check(CLI::PositiveNumber);
  sub->footer(
      "The defaults reach about 98.7% test accuracy on MNIST in a few minutes on 2 CPU cores.\n"
      "The same seed and thread count give the same weights.");
  return [cfg, threads] {
    if (*threads > 0) omp_set_num_threads(*threads);
    const ClassifierResult r = train_classifier(*cfg);
    std::printf("xgan train-classifier: test accuracy %.2f%% (%s), %lld iterations in %s\n",
                100.0 * r.test_accuracy, cfg->dataset.c_str(), static_cast<long long>(r.iterations),
                format_seconds(r.seconds).c_str());
    std::printf("xgan train-classifier: wrote %s\n", r.path.c_str());
    return 0;
  };
}

}  // namespace cli

}  // namespace xgan
