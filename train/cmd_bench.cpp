// `xgan bench`: what one training iteration costs on this machine, for each loss x explainer, in
// the shape of the paper's Table 7 (seconds per epoch, overhead of each explainer over its base
// loss). An iteration is exactly what the trainer runs (train/step.h: one D step, one G step, with
// fresh noise); the real batch is prepared before the clock starts, and the cost of loading data
// is timed on its own when --data-dir is given.
// Try: xgan bench --loss all --xai all --iters 20.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "engine/backend.h"
#include "engine/optim.h"
#include "engine/rng.h"
#include "train/commands.h"
#include "train/data.h"
#include "train/step.h"
#include "train/trainer.h"

namespace xgan::cli {

namespace {

struct BenchArgs {
  std::string loss = "all", xai = "all", dataset = "mnist", device = "cpu", json, data_dir;
  std::string guidance = "elementwise", xai_bn = "captum";
  int iters = 20, warmup = 3, batch = 32, width = 128, z_dim = 128, image_size = 32, threads = 0;
  uint64_t seed = 1;
};

struct Timing {
  std::string loss, xai;
  std::vector<double> ms;  // one per timed iteration
  double median = 0, p10 = 0, p90 = 0, s_per_epoch = 0, overhead_pct = 0;
};

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// Linear interpolation between order statistics (numpy's default percentile).
double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos)), hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

std::vector<std::string> expand(const std::string& v, std::vector<std::string> all) {
  if (v == "all") return all;
  return {v};
}

int64_t train_set_size(const std::string& dataset) { return dataset == "cifar10" ? 50000 : 60000; }

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) {
      const auto p = line.find(':');
      if (p != std::string::npos) return line.substr(p + 2);
    }
  return "unknown CPU";
}

int thread_count() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// Times `iters` iterations of one configuration after `warmup` untimed ones. Every iteration
// draws its own noise (as the trainer does) and ends by reading both losses to the host, which
// on the GPU waits for the iteration's kernels: the clock measures finished work.
Timing run_config(const BenchArgs& a, Device device, const std::string& loss_s, const std::string& xai_s,
                  const Tensor& real_host) {
  const LossKind loss = parse_loss(loss_s);
  StepOptions opt;
  opt.loss = loss;
  opt.xai = parse_xai_method(xai_s);
  opt.guidance = parse_guidance(a.guidance);
  opt.xai_bn = parse_xai_bn(a.xai_bn);
  opt.record_grads = false;  // the trainer's setting: no per-iteration copies of the gradients
  const int channels = a.dataset == "cifar10" ? 3 : 1;
  const GanConfig gc{a.image_size, a.width, channels, a.z_dim};
  GanGenerator G(gc);
  GanDiscriminator D(gc, loss_uses_sigmoid(loss));
  Generator rng(a.seed);
  G.init_dcgan(rng);
  D.init_dcgan(rng);
  G.to(DType::f32, device);
  D.to(DType::f32, device);
  const AdamConfig adam{1e-4, 0.5, 0.999, 1e-8, 0.0};
  Adam opt_G(G.parameter_tensors(), adam), opt_D(D.parameter_tensors(), adam);
  const Tensor real = real_host.to(device);
  const int64_t n = real.size(0);

  Timing t{loss_s, xai_s, {}};
  const bool progress = isatty(fileno(stderr)) != 0;  // a progress line is noise in a log file
  if (!device.is_cpu()) cuda::synchronize();          // the set-up's copies are not part of iteration 1
  FrozenParameters frozen;  // as in xgan train: only the optimisers write the weights (engine/backend.h)
  for (int i = 0; i < a.warmup + a.iters; ++i) {
    const auto t0 = Clock::now();
    StepInputs in{real, rng.normal({n, a.z_dim, 1, 1}, 0, 1, DType::f32, device),
                  rng.normal({n, a.z_dim, 1, 1}, 0, 1, DType::f32, device),
                  loss == LossKind::wgan_gp ? rng.uniform({n, 1, 1, 1}, 0, 1, DType::f32, device) : Tensor()};
    StepRecord r = train_step(G, D, opt_G, opt_D, in, opt);
    const double lD = r.loss_D.item(), lG = r.loss_G.item();
    const double ms = ms_since(t0);
    if (!std::isfinite(lD) || !std::isfinite(lG))
      throw std::runtime_error("bench " + loss_s + "/" + xai_s +
                               ": the loss became non-finite at iteration " + std::to_string(i + 1) +
                               "; the timing would not be of a real training run");
    if (i >= a.warmup) t.ms.push_back(ms);
    if (progress) {
      std::fprintf(stderr, "\r  %-8s %-11s iteration %d/%d  %.1f ms   ", loss_s.c_str(), xai_s.c_str(), i + 1,
                   a.warmup + a.iters, ms);
      std::fflush(stderr);
    }
  }
  if (progress) std::fprintf(stderr, "\r%*s\r", 60, "");
  t.median = percentile(t.ms, 0.5);
  t.p10 = percentile(t.ms, 0.1);
  t.p90 = percentile(t.ms, 0.9);
  t.s_per_epoch = t.median * 1e-3 * static_cast<double>(train_set_size(a.dataset) / a.batch);
  return t;
}

