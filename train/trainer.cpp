// The trainer (train/trainer.h): the loop, its log, sample grids and resumable checkpoints.
// A checkpoint holds everything the loop's future depends on (weights, BN buffers, both Adam
// states, the noise generator's Philox state, the loader's epoch and position), so continuing
// from it replays exactly the numbers an uninterrupted run would compute.
// Tested by tests/test_trainer.cpp.
#include "train/trainer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/optim.h"
#include "engine/rng.h"
#include "engine/safetensors.h"
#include "losses/losses.h"
#include "models/gan.h"
#include "train/eval.h"
#include "train/step.h"

// The PNG writer; static so another translation unit may include its own copy.
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>

namespace xgan {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr int kFormatVersion = 1;
constexpr const char* kFormatName = "xgan-checkpoint";
constexpr int kSampleCount = 64;  // the fixed noise batch: an 8x8 grid

// Each random stream gets its own Philox key, derived from the run's seed (splitmix64), so the
// streams never overlap and adding draws to one leaves the others unchanged.
enum Stream : uint64_t {
  kStreamInit = 1,
  kStreamNoise = 2,
  kStreamFixedNoise = 3,
  kStreamLoader = 4,
  kStreamEval = 5  // --eval-every: the real subset and the generated noise
};
uint64_t derive_seed(uint64_t seed, Stream stream) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (static_cast<uint64_t>(stream) + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// ---- files -----------------------------------------------------------------------------------

}  // namespace

// Writes bytes to path.tmp, flushes them to disk and renames over path.
void write_file_atomic(const std::string& path, const void* data, size_t n) {
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) throw std::runtime_error("cannot write " + tmp + ": " + std::strerror(errno));
  const char* p = static_cast<const char*>(data);
  size_t left = n;
  while (left > 0) {
    ssize_t w = ::write(fd, p, left);
    if (w < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      throw std::runtime_error("cannot write " + tmp + ": " + std::strerror(e));
    }
    p += w;
    left -= static_cast<size_t>(w);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    ::unlink(tmp.c_str());
    throw std::runtime_error("cannot flush " + tmp + ": " + std::strerror(errno));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    throw std::runtime_error("cannot rename " + tmp + " to " + path + ": " + std::strerror(errno));
  }
}

