// The FID Inception-v3 (models/inception.h) in engine ops: one table of BasicConv2d layers gives the
// parameter names and shapes (loader, converter, tests) and each layer's stride and padding (the
// forward), so the two cannot drift apart. The blocks are Inception-v3's A-E with the changes of the
// TF graph FID was defined on: average pools that ignore the padding, and a max pool in Mixed_7c.
// Tested by tests/test_inception.cpp against tests/golden/inception_reference.py.
#include "models/inception.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/safetensors.h"

namespace xgan {
namespace {

constexpr int64_t kFeatures = 2048;  // pool3
constexpr int64_t kClasses = 1008;   // the TF graph's 1008 outputs (1000 classes and 8 unused)
constexpr double kBnEps = 1e-3;      // TF's batch-norm epsilon, kept by the PyTorch ports

struct ConvSpec {
  std::string name;
  int64_t in, out, kh, kw;
  int stride;
  int pad_h, pad_w;
};

// Layers in the order of the PyTorch module's state_dict. Unless given, a layer has stride 1 and
// pads half its kernel on each axis ("same"); the 1x7/7x1 and 1x3/3x1 layers pad one axis only.
class SpecList {
 public:
  void conv(const std::string& name, int64_t in, int64_t out, int64_t kh, int64_t kw) {
    specs.push_back({name, in, out, kh, kw, 1, int(kh / 2), int(kw / 2)});
  }
  void conv(const std::string& name, int64_t in, int64_t out, int64_t k) { conv(name, in, out, k, k); }
  void valid(const std::string& name, int64_t in, int64_t out, int64_t k, int stride) {  // no padding
    specs.push_back({name, in, out, k, k, stride, 0, 0});
  }
  std::vector<ConvSpec> specs;
};

// Each block appends its layers and returns its output channels.
int64_t block_a(SpecList& l, const std::string& p, int64_t in, int64_t pool_features) {
  l.conv(p + ".branch1x1", in, 64, 1);
  l.conv(p + ".branch5x5_1", in, 48, 1);
  l.conv(p + ".branch5x5_2", 48, 64, 5);
  l.conv(p + ".branch3x3dbl_1", in, 64, 1);
  l.conv(p + ".branch3x3dbl_2", 64, 96, 3);
  l.conv(p + ".branch3x3dbl_3", 96, 96, 3);
  l.conv(p + ".branch_pool", in, pool_features, 1);
  return 64 + 64 + 96 + pool_features;
}
int64_t block_b(SpecList& l, const std::string& p, int64_t in) {
  l.valid(p + ".branch3x3", in, 384, 3, 2);
  l.conv(p + ".branch3x3dbl_1", in, 64, 1);
  l.conv(p + ".branch3x3dbl_2", 64, 96, 3);
  l.valid(p + ".branch3x3dbl_3", 96, 96, 3, 2);
  return 384 + 96 + in;
}
int64_t block_c(SpecList& l, const std::string& p, int64_t in, int64_t c7) {
  l.conv(p + ".branch1x1", in, 192, 1);
  l.conv(p + ".branch7x7_1", in, c7, 1);
  l.conv(p + ".branch7x7_2", c7, c7, 1, 7);
  l.conv(p + ".branch7x7_3", c7, 192, 7, 1);
  l.conv(p + ".branch7x7dbl_1", in, c7, 1);
  l.conv(p + ".branch7x7dbl_2", c7, c7, 7, 1);
  l.conv(p + ".branch7x7dbl_3", c7, c7, 1, 7);
  l.conv(p + ".branch7x7dbl_4", c7, c7, 7, 1);
  l.conv(p + ".branch7x7dbl_5", c7, 192, 1, 7);
  l.conv(p + ".branch_pool", in, 192, 1);
  return 4 * 192;
}
int64_t block_d(SpecList& l, const std::string& p, int64_t in) {
  l.conv(p + ".branch3x3_1", in, 192, 1);
  l.valid(p + ".branch3x3_2", 192, 320, 3, 2);
  l.conv(p + ".branch7x7x3_1", in, 192, 1);
  l.conv(p + ".branch7x7x3_2", 192, 192, 1, 7);
  l.conv(p + ".branch7x7x3_3", 192, 192, 7, 1);
  l.valid(p + ".branch7x7x3_4", 192, 192, 3, 2);
  return 320 + 192 + in;
}
int64_t block_e(SpecList& l, const std::string& p, int64_t in) {
  l.conv(p + ".branch1x1", in, 320, 1);
  l.conv(p + ".branch3x3_1", in, 384, 1);
  l.conv(p + ".branch3x3_2a", 384, 384, 1, 3);
  l.conv(p + ".branch3x3_2b", 384, 384, 3, 1);
  l.conv(p + ".branch3x3dbl_1", in, 448, 1);
  l.conv(p + ".branch3x3dbl_2", 448, 384, 3);
  l.conv(p + ".branch3x3dbl_3a", 384, 384, 1, 3);
  l.conv(p + ".branch3x3dbl_3b", 384, 384, 3, 1);
  l.conv(p + ".branch_pool", in, 192, 1);
  return 320 + 2 * 384 + 2 * 384 + 192;
}

const std::vector<ConvSpec>& conv_specs() {
  static const std::vector<ConvSpec> specs = [] {
    SpecList l;
    l.valid("Conv2d_1a_3x3", 3, 32, 3, 2);
    l.valid("Conv2d_2a_3x3", 32, 32, 3, 1);
    l.conv("Conv2d_2b_3x3", 32, 64, 3);
    l.conv("Conv2d_3b_1x1", 64, 80, 1);
    l.valid("Conv2d_4a_3x3", 80, 192, 3, 1);
    int64_t c = 192;
    c = block_a(l, "Mixed_5b", c, 32);
    c = block_a(l, "Mixed_5c", c, 64);
    c = block_a(l, "Mixed_5d", c, 64);
    c = block_b(l, "Mixed_6a", c);
    c = block_c(l, "Mixed_6b", c, 128);
    c = block_c(l, "Mixed_6c", c, 160);
    c = block_c(l, "Mixed_6d", c, 160);
    c = block_c(l, "Mixed_6e", c, 192);
    c = block_d(l, "Mixed_7a", c);
    c = block_e(l, "Mixed_7b", c);
    c = block_e(l, "Mixed_7c", c);
    if (c != kFeatures) throw std::logic_error("FidInception: layer table ends with " + std::to_string(c));
    return l.specs;
  }();
  return specs;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// TF1's resize of one plane: output d reads source d * in / out (no half-pixel offset), between
// floor and min(floor + 1, in - 1). The arithmetic is torch-fidelity's, in T: the scale rounded to
// T, then lerp along x on two rows and along y between them.
template <class T>
struct Taps {
  std::vector<int64_t> lo, hi;
  std::vector<T> frac;
};
template <class T>
Taps<T> tf1_taps(int64_t in, int64_t out) {
  Taps<T> t;
  const T scale = static_cast<T>(static_cast<double>(in) / static_cast<double>(out));
  for (int64_t d = 0; d < out; ++d) {
    const T src = static_cast<T>(d) * scale;
    const int64_t lo = static_cast<int64_t>(src);  // src >= 0: truncation is floor
    t.lo.push_back(lo);
    t.hi.push_back(std::min(lo + 1, in - 1));
    t.frac.push_back(src - static_cast<T>(lo));
  }
  return t;
}

template <class T>
void resize_tf1(const Tensor& x, Tensor& y) {
  const int64_t planes = x.size(0) * x.size(1), H = x.size(2), W = x.size(3);
  const int64_t OH = y.size(2), OW = y.size(3);
  const Taps<T> th = tf1_taps<T>(H, OH), tw = tf1_taps<T>(W, OW);
  const T* xd = x.data<T>();
  T* yd = y.data<T>();
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < planes; ++p) {
    const T* src = xd + p * H * W;
    T* dst = yd + p * OH * OW;
    for (int64_t oh = 0; oh < OH; ++oh) {
      const T* r0 = src + th.lo[size_t(oh)] * W;
      const T* r1 = src + th.hi[size_t(oh)] * W;
      const T dy = th.frac[size_t(oh)];
      for (int64_t ow = 0; ow < OW; ++ow) {
        const int64_t a = tw.lo[size_t(ow)], b = tw.hi[size_t(ow)];
        const T dx = tw.frac[size_t(ow)];
        const T top = r0[a] + (r0[b] - r0[a]) * dx;
        const T bottom = r1[a] + (r1[b] - r1[a]) * dx;
        dst[oh * OW + ow] = top + (bottom - top) * dy;
      }
    }
  }
}

}  // namespace

Tensor resize_bilinear_tf1(const Tensor& x, int64_t out_h, int64_t out_w) {
  if (!x.defined() || x.dim() != 4) throw std::runtime_error("resize_bilinear_tf1: expects [N, C, H, W]");
  if (x.size(2) < 1 || x.size(3) < 1 || out_h < 1 || out_w < 1)
    throw std::runtime_error("resize_bilinear_tf1: empty input " + x.str() + " or output size");
  const Tensor host = x.detach().to(kCPU);
  Tensor y = empty({x.size(0), x.size(1), out_h, out_w}, x.dtype(), kCPU);
  if (host.dtype() == DType::f32)
    resize_tf1<float>(host, y);
  else if (host.dtype() == DType::f64)
    resize_tf1<double>(host, y);
  else
    throw std::runtime_error("resize_bilinear_tf1: expects float32 or float64, got " + x.str());
  return y.to(x.device());
}

std::vector<std::pair<std::string, Shape>> FidInception::expected_tensors() {
  std::vector<std::pair<std::string, Shape>> out;
  for (const ConvSpec& s : conv_specs()) {
    out.emplace_back(s.name + ".conv.weight", Shape{s.out, s.in, s.kh, s.kw});
    for (const char* b : {".bn.weight", ".bn.bias", ".bn.running_mean", ".bn.running_var"})
      out.emplace_back(s.name + b, Shape{s.out});
  }
  out.emplace_back("fc.weight", Shape{kClasses, kFeatures});
  out.emplace_back("fc.bias", Shape{kClasses});
  return out;
}

FidInception FidInception::from_tensors(const std::map<std::string, Tensor>& tensors, Device device) {
  // Compare names and shapes first and report every difference at once: a file from another
  // Inception (torchvision's, with AuxLogits and 1000 classes) then says exactly how it differs.
  const auto expected = expected_tensors();
  std::map<std::string, Shape> want(expected.begin(), expected.end());
  std::vector<std::string> problems;
  for (const auto& [name, shape] : expected) {
    auto it = tensors.find(name);
    if (it == tensors.end()) {
      problems.push_back("missing " + name + " " + shape_str(shape));
    } else if (it->second.shape() != shape) {
      problems.push_back("wrong shape " + name + ": expected " + shape_str(shape) + ", found " +
                         shape_str(it->second.shape()));
    } else if (it->second.dtype() == DType::i64) {
      problems.push_back("wrong dtype " + name + ": int64, expected a float type");
    }
  }
  for (const auto& [name, t] : tensors)
    if (!want.count(name) && !ends_with(name, ".num_batches_tracked"))
      problems.push_back("unexpected " + name + " " + shape_str(t.shape()));
  if (!problems.empty()) {
    std::string msg = "FidInception: the weights do not match the FID Inception-v3 (" +
                      std::to_string(problems.size()) + " tensors differ; expected the names of " +
                      "pytorch-fid's pt_inception-2015-12-05 converted by scripts/convert_inception.py):";
    for (const auto& p : problems) msg += "\n  " + p;
    throw std::runtime_error(msg);
  }

  FidInception net;
  net.device_ = device;
  auto get = [&](const std::string& name) { return tensors.at(name).to(DType::f32).to(device).detach(); };
  for (const ConvSpec& s : conv_specs()) {
    Layer l;
    l.weight = get(s.name + ".conv.weight");
    l.gamma = get(s.name + ".bn.weight");
    l.beta = get(s.name + ".bn.bias");
    l.mean = get(s.name + ".bn.running_mean");
    l.var = get(s.name + ".bn.running_var");
    l.stride = s.stride;
    l.pad_h = s.pad_h;
    l.pad_w = s.pad_w;
    net.layers_.emplace(s.name, std::move(l));
  }
  net.fc_weight_ = get("fc.weight");
  net.fc_bias_ = get("fc.bias");
  return net;
}

FidInception FidInception::load(const std::string& path, Device device) {
  TensorFile tf;
  try {
    tf = load_safetensors(path);
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string("FidInception: cannot read the Inception weights: ") + e.what() +
                             "\n  (convert pytorch-fid's pt_inception-2015-12-05-6726825d.pth with "
                             "scripts/convert_inception.py; see docs/metrics.md)");
  }
  return from_tensors(tf.tensors, device);
}

