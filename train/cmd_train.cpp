// `xgan train` and `xgan sample`: the CLI11 front ends of train/trainer.h. Options are checked
// here (positive counts, known choices) so a typo fails before any data is loaded.
// Try: xgan train --help, xgan sample --help.
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>

#include "train/commands.h"
#include "train/trainer.h"

namespace xgan::cli {

namespace {
// CLI11's PositiveNumber prints its range as 2.2e-308 .. 1.8e308; these say what is wanted.
CLI::Validator positive_int() {
  return CLI::Validator(
      [](std::string& v) {
        char* end = nullptr;
        errno = 0;
        const long long x = std::strtoll(v.c_str(), &end, 10);
        return end != v.c_str() && *end == '\0' && errno == 0 && x > 0
                   ? std::string()
                   : "must be a positive integer, got " + v;
      },
      "POSITIVE");
}
CLI::Validator positive_real() {
  return CLI::Validator(
      [](std::string& v) {
        char* end = nullptr;
        const double x = std::strtod(v.c_str(), &end);
        return end != v.c_str() && *end == '\0' && x > 0 && std::isfinite(x)
                   ? std::string()
                   : "must be a positive number, got " + v;
      },
      "POSITIVE");
}
}  // namespace

Run add_train(CLI::App& app) {
  auto cfg = std::make_shared<TrainConfig>();
  auto resume = std::make_shared<bool>(false);
  CLI::App* sub = app.add_subcommand(
      "train",
      "Train a GAN (the paper's DCGAN-style G and D): each iteration one D step, then one G step, both with\n"
      "Adam; fresh N(0,1) noise for each step. Give the length with --iters or --epochs.");
  sub->add_option("--dataset", cfg->dataset, "Data set")
      ->capture_default_str()
      ->check(CLI::IsMember({"mnist", "fashion-mnist", "cifar10"}));
  sub->add_option(
         "--data-dir", cfg->data_dir,
         "Directory with the data set's files: MNIST/Fashion-MNIST IDX (train-images-idx3-ubyte[.gz],\n"
         "train-labels-idx1-ubyte[.gz]) or CIFAR-10 binary batches (data_batch_{1..5}.bin).\n"
         "`bash scripts/get_data.sh data/mnist` fetches MNIST")
      ->capture_default_str();
  sub->add_option(
         "--loss", cfg->loss,
         "GAN objective: dcgan (D ends in a sigmoid, BCE), wgan-gp (Wasserstein loss + gradient penalty)\n"
         "or ragan (relativistic average GAN)")
      ->capture_default_str()
      ->check(CLI::IsMember({"dcgan", "wgan-gp", "ragan"}));
  sub->add_option("--image-size", cfg->image_size,
                  "Image side in pixels, a power of two >= 16 (MNIST's 28 is resized)")
      ->capture_default_str()
      ->check(CLI::Validator(
          [](std::string& v) {
            char* end = nullptr;
            const long s = std::strtol(v.c_str(), &end, 10);
            const bool ok = end && *end == '\0' && s >= 16 && (s & (s - 1)) == 0;
            return ok ? std::string() : "must be a power of two >= 16, got " + v;
          },
          "POW2>=16"));
  sub->add_option("--width", cfg->width, "Feature maps of G's last and D's first hidden layer (h)")
      ->capture_default_str()
      ->check(positive_int());
  sub->add_option("--batch", cfg->batch,
                  "Images per batch (the last incomplete batch of an epoch is dropped)")
      ->capture_default_str()
      ->check(positive_int());
  sub->add_option("--lr", cfg->lr, "Adam learning rate of both nets (betas 0.5, 0.999)")
      ->capture_default_str()
      ->check(positive_real());
  // Exactly one of --iters / --epochs; CLI11 reports a missing or doubled one while parsing.
  CLI::Option_group* length = sub->add_option_group("length", "How long to train (give exactly one)");
  length->add_option("--iters", cfg->iters, "Total iterations (one D step + one G step each)")
      ->check(positive_int());
  length
      ->add_option("--epochs", cfg->epochs,
                   "Total epochs (passes over the data set, last partial batch dropped)")
      ->check(positive_int());
  length->require_option(1);
  sub->add_option(
         "--seed", cfg->seed,
         "Seed of every random stream (initialisation, noise, shuffling, fixed sample noise):\n"
         "the same seed and options give the same run, bit for bit on the CPU with the same number of\n"
         "OpenMP threads (reductions are split by thread)")
      ->capture_default_str();
  sub->add_option(
         "--out", cfg->out_dir,
         "Output directory; gets log.jsonl, samples_<iter>.png, samples_latest.png and ckpt/ckpt.safetensors")
      ->capture_default_str();
  sub->add_flag(
      "--resume", *resume,
      "Continue the run whose checkpoint is in --out (same data set, loss, sizes, batch, lr, seed,\n"
      "gp-lambda and XAI options; --iters/--epochs may be raised). On the CPU, with the same thread count, "
      "the result\n"
      "equals an uninterrupted run's bit for bit");
  sub->add_option("--gp-lambda", cfg->gp_lambda,
                  "Weight of WGAN-GP's gradient penalty (the authors' code effectively used 1)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  add_xai_options(sub, cfg->xai, cfg->guidance, cfg->xai_bn, cfg->xai_norm);
  sub->add_option("--log-every", cfg->log_every,
                  "Append a line to log.jsonl (iteration, epoch, loss_D, loss_G, gp, ms_per_iter, data_ms)\n"
                  "and print progress every N iterations")
      ->capture_default_str()
      ->check(positive_int());
  sub->add_option(
         "--sample-every", cfg->sample_every,
         "Write an 8x8 grid of G's samples on a fixed noise batch every N iterations; G runs in eval\n"
         "mode (batch norm with its running statistics)")
      ->capture_default_str()
      ->check(positive_int());
  sub->add_option("--ckpt-every", cfg->ckpt_every,
                  "Write the checkpoint (replacing the previous one atomically) every N iterations")
      ->capture_default_str()
      ->check(positive_int());
  sub->add_option("--eval-every", cfg->eval_every,
                  "Score G with FID-LeNet / IS-LeNet every N iterations and at the end (fid_lenet, is_lenet\n"
                  "in log.jsonl); 0 = off. Needs the classifier of xgan train-classifier")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--eval-n", cfg->eval_n, "Real and generated images per score (--eval-every)")
      ->capture_default_str()
      ->check(positive_int());
  sub->add_option("--eval-weights", cfg->eval_weights,
                  "The classifier for --eval-every (default runs/lenet-<dataset>.safetensors)");
  sub->add_option(
         "--device", cfg->device,
         "cpu, cuda (needs a CUDA build whose backend runs training) or auto (cuda when usable, else cpu)")
      ->capture_default_str()
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}));
  sub->footer(
      "Defaults follow the paper: Adam lr 1e-4, betas (0.5, 0.999), batch 32, z 128, width 128, 32x32 "
      "images.\n"
      "The log, samples and checkpoint are also written at the last iteration. A NaN or Inf loss stops the "
      "run\n"
      "(exit code 3) and leaves the last good checkpoint as it was.\n"
      "Example: xgan train --dataset mnist --data-dir data/mnist --iters 2000 --out runs/mnist");
  return [cfg, resume] { return train(*cfg, *resume); };
}