namespace {

// ---- config ----------------------------------------------------------------------------------

// The part of the config a checkpoint records; everything but iters/epochs, paths, intervals and
// the device must match on resume, because the numbers of the run depend on it.
json config_json(const TrainConfig& c, int channels) {
  return json{{"dataset", c.dataset},
              {"loss", c.loss},
              {"image_size", c.image_size},
              {"width", c.width},
              {"channels", channels},
              {"z_dim", c.z_dim},
              {"batch", c.batch},
              {"lr", c.lr},
              {"beta1", c.beta1},
              {"beta2", c.beta2},
              {"seed", c.seed},
              {"gp_lambda", c.gp_lambda},
              {"iters", c.iters},
              {"epochs", c.epochs},
              {"data_dir", c.data_dir},
              {"xai", c.xai},
              {"guidance", c.guidance},
              {"xai_bn", c.xai_bn},
              {"xai_norm", c.xai_norm}};
}

const char* const kMustMatch[] = {"dataset", "loss",     "image_size", "width",   "channels", "z_dim",
                                  "batch",   "lr",       "beta1",      "beta2",   "seed",     "gp_lambda",
                                  "xai",     "guidance", "xai_bn",     "xai_norm"};

void check_resume_config(const json& saved, const json& now, const std::string& path) {
  std::string diffs;
  // Checkpoints written before X-GAN guidance existed trained without it: read them as the defaults.
  const json before_xai = config_json(TrainConfig{}, 1);
  for (const char* key : kMustMatch) {
    const std::string k = key;
    if (!saved.contains(key) && (k == "xai" || k == "guidance" || k == "xai_bn" || k == "xai_norm")) {
      if (before_xai[key] != now[key])
        diffs += std::string("\n  ") + key + ": checkpoint " + before_xai[key].dump() +
                 " (not recorded), now " + now[key].dump();
      continue;
    }
    if (!saved.contains(key)) {
      diffs += std::string("\n  ") + key + ": missing in the checkpoint";
      continue;
    }
    if (saved[key] != now[key])
      diffs += std::string("\n  ") + key + ": checkpoint " + saved[key].dump() + ", now " + now[key].dump();
  }
  if (!diffs.empty())
    throw std::runtime_error("cannot resume from " + path +
                             ": its training config differs from this command's:" + diffs +
                             "\n(only --iters/--epochs, --data-dir, --out, the *-every intervals and"
                             " --device may change on resume)");
}

void validate(const TrainConfig& c) {
  auto bad = [](const std::string& m) { throw std::runtime_error("train: " + m); };
  if (c.image_size < 16 || (c.image_size & (c.image_size - 1)) != 0)
    bad("image size must be a power of two >= 16, got " + std::to_string(c.image_size));
  if (c.width < 1) bad("width must be positive");
  if (c.batch < 1) bad("batch must be positive");
  if (c.z_dim < 1) bad("z dimension must be positive");
  if (!(c.lr > 0) || !std::isfinite(c.lr)) bad("learning rate must be positive");
  if (c.iters < 0 || c.epochs < 0) bad("iterations and epochs must not be negative");
  if (c.iters == 0 && c.epochs == 0) bad("give a number of iterations or of epochs");
  if (c.iters > 0 && c.epochs > 0) bad("give iterations or epochs, not both");
  if (c.log_every < 1 || c.sample_every < 1 || c.ckpt_every < 1)
    bad("the *-every intervals must be positive");
  if (c.eval_every < 0) bad("--eval-every must not be negative (0 turns scoring off)");
  if (c.eval_every > 0 && c.eval_n < 10) bad("--eval-n must be at least 10 (IS uses 10 splits)");
  if (!(c.gp_lambda >= 0)) bad("gp lambda must not be negative");
  if (c.out_dir.empty()) bad("the output directory is empty");
  try {
    parse_xai_method(c.xai);
    parse_guidance(c.guidance);
    parse_xai_bn(c.xai_bn);
    parse_xai_norm(c.xai_norm);
  } catch (const std::exception& e) {
    bad(e.what());
  }
}

// ---- device ----------------------------------------------------------------------------------

// Runs one tiny training step on the GPU; returns "" when it works, else why not.
std::string probe_cuda(LossKind loss) {
  try {
    const Device dev{DeviceType::cuda, 0};
    GanConfig gc{16, 4, 1, 8};
    GanGenerator G(gc);
    GanDiscriminator D(gc, loss_uses_sigmoid(loss));
    Generator rng(1);
    G.init_dcgan(rng);
    D.init_dcgan(rng);
    G.to(DType::f32, dev);
    D.to(DType::f32, dev);
    Adam oG(G.parameter_tensors()), oD(D.parameter_tensors());
    StepInputs in{
        rng.normal({2, 1, 16, 16}, 0, 1, DType::f32, dev), rng.normal({2, 8, 1, 1}, 0, 1, DType::f32, dev),
        rng.normal({2, 8, 1, 1}, 0, 1, DType::f32, dev), rng.uniform({2, 1, 1, 1}, 0, 1, DType::f32, dev)};
    train_step(G, D, oG, oD, in, StepOptions{loss, 10.0});
    return "";
  } catch (const std::exception& e) {
    return e.what();
  }
}

}  // namespace