Tensor FidInception::basic(const std::string& name, const Tensor& x) const {
  const Layer& l = layers_.at(name);
  Tensor y = conv2d(x, l.weight, l.stride, Pad2d(l.pad_h, l.pad_w));
  return relu(batch_norm(y, l.gamma, l.beta, l.mean, l.var, /*training=*/false, 0.1, kBnEps));
}

// The FID variant's average pools divide by the window positions inside the image (TF's rule).
namespace {
Tensor tf_avg_pool(const Tensor& x) { return avg_pool2d(x, 3, 1, 1, /*count_include_pad=*/false); }
}  // namespace

Tensor FidInception::block_a(const std::string& p, const Tensor& x) const {
  Tensor b1 = basic(p + ".branch1x1", x);
  Tensor b5 = basic(p + ".branch5x5_2", basic(p + ".branch5x5_1", x));
  Tensor b3 = basic(p + ".branch3x3dbl_3", basic(p + ".branch3x3dbl_2", basic(p + ".branch3x3dbl_1", x)));
  Tensor bp = basic(p + ".branch_pool", tf_avg_pool(x));
  return concat({b1, b5, b3, bp}, 1);
}

Tensor FidInception::block_b(const std::string& p, const Tensor& x) const {
  Tensor b3 = basic(p + ".branch3x3", x);
  Tensor bd = basic(p + ".branch3x3dbl_3", basic(p + ".branch3x3dbl_2", basic(p + ".branch3x3dbl_1", x)));
  return concat({b3, bd, max_pool2d(x, 3, 2)}, 1);
}