// Milliseconds per batch of the real loader (decoding is done once, before; this is the shuffle
// and the gather of a batch), or a negative number when no data directory was given.
double time_loading(const BenchArgs& a, Tensor& first_batch) {
  if (a.data_dir.empty()) return -1;
  Dataset data = load_dataset(a.dataset, a.data_dir, a.image_size);
  Loader loader(data, a.batch, a.seed);
  first_batch = loader.next();
  const int n = std::max(a.iters, 10);
  const auto t0 = Clock::now();
  for (int i = 0; i < n; ++i) (void)loader.next();
  return ms_since(t0) / n;
}

int run_bench(const BenchArgs& a) {
#ifdef _OPENMP
  if (a.threads > 0) omp_set_num_threads(a.threads);
#endif
  const Device device = resolve_device(a.device, LossKind::dcgan);
  const auto losses = expand(a.loss, {"dcgan", "wgan-gp", "ragan"});
  const auto xais = expand(a.xai, {"none", "saliency", "inputxgrad", "deeplift"});
  const int channels = a.dataset == "cifar10" ? 3 : 1;

  Tensor real;
  const double load_ms = time_loading(a, real);
  if (!real.defined()) {
    Generator data_rng(a.seed + 1);
    real = data_rng.uniform({a.batch, channels, a.image_size, a.image_size}, -1, 1);
  }
  const std::string where = device.is_cpu()
                                ? "cpu (" + std::to_string(thread_count()) + " threads, " + cpu_model() + ")"
                                : device.str() + " (" + cuda::device_name() + ")";
  std::printf(
      "xgan bench on %s\n%s %dx%dx%d, batch %d, width %d, z %d; %d timed iterations after %d warm-up\n",
      where.c_str(), a.dataset.c_str(), channels, a.image_size, a.image_size, a.batch, a.width, a.z_dim,
      a.iters, a.warmup);
  if (load_ms >= 0)
    std::printf("data loading (not in the times below): %.3f ms per batch\n", load_ms);
  else
    std::printf("data loading: not measured (synthetic batch; pass --data-dir to time the loader)\n");
  std::fflush(stdout);

  std::vector<Timing> rows;
  for (const auto& l : losses) {
    double base = -1;
    for (const auto& x : xais) {
      Timing t = run_config(a, device, l, x, real);
      if (x == "none") base = t.median;
      // Without a base run (--xai given alone) there is nothing to compare with: NaN, shown as "-".
      t.overhead_pct = x == "none" ? 0.0 : base > 0 ? 100.0 * (t.median / base - 1.0) : std::nan("");
      rows.push_back(t);
    }
  }

  std::printf("\n%-8s %-11s %12s %10s %10s %10s %9s\n", "loss", "xai", "ms/iter", "p10", "p90", "s/epoch",
              "overhead");
  for (const auto& t : rows) {
    char over[32] = "-";
    if (t.xai != "none" && std::isfinite(t.overhead_pct))
      std::snprintf(over, sizeof over, "%+.1f%%", t.overhead_pct);
    std::printf("%-8s %-11s %12.1f %10.1f %10.1f %10.1f %9s\n", t.loss.c_str(), t.xai.c_str(), t.median,
                t.p10, t.p90, t.s_per_epoch, over);
  }
  std::printf("(median over iterations; s/epoch = median x %lld iterations of batch %d)\n",
              static_cast<long long>(train_set_size(a.dataset) / a.batch), a.batch);

  if (!a.json.empty()) {
    nlohmann::json j;
    j["machine"] = where;
    j["dataset"] = a.dataset;
    j["load_ms_per_batch"] = load_ms >= 0 ? nlohmann::json(load_ms) : nlohmann::json(nullptr);
    j["configs"] = nlohmann::json::array();
    for (const auto& t : rows)
      j["configs"].push_back({{"loss", t.loss},
                              {"xai", t.xai},
                              {"device", device.str()},
                              {"batch", a.batch},
                              {"width", a.width},
                              {"iters", a.iters},
                              {"ms_per_iter_median", t.median},
                              {"ms_per_iter_p10", t.p10},
                              {"ms_per_iter_p90", t.p90},
                              {"s_per_epoch", t.s_per_epoch},
                              {"overhead_pct", std::isfinite(t.overhead_pct) ? nlohmann::json(t.overhead_pct)
                                                                             : nlohmann::json(nullptr)},
                              {"ms_per_iter", t.ms}});
    write_text_atomic(a.json, j.dump(2) + "\n");
  }
  return 0;
}

}  // namespace