Run add_sample(CLI::App& app) {
  struct SampleArgs {
    std::string ckpt, out = "samples.png";
    uint64_t seed = 0;
    int n = 64;
  };
  auto args = std::make_shared<SampleArgs>();
  CLI::App* sub = app.add_subcommand(
      "sample",
      "Write a PNG grid (8 per row, 2-px black padding) of generator samples from a training checkpoint.\n"
      "G runs in eval mode (batch norm with its running statistics).");
  sub->add_option("--ckpt", args->ckpt,
                  "A checkpoint file, or a run's --out directory (its ckpt/ckpt.safetensors is used)")
      ->required()
      ->check(CLI::ExistingPath);
  sub->add_option("--out", args->out, "Output PNG file")->capture_default_str();
  auto* seed = sub->add_option("--seed", args->seed,
                               "Noise seed; without it, the run's fixed sample noise, so the grid matches\n"
                               "the run's samples_<iter>.png at the checkpoint's iteration");
  sub->add_option("--n", args->n, "Number of samples")->capture_default_str()->check(positive_int());
  return [args, seed] {
    sample_from_checkpoint(args->ckpt, args->out, args->n,
                           seed->count() ? std::optional<uint64_t>(args->seed) : std::nullopt);
    std::printf("xgan sample: wrote %s\n", args->out.c_str());
    return 0;
  };
}

}  // namespace xgan::cli