Tensor FidInception::block_c(const std::string& p, const Tensor& x) const {
  Tensor b1 = basic(p + ".branch1x1", x);
  Tensor b7 = x;
  for (const char* n : {".branch7x7_1", ".branch7x7_2", ".branch7x7_3"}) b7 = basic(p + n, b7);
  Tensor bd = x;
  for (const char* n :
       {".branch7x7dbl_1", ".branch7x7dbl_2", ".branch7x7dbl_3", ".branch7x7dbl_4", ".branch7x7dbl_5"})
    bd = basic(p + n, bd);
  Tensor bp = basic(p + ".branch_pool", tf_avg_pool(x));
  return concat({b1, b7, bd, bp}, 1);
}

Tensor FidInception::block_d(const std::string& p, const Tensor& x) const {
  Tensor b3 = basic(p + ".branch3x3_2", basic(p + ".branch3x3_1", x));
  Tensor b7 = x;
  for (const char* n : {".branch7x7x3_1", ".branch7x7x3_2", ".branch7x7x3_3", ".branch7x7x3_4"})
    b7 = basic(p + n, b7);
  return concat({b3, b7, max_pool2d(x, 3, 2)}, 1);
}

Tensor FidInception::block_e(const std::string& p, const Tensor& x, bool max_pool) const {
  Tensor b1 = basic(p + ".branch1x1", x);
  Tensor t = basic(p + ".branch3x3_1", x);
  Tensor b3 = concat({basic(p + ".branch3x3_2a", t), basic(p + ".branch3x3_2b", t)}, 1);
  Tensor d = basic(p + ".branch3x3dbl_2", basic(p + ".branch3x3dbl_1", x));
  Tensor bd = concat({basic(p + ".branch3x3dbl_3a", d), basic(p + ".branch3x3dbl_3b", d)}, 1);
  // Mixed_7c's pool branch is a max pool in the TF graph (an average pool in the paper).
  Tensor pooled = max_pool ? max_pool2d(x, 3, 1, 1) : tf_avg_pool(x);
  return concat({b1, b3, bd, basic(p + ".branch_pool", pooled)}, 1);
}