Device resolve_device(const std::string& name, LossKind loss) {
  if (name == "cpu") return kCPU;
  if (name != "cuda" && name != "auto")
    throw std::runtime_error("unknown device '" + name + "' (cpu, cuda or auto)");
  const bool want = name == "cuda";
  std::string why;
  if (!cuda::compiled())
    why = "xgan was built without CUDA";
  else if (cuda::device_count() == 0)
    why = "no GPU is visible";
  else if (std::string p = probe_cuda(loss); !p.empty())
    why = "the CUDA backend cannot train yet (" + p + ")";
  if (why.empty()) return Device{DeviceType::cuda, 0};
  if (want) throw std::runtime_error("--device cuda: " + why + "; use --device cpu");
  if (cuda::compiled() && cuda::device_count() > 0)
    std::fprintf(stderr, "xgan train: --device auto: using the CPU, %s\n", why.c_str());
  return kCPU;
}

namespace {

// ---- state -----------------------------------------------------------------------------------

bool all_finite(const Tensor& t) {
  if (t.dtype() == DType::i64) return true;
  for (double x : t.to_vector())
    if (!std::isfinite(x)) return false;
  return true;
}

bool all_finite(const Module& m) {
  for (const auto& [name, t] : m.state_dict())
    if (!all_finite(t)) return false;
  return true;
}

std::map<std::string, Tensor> with_prefix(const std::map<std::string, Tensor>& tensors,
                                          const std::string& prefix, bool strip) {
  std::map<std::string, Tensor> out;
  for (const auto& [name, t] : tensors)
    if (name.rfind(prefix, 0) == 0) out.emplace(strip ? name.substr(prefix.size()) : name, t);
  return out;
}

void save_adam(const Module& m, Adam& opt, const std::string& prefix, std::map<std::string, Tensor>& out,
               json& steps) {
  const auto& params = m.parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    out[prefix + ".exp_avg." + params[i].name] = opt.exp_avg()[i];
    out[prefix + ".exp_avg_sq." + params[i].name] = opt.exp_avg_sq()[i];
    steps[params[i].name] = opt.steps()[i];
  }
}

void load_adam(const Module& m, Adam& opt, const std::string& prefix, const std::map<std::string, Tensor>& in,
               const json& steps, const std::string& path) {
  const auto& params = m.parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    const std::string& name = params[i].name;
    for (auto [kind, dst] :
         {std::pair{".exp_avg.", &opt.exp_avg()[i]}, std::pair{".exp_avg_sq.", &opt.exp_avg_sq()[i]}}) {
      auto it = in.find(prefix + kind + name);
      if (it == in.end()) throw std::runtime_error(path + ": missing tensor " + prefix + kind + name);
      if (it->second.shape() != dst->shape())
        throw std::runtime_error(path + ": " + prefix + kind + name + " has shape " +
                                 shape_str(it->second.shape()) + ", expected " + shape_str(dst->shape()));
      dst->copy_(it->second);
    }
    if (!steps.contains(name))
      throw std::runtime_error(path + ": no Adam step count for " + prefix + "." + name);
    opt.steps()[i] = steps[name].get<int64_t>();
  }
}

struct Checkpoint {
  TensorFile file;
  json meta;
};

Checkpoint read_checkpoint(const std::string& path) {
  Checkpoint c;
  c.file = load_safetensors(path);
  auto it = c.file.metadata.find("xgan");
  if (it == c.file.metadata.end())
    throw std::runtime_error(path + ": not an xgan training checkpoint (no 'xgan' metadata)");
  try {
    c.meta = json::parse(it->second);
  } catch (const std::exception& e) {
    throw std::runtime_error(path + ": malformed checkpoint metadata: " + e.what());
  }
  const int version = c.meta.value("format_version", 0);
  if (version != kFormatVersion)
    throw std::runtime_error(path + ": checkpoint format version " + std::to_string(version) +
                             ", this xgan reads " + std::to_string(kFormatVersion));
  return c;
}

// Keeps the log lines up to `iteration` (a crash after the last checkpoint may have logged more).
void truncate_log(const std::string& path, int64_t iteration) {
  std::ifstream in(path);
  if (!in) return;
  std::string kept, line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.contains("iteration")) continue;
    if (j["iteration"].get<int64_t>() <= iteration) kept += line + "\n";
  }
  in.close();
  write_file_atomic(path, kept.data(), kept.size());
}

