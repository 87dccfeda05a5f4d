// The GAN trainer behind `xgan train` and `xgan sample`: the paper's loop (one D step then one G
// step per iteration, Adam for both nets), logging, sample grids and checkpoints that let a run
// be resumed bit-for-bit on the CPU (with the same OpenMP thread count: the CPU kernels split
// their reductions by thread, so another count rounds differently). Tested by tests/test_trainer.cpp (resume
// equivalence, atomic checkpoints, NaN handling, config mismatch, sample grids).
//
// What a run writes under out_dir:
//   log.jsonl               one JSON object per log step: iteration, epoch, loss_D, loss_G,
//                           gp (WGAN-GP), ms_per_iter, data_ms (averages since the previous line)
//   samples_<iter>.png      8x8 grid of G (eval mode: BN running statistics) on a fixed noise batch
//   samples_latest.png      the newest of those
//   ckpt/ckpt.safetensors   G.*, D.* (parameters and buffers), optG/optD.exp_avg(_sq).*, and in
//                           its metadata the config, iteration, Adam step counts, RNG and loader
//                           state; written to a temporary file and renamed (never half-written)
//
// Random streams: every stream is a Philox generator keyed by a seed derived from `seed`:
// initialisation, training noise (z_d, z_g, alpha), the fixed sample noise and the loader's
// shuffling. alpha ~ U(0,1) is drawn every iteration whatever the loss, so the noise stream (and
// so z) does not depend on the loss.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "engine/tensor.h"
#include "losses/losses.h"
#include "train/data.h"

namespace xgan {

struct TrainConfig {
  std::string dataset = "mnist";  // mnist | fashion-mnist | cifar10
  std::string data_dir = "data/mnist";
  std::string loss = "dcgan";  // dcgan | wgan-gp | ragan
  int image_size = 32;
  int width = 128;
  int batch = 32;
  int z_dim = 128;
  double lr = 1e-4, beta1 = 0.5, beta2 = 0.999;
  int64_t iters = 0;  // total iterations; when 0, epochs * batches per epoch
  int64_t epochs = 0;
  uint64_t seed = 0;
  std::string out_dir = "runs/train";
  double gp_lambda = 10.0;
  // X-GAN guidance of the G step (xai/xai.h; the names parse_xai_method & co. accept).
  std::string xai = "none";              // none | saliency | inputxgrad | deeplift
  std::string guidance = "elementwise";  // elementwise | as-coded
  std::string xai_bn = "captum";         // captum | eval
  std::string xai_norm = "batch";        // batch | sample
  int64_t log_every = 50, sample_every = 500, ckpt_every = 500;
  std::string device = "cpu";  // cpu | cuda | auto
  bool progress = true;        // the progress line on stderr
};

// Exit code of train() when a loss (or, at a checkpoint, a weight) becomes NaN or Inf.
inline constexpr int kExitNonFinite = 3;

// Trains (or, with resume, continues the run whose checkpoint is in cfg.out_dir) until the total
// iteration count. Returns 0 on success, kExitNonFinite when training diverged (the last good
// checkpoint is left untouched). Throws std::runtime_error on bad input: unknown data set or loss,
// missing data, a checkpoint already in out_dir without resume, a resume whose config differs
// from the checkpoint's (the message lists every difference), an unusable device.
int train(const TrainConfig& cfg, bool resume);
// The same on an already-loaded data set (its images must be [N, C, image_size, image_size]).
int train(const TrainConfig& cfg, bool resume, const Dataset& data);

// Writes bytes to path.tmp, flushes them and renames over path: a reader never sees half a file.
void write_file_atomic(const std::string& path, const void* data, size_t n);
inline void write_text_atomic(const std::string& path, const std::string& text) {
  write_file_atomic(path, text.data(), text.size());
}

// "cpu", "cuda" or "auto" (CUDA when a GPU is present and the backend can run a training step
// for `loss`). Throws with the reason when cuda was asked for and cannot be used.
Device resolve_device(const std::string& name, LossKind loss);

// out_dir/ckpt/ckpt.safetensors
std::string checkpoint_path(const std::string& out_dir);

// `xgan sample`: a grid of G's samples from a checkpoint (a file, a run's out_dir, or its ckpt/).
// Without a seed it uses the run's fixed noise, so with n = 64 the grid equals samples_latest.png
// of a run that ended at that checkpoint.
void sample_from_checkpoint(const std::string& ckpt, const std::string& out_png, int n,
                            std::optional<uint64_t> seed);

// Writes images [N, C, H, W] (C = 1 or 3, values in [-1, 1]) as a PNG grid with `nrow` images per
// row and `padding` black pixels around each (torchvision's make_grid + save_image layout:
// x -> floor((x + 1) / 2 * 255 + 0.5), clamped). Written to a temporary file and renamed.
void write_image_grid(const std::string& path, const Tensor& images, int nrow = 8, int padding = 2);

}  // namespace xgan
