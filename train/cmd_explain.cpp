// `xgan explain`: the raw explanation maps (xai/xai.h) of a discriminator on a batch of images,
// written under the key `maps` so they can be compared with another implementation (DESIGN.md,
// "The command-line contract"), and optionally drawn beside the images as a PNG.
// Try: xgan explain --d D.safetensors --images x.safetensors --loss dcgan --method saliency --out
// m.safetensors --png m.png
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/ops.h"
#include "engine/safetensors.h"
#include "losses/losses.h"
#include "models/gan.h"
#include "train/cli_device.h"
#include "train/commands.h"
#include "train/trainer.h"
#include "xai/xai.h"

namespace xgan::cli {

namespace {

struct ExplainArgs {
  std::string d, images, loss, method, xai_bn = "captum", out, png, device = "cpu";
};

// D's sizes from its weights: Start-Conv2d [h, C, 4, 4]; each middle block halves the map from
// s/2 down to 4, so m middle blocks mean s = 2^(m + 3).
GanConfig infer_discriminator_config(const std::map<std::string, Tensor>& tensors, const std::string& prefix,
                                     const std::string& where) {
  const Tensor* start = nullptr;
  int middle = 0;
  for (const auto& [key, t] : tensors) {
    if (key.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string name = canonical_param_name(key.substr(prefix.size()));
    if (name == "main.Start-Conv2d.weight") start = &t;
    if (name.rfind("main.Middle-Conv2d_", 0) == 0 && name.size() > 7 &&
        name.compare(name.size() - 7, 7, ".weight") == 0)
      ++middle;
  }
  if (!start)
    throw std::runtime_error(where + "no tensor " + prefix + "main.Start-Conv2d.weight (D's first conv)");
  if (start->dim() != 4 || start->size(2) != 4 || start->size(3) != 4)
    throw std::runtime_error(where + prefix + "main.Start-Conv2d.weight is " + shape_str(start->shape()) +
                             ", expected [width, channels, 4, 4]");
  if (middle < 1 || middle > 12)
    throw std::runtime_error(
        where + "found " + std::to_string(middle) + " " + prefix +
        "main.Middle-Conv2d_<n>.weight tensors; D needs at least one (image size >= 16)");
  GanConfig c;
  c.width = static_cast<int>(start->size(0));
  c.channels = static_cast<int>(start->size(1));
  c.image_size = 1 << (middle + 3);
  return c;
}

// Colour maps for v in [0, 1] (unsigned maps) or [-1, 1] (signed), as RGB in [0, 1].
void hot(float v, float rgb[3]) {  // black -> red -> yellow -> white
  v = std::clamp(v, 0.0f, 1.0f);
  rgb[0] = std::min(1.0f, 3 * v);
  rgb[1] = std::clamp(3 * v - 1, 0.0f, 1.0f);
  rgb[2] = std::clamp(3 * v - 2, 0.0f, 1.0f);
}
void diverging(float v, float rgb[3]) {  // blue (-1) -> white (0) -> red (+1)
  v = std::clamp(v, -1.0f, 1.0f);
  rgb[0] = v < 0 ? 1 + v : 1.0f;
  rgb[1] = 1 - std::fabs(v);
  rgb[2] = v > 0 ? 1 - v : 1.0f;
}

// A grid of (image | heat map) pairs, `pairs_per_row` per row, each tile enlarged by an integer
// factor to at least 64 px, 2 px black padding. Maps are summed over channels, then scaled per image
// by their max |value| (an all-zero map stays black / white).
void write_explanation_png(const std::string& path, const Tensor& images_in, const Tensor& maps_in,
                           bool is_signed) {
  const Tensor images = images_in.to(DType::f32), maps = maps_in.to(DType::f32);
  const int64_t n = images.size(0), c = images.size(1), s = images.size(2);
  const int64_t zoom = std::max<int64_t>(1, (64 + s - 1) / s), t = s * zoom, pad = 2;
  const int64_t pairs_per_row = std::min<int64_t>(n, 4), rows = (n + pairs_per_row - 1) / pairs_per_row;
  const int64_t W = pairs_per_row * 2 * (t + pad) + pad, H = rows * (t + pad) + pad;
  std::vector<float> rgb(static_cast<size_t>(3 * W * H), 0.0f);  // in [0, 1], black padding
  auto put = [&](int64_t y, int64_t x, const float col[3]) {
    for (int k = 0; k < 3; ++k) rgb[static_cast<size_t>((k * H + y) * W + x)] = col[k];
  };
  const float* img = images.data<float>();
  const float* map = maps.data<float>();
  std::vector<float> m(static_cast<size_t>(s * s));
  for (int64_t i = 0; i < n; ++i) {
    float peak = 0;
    for (int64_t p = 0; p < s * s; ++p) {
      float v = 0;
      for (int64_t k = 0; k < c; ++k) v += map[(i * c + k) * s * s + p];
      m[static_cast<size_t>(p)] = v;
      peak = std::max(peak, std::fabs(v));
    }
    const int64_t y0 = pad + (i / pairs_per_row) * (t + pad), x0 = pad + (i % pairs_per_row) * 2 * (t + pad);
    for (int64_t y = 0; y < t; ++y)
      for (int64_t x = 0; x < t; ++x) {
        const int64_t p = (y / zoom) * s + x / zoom;
        float col[3];
        for (int k = 0; k < 3; ++k) {
          const float v = img[(i * c + (c == 3 ? k : 0)) * s * s + p];
          col[k] = std::clamp((v + 1) / 2, 0.0f, 1.0f);
        }
        put(y0 + y, x0 + x, col);
        const float v = peak > 0 ? m[static_cast<size_t>(p)] / peak : 0.0f;
        if (is_signed)
          diverging(v, col);
        else
          hot(v, col);
        put(y0 + y, x0 + t + pad + x, col);
      }
  }
  // write_image_grid takes [-1, 1]; one image, no padding of its own.
  std::vector<float> pm1(rgb.size());
  for (size_t k = 0; k < rgb.size(); ++k) pm1[k] = 2 * rgb[k] - 1;
  write_image_grid(path, from_vector(pm1, {1, 3, H, W}), 1, 0);
}

int run_explain(const ExplainArgs& a) {
  const LossKind loss = parse_loss(a.loss);
  const XaiMethod method = parse_xai_method(a.method);
  if (method == XaiMethod::none) throw std::invalid_argument("explain: --method none explains nothing");
  const XaiBatchNorm bn = parse_xai_bn(a.xai_bn);
  const Device device = parse_device(a.device);

  // D's weights: bare names, or a file (such as a training checkpoint) whose D tensors carry `D.`.
  TensorFile dfile = load_safetensors(a.d);
  std::string prefix;
  for (const auto& [key, _] : dfile.tensors)
    if (key.rfind("D.", 0) == 0) prefix = "D.";
  GanConfig cfg = infer_discriminator_config(dfile.tensors, prefix, a.d + ": ");
  GanDiscriminator D(cfg, loss_uses_sigmoid(loss));
  try {
    D.load_state_dict(dfile.tensors, prefix);
  } catch (const std::exception& e) {
    throw std::runtime_error(a.d + ": " + e.what());
  }

  TensorFile xfile = load_safetensors(a.images);
  auto it = xfile.tensors.find("images");
  if (it == xfile.tensors.end()) {
    std::string have;
    for (const auto& [key, _] : xfile.tensors) have += (have.empty() ? "" : ", ") + key;
    throw std::runtime_error(a.images + ": no tensor 'images' [N, C, H, W] (the file has: " +
                             (have.empty() ? std::string("nothing") : have) + ")");
  }
  const Tensor x = it->second.to(DType::f32);
  if (x.dim() != 4 || x.size(0) < 1 || x.size(1) != cfg.channels || x.size(2) != cfg.image_size ||
      x.size(3) != cfg.image_size)
    throw std::runtime_error(a.images + ": images is " + shape_str(x.shape()) + ", but D (" + a.d +
                             ") takes [N, " + std::to_string(cfg.channels) + ", " +
                             std::to_string(cfg.image_size) + ", " + std::to_string(cfg.image_size) + "]");

  D.to(DType::f32, device);
  const Tensor maps = explain(D, x.to(device), method, bn).to(kCPU).to(DType::f32);
  const std::map<std::string, std::string> meta{{"loss", loss_name(loss)},
                                                {"method", xai_method_name(method)},
                                                {"xai_bn", a.xai_bn},
                                                {"image_size", std::to_string(cfg.image_size)},
                                                {"width", std::to_string(cfg.width)},
                                                {"channels", std::to_string(cfg.channels)},
                                                {"xgan", XGAN_VERSION}};
  save_safetensors(a.out, {{"maps", maps}}, meta);
  if (!a.png.empty()) write_explanation_png(a.png, x, maps, method != XaiMethod::saliency);
  std::printf("xgan explain: %s maps of a %s D (%dx%dx%d, width %d, bn %s) on %lld images -> %s%s%s\n",
              xai_method_name(method), loss_name(loss), cfg.channels, cfg.image_size, cfg.image_size,
              cfg.width, a.xai_bn.c_str(), static_cast<long long>(x.size(0)), a.out.c_str(),
              a.png.empty() ? "" : ", ", a.png.c_str());
  return 0;
}

}  // namespace

Run add_explain(CLI::App& app) {
  auto args = std::make_shared<ExplainArgs>();
  CLI::App* sub = app.add_subcommand(
      "explain",
      "Explain a discriminator on a batch of images: the raw XAI maps for the target T = sum_i D(x_i)\n"
      "(after the sigmoid for dcgan, the raw output otherwise), as X-GAN computes them in the G step.");
  sub->add_option("--d", args->d,
                  "D's weights (safetensors): state_dict names, bare or with the prefix D. (so a training\n"
                  "checkpoint works); image size, width and channels come from the shapes")
      ->required()
      ->check(CLI::ExistingFile);
  sub->add_option("--images", args->images, "Safetensors file with the tensor images [N, C, H, W] in [-1, 1]")
      ->required()
      ->check(CLI::ExistingFile);
  sub->add_option("--loss", args->loss, "The loss D was trained with; dcgan means D ends in a sigmoid")
      ->required()
      ->check(CLI::IsMember({"dcgan", "wgan-gp", "ragan"}));
  sub->add_option("--method", args->method,
                  "saliency |dT/dx|, inputxgrad x*dT/dx, or deeplift (rescale rule against a zero baseline)")
      ->required()
      ->check(CLI::IsMember({"saliency", "inputxgrad", "deeplift"}));
  sub->add_option(
         "--xai-bn", args->xai_bn,
         "D's batch norm: captum (train mode: batch statistics over the N images, or over [x; zeros] for\n"
         "deeplift, as the authors' captum call) or eval (running statistics, per image; DeepLIFT's\n"
         "completeness sum(maps) = D(x) - D(0) holds)")
      ->capture_default_str()
      ->check(CLI::IsMember({"eval", "captum"}));
  sub->add_option("--out", args->out,
                  "Output safetensors file: maps [N, C, H, W] (float32), the raw explanations")
      ->required();
  sub->add_option("--device", args->device, kDeviceHelp)->capture_default_str();
  sub->add_option(
      "--png", args->png,
      "Also draw each image beside its map (summed over channels, scaled per image by its max |value|):\n"
      "black-red-yellow-white for saliency, blue-white-red for the signed maps");
  return [args] { return run_explain(*args); };
}

}  // namespace xgan::cli