// ---- output ----------------------------------------------------------------------------------

Tensor generate_samples(GanGenerator& G, const Tensor& z) {
  NoGradGuard no_grad;
  return G.forward(z, /*train=*/false).to(kCPU);
}

}  // namespace

std::string resolve_checkpoint_file(const std::string& p) {
  if (fs::is_directory(p)) {
    for (const fs::path& c : {fs::path(p) / "ckpt" / "ckpt.safetensors", fs::path(p) / "ckpt.safetensors"})
      if (fs::exists(c)) return c.string();
    throw std::runtime_error("no checkpoint in " + p +
                             " (looked for ckpt/ckpt.safetensors and ckpt.safetensors)");
  }
  if (!fs::exists(p)) throw std::runtime_error("checkpoint " + p + " does not exist");
  return p;
}

std::string checkpoint_path(const std::string& out_dir) {
  return (fs::path(out_dir) / "ckpt" / "ckpt.safetensors").string();
}

void write_image_grid(const std::string& path, const Tensor& images, int nrow, int padding) {
  if (images.dim() != 4 || (images.size(1) != 1 && images.size(1) != 3))
    throw std::runtime_error("write_image_grid: expected [N, 1 or 3, H, W] images, got " + images.str());
  if (nrow < 1 || padding < 0) throw std::runtime_error("write_image_grid: bad nrow or padding");
  const std::vector<double> v = images.to_vector();
  const int64_t n = images.size(0), c = images.size(1), h = images.size(2), w = images.size(3);
  const int64_t cols = std::min<int64_t>(nrow, std::max<int64_t>(n, 1));
  const int64_t rows = (n + cols - 1) / cols;
  const int64_t H = rows * (h + padding) + padding, W = cols * (w + padding) + padding;
  std::vector<uint8_t> pix(static_cast<size_t>(H * W * c), 0);
  for (int64_t k = 0; k < n; ++k) {
    const int64_t y0 = (k / cols) * (h + padding) + padding, x0 = (k % cols) * (w + padding) + padding;
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x) {
          double u = (v[static_cast<size_t>(((k * c + ch) * h + y) * w + x)] + 1.0) * 0.5 * 255.0 + 0.5;
          u = std::isfinite(u) ? std::clamp(u, 0.0, 255.0) : 0.0;
          pix[static_cast<size_t>(((y0 + y) * W + (x0 + x)) * c + ch)] = static_cast<uint8_t>(u);
        }
  }
  std::string png;
  auto sink = [](void* ctx, void* data, int size) {
    static_cast<std::string*>(ctx)->append(static_cast<const char*>(data), static_cast<size_t>(size));
  };
  if (!stbi_write_png_to_func(sink, &png, static_cast<int>(W), static_cast<int>(H), static_cast<int>(c),
                              pix.data(), static_cast<int>(W * c)))
    throw std::runtime_error("cannot encode PNG " + path);
  write_file_atomic(path, png.data(), png.size());
}

int train(const TrainConfig& cfg, bool resume) {
  validate(cfg);
  if (cfg.dataset != "mnist" && cfg.dataset != "fashion-mnist" && cfg.dataset != "cifar10")
    throw std::runtime_error("unknown data set '" + cfg.dataset + "' (mnist, fashion-mnist or cifar10)");
  parse_loss(cfg.loss);  // fail on a bad loss before the (slow) data load
  const Dataset data = load_dataset(cfg.dataset, cfg.data_dir, cfg.image_size, /*train=*/true);
  return train(cfg, resume, data);
}