std::map<std::string, Tensor> FidInception::run(const Tensor& input, bool taps) const {
  std::map<std::string, Tensor> out;
  Tensor x = basic("Conv2d_1a_3x3", input);  // [n, 32, 149, 149]
  x = basic("Conv2d_2a_3x3", x);             // [n, 32, 147, 147]
  x = basic("Conv2d_2b_3x3", x);             // [n, 64, 147, 147]
  x = max_pool2d(x, 3, 2);                   // [n, 64, 73, 73]
  if (taps) out["64"] = mean(x, {2, 3});
  x = basic("Conv2d_3b_1x1", x);  // [n, 80, 73, 73]
  x = basic("Conv2d_4a_3x3", x);  // [n, 192, 71, 71]
  x = max_pool2d(x, 3, 2);        // [n, 192, 35, 35]
  if (taps) out["192"] = mean(x, {2, 3});
  x = block_a("Mixed_5b", x);  // [n, 256, 35, 35]
  x = block_a("Mixed_5c", x);  // [n, 288, 35, 35]
  x = block_a("Mixed_5d", x);  // [n, 288, 35, 35]
  x = block_b("Mixed_6a", x);  // [n, 768, 17, 17]
  for (const char* b : {"Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"}) x = block_c(b, x);
  if (taps) out["768"] = mean(x, {2, 3});
  x = block_d("Mixed_7a", x);                                       // [n, 1280, 8, 8]
  x = block_e("Mixed_7b", x, /*max_pool=*/false);                   // [n, 2048, 8, 8]
  x = block_e("Mixed_7c", x, /*max_pool=*/true);                    // [n, 2048, 8, 8]
  Tensor pool3 = mean(x, {2, 3});                                   // [n, 2048]
  out["logits_unbiased"] = matmul(pool3, fc_weight_, false, true);  // IS uses no bias
  out["2048"] = pool3;
  return out;
}