Run add_bench(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  CLI::App* sub = app.add_subcommand(
      "bench",
      "Time full training iterations (one D step + one G step, as `xgan train` runs them) for each loss and\n"
      "explainer, and print a table like the paper's Table 7: ms per iteration (median, p10, p90), seconds\n"
      "per epoch and the overhead of each explainer over its base loss. Data loading is excluded (timed\n"
      "separately with --data-dir). Benchmark on an otherwise idle machine.");
  sub->add_option("--loss", a->loss, "Loss to time, or all")
      ->capture_default_str()
      ->check(CLI::IsMember({"dcgan", "wgan-gp", "ragan", "all"}));
  sub->add_option("--xai", a->xai,
                  "Explainer to time, or all (none is the base each overhead is relative to)")
      ->capture_default_str()
      ->check(CLI::IsMember({"none", "saliency", "inputxgrad", "deeplift", "all"}));
  sub->add_option("--dataset", a->dataset,
                  "Image shape and epoch length: mnist (1x32x32, 60000) or cifar10 (3x32x32, 50000)")
      ->capture_default_str()
      ->check(CLI::IsMember({"mnist", "cifar10"}));
  sub->add_option("--data-dir", a->data_dir, "Also time the data loader on this data set's files")
      ->check(CLI::ExistingDirectory);
  sub->add_option("--iters", a->iters, "Timed iterations per configuration")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  sub->add_option("--warmup", a->warmup, "Untimed iterations first (allocator, caches)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000000));
  sub->add_option("--device", a->device, "cpu, cuda, or auto (CUDA when a GPU is present)")
      ->capture_default_str()
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}));
  sub->add_option("--threads", a->threads,
                  "OpenMP threads on the CPU (default: OMP_NUM_THREADS, else all cores)")
      ->check(CLI::Range(1, 4096));
  sub->add_option("--batch", a->batch, "Batch size")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  sub->add_option("--width", a->width, "Width h of G and D")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 16));
  sub->add_option("--guidance", a->guidance, "X-GAN guidance mode of the explained runs")
      ->capture_default_str()
      ->check(CLI::IsMember({"elementwise", "as-coded"}));
  sub->add_option("--xai-bn", a->xai_bn, "Batch norm in the explainer's forward")
      ->capture_default_str()
      ->check(CLI::IsMember({"captum", "eval"}));
  sub->add_option("--seed", a->seed, "Seed of the weights, noise and synthetic batch")->capture_default_str();
  sub->add_option("--json", a->json, "Also write the results as JSON to this file");
  return [a] { return run_bench(*a); };
}

}  // namespace xgan::cli
