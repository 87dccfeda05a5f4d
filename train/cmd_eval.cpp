// `xgan eval`: FID and IS of a trained generator against the data set's training images, with the
// offline LeNet (FID-LeNet / IS-LeNet, the default) or the FID Inception from a weights file.
// Conventions in train/eval.h and docs/metrics.md.
// Try: xgan eval --ckpt runs/mnist-dcgan --n 5000
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "engine/safetensors.h"
#include "models/gan.h"
#include "train/cli_device.h"
#include "train/commands.h"
#include "train/eval.h"
#include "train/trainer.h"

namespace xgan {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// The run's directory for a checkpoint file: RUN for RUN/ckpt/ckpt.safetensors, else the file's.
fs::path run_directory(const std::string& ckpt_file) {
  const fs::path dir = fs::path(ckpt_file).parent_path();
  return dir.filename() == "ckpt" ? dir.parent_path() : dir;
}

}  // namespace

EvalResult evaluate_checkpoint(const EvalConfig& cfg) {
  if (cfg.n < 10) throw std::runtime_error("eval: --n must be at least 10 (IS uses 10 splits)");
  if (cfg.batch < 1) throw std::runtime_error("eval: --batch must be positive");
  const std::string path = resolve_checkpoint_file(cfg.ckpt);
  const TensorFile file = load_safetensors(path);

  // G's sizes, data set and iteration from the trainer's metadata; a plain weights file (e.g. from
  // `xgan step`) has only its shapes, and then --dataset and --data must be given.
  GanConfig gc;
  std::string dataset = cfg.dataset, data_dir = cfg.data_dir;
  json iteration = nullptr;
  auto meta_it = file.metadata.find("xgan");
  if (meta_it != file.metadata.end()) {
    const json meta = json::parse(meta_it->second);
    const json& c = meta.at("config");
    gc = GanConfig{c.at("image_size").get<int>(), c.at("width").get<int>(), c.at("channels").get<int>(),
                   c.at("z_dim").get<int>()};
    if (dataset.empty()) dataset = c.value("dataset", "");
    if (data_dir.empty()) data_dir = c.value("data_dir", "");
    iteration = meta.value("iteration", json(nullptr));
  } else {
    gc = infer_generator_config(file.tensors, "G.");
  }
  if (dataset.empty() || data_dir.empty())
    throw std::runtime_error("eval: " + path + " does not record its data set; give --dataset and --data");
  std::map<std::string, Tensor> g_tensors;
  for (const auto& [name, t] : file.tensors)
    if (name.rfind("G.", 0) == 0) g_tensors.emplace(name.substr(2), t);
  GanGenerator G(gc);
  G.load_state_dict(g_tensors);

  const Device device = cli::parse_device(cfg.device);
  const std::string weights =
      cfg.weights.empty() && cfg.extractor == "lenet" ? default_lenet_path(dataset) : cfg.weights;
  // Before the (slow) data load, so a missing weights file fails at once.
  const std::unique_ptr<Extractor> ex = make_extractor(cfg.extractor, weights, gc.channels, device);
  if (!device.is_cpu()) G.to(DType::f32, device);

  const Dataset data = load_dataset(dataset, data_dir, gc.image_size, /*train=*/true);
  if (data.images.size(1) != gc.channels)
    throw std::runtime_error("eval: the generator makes " + std::to_string(gc.channels) +
                             "-channel images, " + dataset + " has " + std::to_string(data.images.size(1)));
  if (cfg.n > data.images.size(0))
    throw std::runtime_error("eval: --n " + std::to_string(cfg.n) + " is more than the " +
                             std::to_string(data.images.size(0)) + " training images of " + dataset);

  std::fprintf(stderr, "xgan eval: %s, %lld real and %lld generated images, %s extractor (%s)\n",
               path.c_str(), static_cast<long long>(cfg.n), static_cast<long long>(cfg.n), ex->name().c_str(),
               weights.c_str());
  const ProgressFn none;
  // Separate seeds for the real subset and the noise, so changing one leaves the other alone.
  const metrics::GaussianStats real = real_statistics(*ex, data, cfg.n, cfg.batch, cfg.seed ^ 0x7265616cULL,
                                                      cfg.progress ? progress_printer("real") : none);
  const GeneratedScores fake = generated_statistics(*ex, G, cfg.n, cfg.batch, cfg.seed, cfg.minmax,
                                                    cfg.progress ? progress_printer("generated") : none);

  EvalResult r;
  r.fid = metrics::fid(real, fake.stats);
  r.is_mean = fake.is.mean;
  r.is_std = fake.is.std;
  r.n = cfg.n;
  r.extractor = ex->name();
  r.ckpt = path;
  r.json_path =
      cfg.json.empty() ? (run_directory(path) / ("eval_" + r.extractor + ".json")).string() : cfg.json;
  const nlohmann::ordered_json out{
      {"fid", r.fid},       {"is_mean", r.is_mean}, {"is_std", r.is_std},     {"extractor", r.extractor},
      {"n", r.n},           {"ckpt", r.ckpt},       {"iteration", iteration}, {"dataset", dataset},
      {"weights", weights}, {"minmax", cfg.minmax}, {"seed", cfg.seed}};
  write_text_atomic(r.json_path, out.dump(2) + "\n");
  const char* label = r.extractor == "lenet" ? "LeNet" : "Inception";
  std::printf("FID-%s %.9g\nIS-%s  %.6g +- %.3g\n", label, r.fid, label, r.is_mean, r.is_std);
  std::fprintf(stderr, "xgan eval: wrote %s\n", r.json_path.c_str());
  return r;
}