std::map<std::string, Tensor> FidInception::run_chunks(const Tensor& images, int64_t batch, bool taps) const {
  const char* op = "FidInception::forward";
  if (!images.defined() || images.dim() != 4 || (images.size(1) != 1 && images.size(1) != 3) ||
      images.dtype() != DType::f32)
    throw std::runtime_error(std::string(op) + ": expects float32 images [N, 1 or 3, H, W], got " +
                             (images.defined() ? images.str() : "an undefined tensor"));
  if (images.size(2) < 1 || images.size(3) < 1) throw std::runtime_error(std::string(op) + ": empty images");
  if (batch < 1) throw std::runtime_error(std::string(op) + ": batch must be >= 1");
  NoGradGuard no_grad;
  const Tensor host = images.detach().to(kCPU);
  // The network was trained on uint8 pixels; [-1, 1] or [0, 1] images would give silently wrong
  // features, so check (one pass over the input, nothing next to the network).
  const float* px = host.data<float>();
  for (int64_t i = 0; i < host.numel(); ++i)
    if (!(px[i] >= 0.f && px[i] <= 255.f) || px[i] != std::floor(px[i]))
      throw std::runtime_error(
          std::string(op) + ": expects integer pixel values in [0, 255] (uint8 images), found " +
          std::to_string(px[i]) + " at element " + std::to_string(i) + " of " + images.str());
  const int64_t n = images.size(0);
  std::map<std::string, std::vector<Tensor>> parts;
  for (int64_t n0 = 0; n0 < n; n0 += batch) {
    const int64_t nb = std::min(batch, n - n0);
    Tensor x = resize_bilinear_tf1(slice(host, 0, n0, nb), input_size_, input_size_).to(device_);
    if (x.size(1) == 1) x = concat({x, x, x}, 1);  // grey -> RGB, as torch-fidelity repeats channels
    x = (x - 128.0) / 128.0;
    for (auto& [k, v] : run(x, taps)) parts[k].push_back(v);
  }
  std::map<std::string, Tensor> out;
  if (n == 0) {
    out["2048"] = empty({0, kFeatures}, DType::f32, device_);
    out["logits_unbiased"] = empty({0, kClasses}, DType::f32, device_);
    return out;
  }
  for (auto& [k, v] : parts) out[k] = concat(v, 0);
  return out;
}

void FidInception::set_input_size(int64_t size) {
  if (size < 75)
    throw std::runtime_error("FidInception::set_input_size: " + std::to_string(size) +
                             " is below 75, the smallest input the network's stride-2 stages accept");
  input_size_ = size;
}

FidInception::Output FidInception::forward(const Tensor& images, int64_t batch) const {
  auto r = run_chunks(images, batch, false);
  return {r.at("2048"), r.at("logits_unbiased")};
}

std::map<std::string, Tensor> FidInception::forward_features(const Tensor& images, int64_t batch) const {
  return run_chunks(images, batch, true);
}

}  // namespace xgan