int train(const TrainConfig& cfg, bool resume, const Dataset& data) {
  using clock = std::chrono::steady_clock;
  validate(cfg);
  const LossKind loss = parse_loss(cfg.loss);
  const bool wgan = loss == LossKind::wgan_gp;
  if (data.images.dim() != 4 || data.images.size(2) != cfg.image_size ||
      data.images.size(3) != cfg.image_size)
    throw std::runtime_error("train: data set images are " + data.images.str() + ", expected size " +
                             std::to_string(cfg.image_size) + "x" + std::to_string(cfg.image_size));
  const int channels = static_cast<int>(data.images.size(1));
  const json config = config_json(cfg, channels);

  Loader loader(data, cfg.batch, derive_seed(cfg.seed, kStreamLoader));
  const int64_t per_epoch = loader.batches_per_epoch();
  if (per_epoch < 1)
    throw std::runtime_error("train: the data set has " + std::to_string(data.images.size(0)) +
                             " images, fewer than one batch of " + std::to_string(cfg.batch));
  const int64_t total = cfg.iters > 0 ? cfg.iters : cfg.epochs * per_epoch;

  const fs::path out(cfg.out_dir);
  const std::string ckpt_file = checkpoint_path(cfg.out_dir);
  const std::string log_file = (out / "log.jsonl").string();
  if (!resume && fs::exists(ckpt_file))
    throw std::runtime_error(ckpt_file +
                             " already exists: pass --resume to continue that run, or choose another --out");
  if (resume && !fs::exists(ckpt_file)) throw std::runtime_error("--resume: no checkpoint at " + ckpt_file);

  // Models, initialised from their own stream so the noise stream starts at offset 0.
  const GanConfig gc{cfg.image_size, cfg.width, channels, cfg.z_dim};
  GanGenerator G(gc);
  GanDiscriminator D(gc, loss_uses_sigmoid(loss));
  {
    Generator init_rng(derive_seed(cfg.seed, kStreamInit));
    G.init_dcgan(init_rng);
    D.init_dcgan(init_rng);
  }
  Generator rng(derive_seed(cfg.seed, kStreamNoise));
  int64_t iteration = 0;
  std::optional<Checkpoint> restored;
  if (resume) {
    restored = read_checkpoint(ckpt_file);
    check_resume_config(restored->meta.at("config"), config, ckpt_file);
    const auto& t = restored->file.tensors;
    G.load_state_dict(with_prefix(t, "G.", true));
    D.load_state_dict(with_prefix(t, "D.", true));
  }
  const Device dev = resolve_device(cfg.device, loss);
  if (!dev.is_cpu()) {
    G.to(DType::f32, dev);
    D.to(DType::f32, dev);
  }
  const AdamConfig adam_cfg{cfg.lr, cfg.beta1, cfg.beta2, 1e-8, 0.0};
  Adam opt_G(G.parameter_tensors(), adam_cfg), opt_D(D.parameter_tensors(), adam_cfg);
  if (restored) {
    const json& m = restored->meta;
    load_adam(G, opt_G, "optG", restored->file.tensors, m.at("adam").at("G"), ckpt_file);
    load_adam(D, opt_D, "optD", restored->file.tensors, m.at("adam").at("D"), ckpt_file);
    rng.set_state(m.at("rng").at("seed").get<uint64_t>(), m.at("rng").at("offset").get<uint64_t>());
    loader.set_state(m.at("loader").at("epoch").get<int64_t>(), m.at("loader").at("position").get<int64_t>());
    iteration = m.at("iteration").get<int64_t>();
    restored.reset();
    truncate_log(log_file, iteration);
  }
  fs::create_directories(out / "ckpt");

  Tensor fixed_z = Generator(derive_seed(cfg.seed, kStreamFixedNoise))
                       .normal({kSampleCount, cfg.z_dim, 1, 1}, 0.0, 1.0, DType::f32, dev);
  StepOptions step_opt{loss, cfg.gp_lambda};
  step_opt.record_grads = false;
  step_opt.xai = parse_xai_method(cfg.xai);
  step_opt.guidance = parse_guidance(cfg.guidance);
  step_opt.xai_bn = parse_xai_bn(cfg.xai_bn);
  step_opt.xai_norm = parse_xai_norm(cfg.xai_norm);
  const Shape z_shape{cfg.batch, cfg.z_dim, 1, 1};

  if (iteration >= total) {
    std::fprintf(
        stderr,
        "xgan train: the checkpoint is at iteration %lld, the run asks for %lld; nothing to do (raise\n"
        "xgan train: --iters or --epochs to train further)\n",
        static_cast<long long>(iteration), static_cast<long long>(total));
    return 0;
  }
  // --eval-every: the classifier and the real images' statistics, once for the whole run.
  std::unique_ptr<TrainingScorer> scorer;
  if (cfg.eval_every > 0) {
    const std::string w = cfg.eval_weights.empty() ? default_lenet_path(cfg.dataset) : cfg.eval_weights;
    std::fprintf(stderr,
                 "xgan train: scoring FID-LeNet / IS-LeNet every %lld iterations on %lld images (%s)\n",
                 static_cast<long long>(cfg.eval_every), static_cast<long long>(cfg.eval_n), w.c_str());
    scorer = std::make_unique<TrainingScorer>(w, data, cfg.eval_n, derive_seed(cfg.seed, kStreamEval), dev);
  }
  std::fprintf(
      stderr,
      "xgan train: %s (%lld images, %lld batches/epoch), %s, %dx%d, width %d, batch %d, lr %g, on %s\n"
      "xgan train: %s iterations %lld..%lld into %s\n",
      cfg.dataset.c_str(), static_cast<long long>(data.images.size(0)), static_cast<long long>(per_epoch),
      loss_name(loss), cfg.image_size, cfg.image_size, cfg.width, cfg.batch, cfg.lr, dev.str().c_str(),
      resume ? "resuming:" : "training:", static_cast<long long>(iteration + 1),
      static_cast<long long>(total), cfg.out_dir.c_str());

  // A fresh run starts a fresh log (a run interrupted before its first checkpoint may have left one).
  std::ofstream log(log_file, resume ? std::ios::app : std::ios::trunc);
  if (!log) throw std::runtime_error("cannot open " + log_file);
  const bool tty = cfg.progress && ::isatty(::fileno(stderr));
  const auto t_start = clock::now();
  auto t_window = t_start, t_shown = t_start;
  const int64_t first = iteration;
  double data_ms_window = 0;
  int64_t window = 0;
  std::string last_progress;

  // Adds FID-LeNet / IS-LeNet of G (eval mode, fixed noise) to a log line and prints them.
  auto add_scores = [&](nlohmann::ordered_json& line, int64_t it) {
    const auto t0 = clock::now();
    const Scores s = scorer->score(G);
    const double secs = std::chrono::duration<double>(clock::now() - t0).count();
    line["fid_lenet"] = s.fid;
    line["is_lenet"] = s.is_mean;
    line["is_lenet_std"] = s.is_std;
    line["eval_s"] = std::round(secs * 1000.0) / 1000.0;
    if (!cfg.progress) return;
    char buf[200];
    std::snprintf(buf, sizeof buf, "iter %lld  FID-LeNet %.3f  IS-LeNet %.3f +- %.3f  (%lld images, %.1f s)",
                  static_cast<long long>(it), s.fid, s.is_mean, s.is_std, static_cast<long long>(cfg.eval_n),
                  secs);
    std::fprintf(stderr, tty ? "\r%-110s\n" : "%s\n", buf);
  };

  auto write_checkpoint = [&](int64_t it) {
    std::map<std::string, Tensor> tensors;
    for (const auto& [name, t] : G.state_dict()) tensors["G." + name] = t;
    for (const auto& [name, t] : D.state_dict()) tensors["D." + name] = t;
    json adam{{"G", json::object()}, {"D", json::object()}};
    save_adam(G, opt_G, "optG", tensors, adam["G"]);
    save_adam(D, opt_D, "optD", tensors, adam["D"]);
    json meta{{"format", kFormatName},
              {"format_version", kFormatVersion},
              {"config", config},
              {"iteration", it},
              {"epoch", (it - 1) / per_epoch},
              {"adam", adam},
              {"rng", {{"seed", rng.seed()}, {"offset", rng.offset()}}},
              {"loader", {{"epoch", loader.epoch()}, {"position", loader.position()}}},
              {"fixed_noise_seed", derive_seed(cfg.seed, kStreamFixedNoise)}};
    save_safetensors(ckpt_file, tensors, {{"format", kFormatName}, {"xgan", meta.dump()}});
  };

  // Every write to G's and D's weights below is an optimiser step (which bumps their versions):
  // the convolutions may keep their weights' transforms across iterations (engine/backend.h).
  FrozenParameters frozen;
  while (iteration < total) {
    const auto t0 = clock::now();
    Tensor real = loader.next();
    if (!dev.is_cpu()) real = real.to(dev);
    const auto t1 = clock::now();
    StepInputs in;
    in.real = real;
    in.z_d = rng.normal(z_shape, 0.0, 1.0, DType::f32, dev);
    in.z_g = rng.normal(z_shape, 0.0, 1.0, DType::f32, dev);
    // Drawn for every loss, so the noise stream does not depend on it (only WGAN-GP uses it).
    in.alpha = rng.uniform({cfg.batch, 1, 1, 1}, 0.0, 1.0, DType::f32, dev);
    StepRecord rec;
    try {
      rec = train_step(G, D, opt_G, opt_D, in, step_opt);
    } catch (const std::exception& e) {
      // BCE rejects a NaN probability (as PyTorch does), so a diverged DCGAN ends here rather
      // than with a NaN loss; report that as the divergence it is. Other errors propagate.
      if (all_finite(G) && all_finite(D) && all_finite(real)) throw;
      if (tty && !last_progress.empty()) std::fputc('\n', stderr);
      std::fprintf(stderr,
                   "xgan train: non-finite values at iteration %lld (%s); stopping.\nxgan train: %s\n",
                   static_cast<long long>(iteration + 1), e.what(),
                   fs::exists(ckpt_file) ? ("the last good checkpoint is intact: " + ckpt_file).c_str()
                                         : "no checkpoint was written before it");
      return kExitNonFinite;
    }
    ++iteration;
    ++window;
    data_ms_window += std::chrono::duration<double, std::milli>(t1 - t0).count();
    const int64_t epoch = (iteration - 1) / per_epoch;

    const double loss_D = rec.loss_D.item(), loss_G = rec.loss_G.item();
    const double gp = wgan && rec.gp.defined() ? rec.gp.item() : 0.0;
    if (!std::isfinite(loss_D) || !std::isfinite(loss_G) || !std::isfinite(gp)) {
      if (tty && !last_progress.empty()) std::fputc('\n', stderr);
      std::fprintf(stderr,
                   "xgan train: non-finite loss at iteration %lld (loss_D=%g, loss_G=%g%s); stopping.\n"
                   "xgan train: %s\n",
                   static_cast<long long>(iteration), loss_D, loss_G,
                   wgan ? (", gp=" + std::to_string(gp)).c_str() : "",
                   fs::exists(ckpt_file) ? ("the last good checkpoint is intact: " + ckpt_file).c_str()
                                         : "no checkpoint was written before it");
      return kExitNonFinite;
    }

    const bool last = iteration == total;
    const bool score_now = scorer && (iteration % cfg.eval_every == 0 || last);
    const auto now = clock::now();
    const double ms_done = std::chrono::duration<double, std::milli>(now - t_start).count();
    const double eta_s =
        ms_done / static_cast<double>(iteration - first) * static_cast<double>(total - iteration) / 1000.0;
    if (iteration % cfg.log_every == 0 || last || score_now) {
      const double ms =
          std::chrono::duration<double, std::milli>(now - t_window).count() / static_cast<double>(window);
      nlohmann::ordered_json line{
          {"iteration", iteration}, {"epoch", epoch}, {"loss_D", loss_D}, {"loss_G", loss_G}};
      if (wgan) line["gp"] = gp;
      line["ms_per_iter"] = std::round(ms * 1000.0) / 1000.0;
      line["data_ms"] = std::round(data_ms_window / static_cast<double>(window) * 1000.0) / 1000.0;
      if (score_now) add_scores(line, iteration);
      log << line.dump() << '\n';
      log.flush();
      t_window = score_now ? clock::now() : now;  // the next window's ms_per_iter leaves scoring out
      data_ms_window = 0;
      window = 0;
    }
    const bool show = cfg.progress && (tty ? (now - t_shown > std::chrono::milliseconds(100) || last)
                                           : (iteration % cfg.log_every == 0 || last));
    if (show) {
      char buf[256];
      std::snprintf(
          buf, sizeof buf, "iter %lld/%lld  epoch %lld  loss_D %.4f  loss_G %.4f%s  %.1f ms/iter  ETA %s",
          static_cast<long long>(iteration), static_cast<long long>(total), static_cast<long long>(epoch),
          loss_D, loss_G, wgan ? ("  gp " + std::to_string(gp).substr(0, 6)).c_str() : "",
          ms_done / static_cast<double>(iteration - first), format_seconds(eta_s).c_str());
      last_progress = buf;
      if (tty)
        std::fprintf(stderr, "\r%-110s", buf);
      else
        std::fprintf(stderr, "%s\n", buf);
      std::fflush(stderr);
      t_shown = now;
    }
    if (iteration % cfg.sample_every == 0 || last) {
      const Tensor imgs = generate_samples(G, fixed_z);
      char name[64];
      std::snprintf(name, sizeof name, "samples_%06lld.png", static_cast<long long>(iteration));
      write_image_grid((out / name).string(), imgs);
      write_image_grid((out / "samples_latest.png").string(), imgs);
    }
    if (iteration % cfg.ckpt_every == 0 || last) {
      // A weight can turn NaN in the update after finite losses; such a state is never saved.
      if (!all_finite(G) || !all_finite(D)) {
        if (tty) std::fputc('\n', stderr);
        std::fprintf(stderr,
                     "xgan train: non-finite weights after iteration %lld; stopping without a checkpoint.\n",
                     static_cast<long long>(iteration));
        return kExitNonFinite;
      }
      write_checkpoint(iteration);
    }
  }
  if (tty) std::fputc('\n', stderr);
  const double secs = std::chrono::duration<double>(clock::now() - t_start).count();
  std::fprintf(stderr,
               "xgan train: done, %lld iterations in %s\n"
               "  samples:    %s\n  log:        %s\n  checkpoint: %s\n",
               static_cast<long long>(total - first), format_seconds(secs).c_str(),
               (out / "samples_latest.png").string().c_str(), log_file.c_str(), ckpt_file.c_str());
  return 0;
}

void sample_from_checkpoint(const std::string& ckpt, const std::string& out_png, int n,
                            std::optional<uint64_t> seed) {
  if (n < 1) throw std::runtime_error("sample: n must be positive");
  const std::string path = resolve_checkpoint_file(ckpt);
  TensorFile file = load_safetensors(path);
  GanConfig gc;
  uint64_t noise_seed = seed.value_or(0);
  auto it = file.metadata.find("xgan");
  if (it != file.metadata.end()) {
    const json meta = json::parse(it->second);
    const json& c = meta.at("config");
    gc = GanConfig{c.at("image_size").get<int>(), c.at("width").get<int>(), c.at("channels").get<int>(),
                   c.at("z_dim").get<int>()};
    if (!seed) noise_seed = meta.at("fixed_noise_seed").get<uint64_t>();
  } else {
    // A plain weights file (e.g. from `xgan step`): the shapes say what G is.
    gc = infer_generator_config(file.tensors, "G.");
  }
  GanGenerator G(gc);
  G.load_state_dict(with_prefix(file.tensors, "G.", true));
  Generator rng(noise_seed);
  const Tensor z = rng.normal({n, gc.z_dim, 1, 1});
  write_image_grid(out_png, generate_samples(G, z));
}

}  // namespace xgan