namespace cli {

Run add_eval(CLI::App& app) {
  auto cfg = std::make_shared<EvalConfig>();
  auto no_minmax = std::make_shared<bool>(false);
  CLI::App* sub = app.add_subcommand(
      "eval",
      "FID and IS of a trained generator: n samples of G (eval mode) against n images of the data set's\n"
      "training split, both as 0..255 integers, through a feature extractor: the offline LeNet of\n"
      "`xgan train-classifier` (FID-LeNet / IS-LeNet, default) or the FID Inception (weights file).\n"
      "Prints the scores and writes them as JSON.");
  sub->add_option("--ckpt", cfg->ckpt, "A training checkpoint file, or a run's --out directory")
      ->required()
      ->check(CLI::ExistingPath);
  sub->add_option("--data", cfg->data_dir,
                  "Data set directory (default: the one the checkpoint was trained on)");
  sub->add_option("--dataset", cfg->dataset, "Data set (default: the checkpoint's)")
      ->check(CLI::IsMember({"mnist", "fashion-mnist", "cifar10"}));
  sub->add_option("--n", cfg->n, "Number of real and of generated images")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{10}, int64_t{1} << 40));
  sub->add_option("--extractor", cfg->extractor, "Feature extractor")
      ->capture_default_str()
      ->check(CLI::IsMember({"lenet", "inception"}));
  sub->add_option(
      "--weights", cfg->weights,
      "Extractor weights (safetensors). lenet: default runs/lenet-<dataset>.safetensors (made by\n"
      "xgan train-classifier); inception: required");
  sub->add_option("--batch", cfg->batch,
                  "Images per batch; the per-batch min-max scaling of generated images depends on it")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  sub->add_option("--json", cfg->json, "Output JSON (default: eval_<extractor>.json in the run's directory)");
  sub->add_option("--seed", cfg->seed, "Seed of the noise and of the choice of real images")
      ->capture_default_str();
  sub->add_flag(
      "--no-minmax", *no_minmax,
      "Map generated images to 0..255 as (x + 1) * 127.5 (rounded, clamped) instead of the paper's\n"
      "per-batch min-max");
  sub->add_option("--device", cfg->device, cli::kDeviceHelp)
      ->capture_default_str()
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}));
  sub->footer("Example: xgan eval --ckpt runs/mnist-dcgan --n 5000   (see docs/metrics.md)");
  return [cfg, no_minmax] {
    EvalConfig c = *cfg;
    c.minmax = !*no_minmax;
    evaluate_checkpoint(c);
    return 0;
  };
}

}  // namespace cli

}  // namespace xgan
