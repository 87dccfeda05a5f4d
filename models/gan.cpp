// The paper's generator and discriminator (models/gan.h): layer lists built from the image size
// exactly as the authors' lib/models.py does, parameters named like its state_dict keys.
// Tested by tests/test_step.cpp (names, shapes, errors, and one training iteration against PyTorch).
#include "models/gan.h"

#include <set>
#include <sstream>
#include <stdexcept>

#include "engine/backend.h"
#include "engine/ops.h"

namespace xgan {

namespace {

constexpr double kBnMomentum = 0.1;  // PyTorch's BatchNorm2d defaults, as the authors used
constexpr double kBnEps = 1e-5;
constexpr double kLeakySlope = 0.2;
constexpr int kKernel = 4;

bool is_power_of_two(int v) { return v > 0 && (v & (v - 1)) == 0; }

// Number of middle blocks: log2(s) - 3 (s/8 -> 1 by halving in G, s/2 -> 4 by halving in D).
int middle_blocks(int image_size) {
  int n = 0;
  for (int m = image_size / 8; m > 1; m /= 2) ++n;
  return n;
}

void check_config(const GanConfig& c, const char* who) {
  std::ostringstream err;
  if (c.image_size < 16 || !is_power_of_two(c.image_size))
    err << " image size " << c.image_size << " is not a power of two >= 16 (the layer count is built"
        << " from it: 16, 32, 64, ...);";
  if (c.width < 1) err << " width " << c.width << " must be >= 1;";
  if (c.channels < 1) err << " channels " << c.channels << " must be >= 1;";
  if (c.z_dim < 1) err << " z_dim " << c.z_dim << " must be >= 1;";
  const std::string e = err.str();
  if (!e.empty()) throw std::invalid_argument(std::string(who) + ":" + e.substr(0, e.size() - 1));
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + v[i];
  return s;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

std::string canonical_param_name(const std::string& name) {
  // "Middle-Conv2d [0]" -> "Middle-Conv2d_0": drop spaces, '[' becomes '_', ']' disappears.
  std::string out;
  out.reserve(name.size());
  for (char ch : name) {
    if (ch == ' ' || ch == ']') continue;
    out += ch == '[' ? '_' : ch;
  }
  return out;
}

// ---------------------------------------------------------------- Module

std::vector<Tensor> Module::parameter_tensors() const {
  std::vector<Tensor> v;
  v.reserve(params_.size());
  for (const auto& p : params_) v.push_back(p.tensor);
  return v;
}

std::map<std::string, Tensor> Module::state_dict() const {
  std::map<std::string, Tensor> m;
  for (const auto& p : params_) m[p.name] = p.tensor;
  for (const auto& b : buffers_) m[b.name] = b.tensor;
  return m;
}

void Module::load_state_dict(const std::map<std::string, Tensor>& tensors, const std::string& prefix) {
  // Gather the given tensors under canonical names (the prefix stripped), catching duplicates such
  // as a raw and a canonical spelling of one name.
  std::map<std::string, std::pair<std::string, Tensor>> given;  // canonical -> (original key, tensor)
  std::vector<std::string> duplicated;
  for (const auto& [key, t] : tensors) {
    if (key.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string name = canonical_param_name(key.substr(prefix.size()));
    auto [it, fresh] = given.emplace(name, std::make_pair(key, t));
    if (!fresh) duplicated.push_back("'" + it->second.first + "' and '" + key + "'");
  }

  std::vector<std::string> missing, mismatched, unexpected;
  std::set<std::string> known;
  auto check = [&](const NamedTensor& own, bool optional) {
    known.insert(own.name);
    auto it = given.find(own.name);
    if (it == given.end()) {
      if (!optional) missing.push_back(prefix + own.name);
      return;
    }
    const Tensor& t = it->second.second;
    if (!t.defined() || t.shape() != own.tensor.shape())
      mismatched.push_back(prefix + own.name + " (expected " + shape_str(own.tensor.shape()) + ", got " +
                           (t.defined() ? shape_str(t.shape()) : std::string("nothing")) + ")");
  };
  for (const auto& p : params_) check(p, false);
  for (const auto& b : buffers_) check(b, ends_with(b.name, ".num_batches_tracked"));
  for (const auto& [name, entry] : given)
    if (!known.count(name)) unexpected.push_back(entry.first);

  if (!missing.empty() || !mismatched.empty() || !unexpected.empty() || !duplicated.empty()) {
    std::string msg =
        "load_state_dict" + (prefix.empty() ? std::string() : " (prefix '" + prefix + "')") + ":";
    if (!missing.empty()) msg += " missing " + std::to_string(missing.size()) + ": " + join(missing) + ";";
    if (!unexpected.empty())
      msg += " unexpected " + std::to_string(unexpected.size()) + ": " + join(unexpected) + ";";
    if (!mismatched.empty())
      msg += " wrong shape " + std::to_string(mismatched.size()) + ": " + join(mismatched) + ";";
    if (!duplicated.empty()) msg += " given twice: " + join(duplicated) + ";";
    msg.pop_back();
    throw std::runtime_error(msg);
  }

  // Everything checked: copy the values in place, so optimisers built over these tensors stay valid.
  auto copy_in = [&](NamedTensor& own) {
    auto it = given.find(own.name);
    if (it != given.end()) own.tensor.copy_(it->second.second);
  };
  for (auto& p : params_) copy_in(p);
  for (auto& b : buffers_) copy_in(b);
}

void Module::init_dcgan(Generator& rng) {
  // lib/models.py weights_init: Conv* weights ~ N(0, 0.02); BatchNorm weight ~ N(1, 0.02), bias 0.
  for (auto& p : params_) {
    Tensor& t = p.tensor;
    if (p.name.find("Conv") != std::string::npos) {
      t.copy_(rng.normal(t.shape(), 0.0, 0.02, t.dtype(), t.device()));
    } else if (ends_with(p.name, ".weight")) {
      t.copy_(rng.normal(t.shape(), 1.0, 0.02, t.dtype(), t.device()));
    } else {
      fill(t, 0.0);
      t.bump_version();
    }
  }
  for (auto& b : buffers_) {
    fill(b.tensor, ends_with(b.name, ".running_var") ? 1.0 : 0.0);
    b.tensor.bump_version();
  }
}

void Module::to(DType dtype, Device device) {
  if (dtype == DType::i64) throw std::invalid_argument("Module::to: parameters must be float32 or float64");
  for (auto& p : params_) {
    Tensor t = p.tensor.to(dtype).to(device);
    if (t.impl() == p.tensor.impl()) continue;
    t = t.detach();  // a fresh leaf
    t.set_requires_grad(p.tensor.requires_grad());
    p.tensor = t;
  }
  for (auto& b : buffers_) {
    // num_batches_tracked is a host-side counter: no op reads it, so it stays an int64 on the CPU.
    if (b.tensor.dtype() == DType::i64) continue;
    b.tensor = b.tensor.to(dtype).to(device);
  }
}

DType Module::dtype() const { return params_.empty() ? DType::f32 : params_.front().tensor.dtype(); }
Device Module::device() const { return params_.empty() ? kCPU : params_.front().tensor.device(); }

Tensor& Module::add_param(const std::string& name, Shape shape) {
  Tensor t = zeros(shape);
  t.set_requires_grad(true);
  params_.push_back({name, t});
  return params_.back().tensor;
}

Tensor& Module::add_buffer(const std::string& name, Shape shape, DType dtype) {
  buffers_.push_back({name, zeros(shape, dtype)});
  return buffers_.back().tensor;
}

Tensor& Module::param(const std::string& name) {
  for (auto& p : params_)
    if (p.name == name) return p.tensor;
  throw std::logic_error("Module: no parameter named " + name);
}

Tensor& Module::buffer(const std::string& name) {
  for (auto& b : buffers_)
    if (b.name == name) return b.tensor;
  throw std::logic_error("Module: no buffer named " + name);
}

Tensor Module::batch_norm_layer(const std::string& prefix, const Tensor& x, bool train) {
  Tensor y =
      batch_norm(x, param(prefix + ".weight"), param(prefix + ".bias"), buffer(prefix + ".running_mean"),
                 buffer(prefix + ".running_var"), train, kBnMomentum, kBnEps);
  if (train) {
    Tensor& count = buffer(prefix + ".num_batches_tracked");
    ++count.data<int64_t>()[0];
    count.bump_version();
  }
  return y;
}

namespace {
// One BatchNorm2d's state_dict entries, in PyTorch's order; `param` and `buffer` add to the module.
template <class AddParam, class AddBuffer>
void add_batch_norm(const std::string& prefix, int64_t channels, AddParam&& param, AddBuffer&& buffer) {
  param(prefix + ".weight", Shape{channels});
  param(prefix + ".bias", Shape{channels});
  buffer(prefix + ".running_mean", Shape{channels}, DType::f32);
  buffer(prefix + ".running_var", Shape{channels}, DType::f32);
  buffer(prefix + ".num_batches_tracked", Shape{}, DType::i64);
}
}  // namespace

// ---------------------------------------------------------------- Generator

GanGenerator::GanGenerator(const GanConfig& cfg) : cfg_(cfg) {
  check_config(cfg_, "GanGenerator");
  middle_ = middle_blocks(cfg_.image_size);
  auto p = [this](const std::string& n, Shape s) -> Tensor& { return add_param(n, std::move(s)); };
  auto b = [this](const std::string& n, Shape s, DType t) -> Tensor& {
    return add_buffer(n, std::move(s), t);
  };
  const int64_t h = cfg_.width, k = kKernel;
  int64_t mult = cfg_.image_size / 8;
  // ConvTranspose2d weights are [in, out, k, k].
  p("main.Start-ConvTranspose2d.weight", {cfg_.z_dim, h * mult, k, k});
  add_batch_norm("main.Start-BatchNorm2d", h * mult, p, b);
  for (int i = 1; mult > 1; ++i, mult /= 2) {
    const std::string n = std::to_string(i);
    p("main.Middle-ConvTranspose2d_" + n + ".weight", {h * mult, h * (mult / 2), k, k});
    add_batch_norm("main.Middle-BatchNorm2d_" + n, h * (mult / 2), p, b);
  }
  p("main.End-ConvTranspose2d.weight", {h, cfg_.channels, k, k});
}

Tensor GanGenerator::forward(const Tensor& z_in, bool train) {
  Tensor z = z_in;
  if (z.dim() == 2) z = reshape(z, {z.size(0), z.size(1), 1, 1});
  if (z.dim() != 4 || z.size(1) != cfg_.z_dim || z.size(2) != 1 || z.size(3) != 1)
    throw std::invalid_argument("GanGenerator: noise must be [N, " + std::to_string(cfg_.z_dim) +
                                ", 1, 1], got " + z.str());
  Tensor x = conv_transpose2d(z, param("main.Start-ConvTranspose2d.weight"), 1, 0);
  x = relu(batch_norm_layer("main.Start-BatchNorm2d", x, train));
  for (int i = 1; i <= middle_; ++i) {
    const std::string n = std::to_string(i);
    x = conv_transpose2d(x, param("main.Middle-ConvTranspose2d_" + n + ".weight"), 2, 1);
    x = relu(batch_norm_layer("main.Middle-BatchNorm2d_" + n, x, train));
  }
  return tanh(conv_transpose2d(x, param("main.End-ConvTranspose2d.weight"), 2, 1));
}

// ---------------------------------------------------------------- Discriminator

GanDiscriminator::GanDiscriminator(const GanConfig& cfg, bool sigmoid) : cfg_(cfg), sigmoid_(sigmoid) {
  check_config(cfg_, "GanDiscriminator");
  middle_ = middle_blocks(cfg_.image_size);
  auto p = [this](const std::string& n, Shape s) -> Tensor& { return add_param(n, std::move(s)); };
  auto b = [this](const std::string& n, Shape s, DType t) -> Tensor& {
    return add_buffer(n, std::move(s), t);
  };
  const int64_t h = cfg_.width, k = kKernel;
  // Conv2d weights are [out, in, k, k].
  p("main.Start-Conv2d.weight", {h, cfg_.channels, k, k});
  int64_t mult = 1;
  for (int i = 0; i < middle_; ++i, mult *= 2) {
    const std::string n = std::to_string(i);
    p("main.Middle-Conv2d_" + n + ".weight", {h * 2 * mult, h * mult, k, k});
    add_batch_norm("main.Middle-BatchNorm2d_" + n, h * 2 * mult, p, b);
  }
  p("main.End-Conv2d.weight", {1, h * mult, k, k});
}

Tensor GanDiscriminator::forward(const Tensor& x_in, bool train) {
  const int64_t s = cfg_.image_size;
  if (x_in.dim() != 4 || x_in.size(1) != cfg_.channels || x_in.size(2) != s || x_in.size(3) != s)
    throw std::invalid_argument("GanDiscriminator: images must be [N, " + std::to_string(cfg_.channels) +
                                ", " + std::to_string(s) + ", " + std::to_string(s) + "], got " + x_in.str());
  Tensor x = leaky_relu(conv2d(x_in, param("main.Start-Conv2d.weight"), 2, 1), kLeakySlope);
  for (int i = 0; i < middle_; ++i) {
    const std::string n = std::to_string(i);
    x = conv2d(x, param("main.Middle-Conv2d_" + n + ".weight"), 2, 1);
    x = leaky_relu(batch_norm_layer("main.Middle-BatchNorm2d_" + n, x, train), kLeakySlope);
  }
  x = conv2d(x, param("main.End-Conv2d.weight"), 1, 0);  // [N, 1, 1, 1]
  if (sigmoid_) x = xgan::sigmoid(x);
  return reshape(x, {x.size(0)});
}

// ---------------------------------------------------------------- config inference

GanConfig infer_generator_config(const std::map<std::string, Tensor>& tensors, const std::string& prefix) {
  auto find = [&](const std::string& name) -> Tensor {
    for (const auto& [key, t] : tensors)
      if (key.compare(0, prefix.size(), prefix) == 0 &&
          canonical_param_name(key.substr(prefix.size())) == name)
        return t;
    throw std::runtime_error("cannot infer the generator's sizes: no tensor " + prefix + name);
  };
  const Tensor start = find("main.Start-ConvTranspose2d.weight");  // [z, h * s/8, 4, 4]
  const Tensor end = find("main.End-ConvTranspose2d.weight");      // [h, C, 4, 4]
  auto bad = [&](const std::string& why) {
    return std::runtime_error("cannot infer the generator's sizes from " + prefix +
                              "main.Start-ConvTranspose2d.weight " + shape_str(start.shape()) + " and " +
                              prefix + "main.End-ConvTranspose2d.weight " + shape_str(end.shape()) + ": " +
                              why);
  };
  if (start.dim() != 4 || end.dim() != 4 || start.size(2) != kKernel || end.size(2) != kKernel)
    throw bad("expected 4-d weights with 4x4 kernels");
  GanConfig c;
  c.z_dim = static_cast<int>(start.size(0));
  c.width = static_cast<int>(end.size(0));
  c.channels = static_cast<int>(end.size(1));
  if (c.width < 1 || start.size(1) % c.width != 0)
    throw bad("the start block's channels are not a multiple of the width");
  const int64_t mult = start.size(1) / c.width;
  if (mult < 2 || !is_power_of_two(static_cast<int>(mult)))
    throw bad("channel multiplier " + std::to_string(mult) + " is not a power of two >= 2");
  c.image_size = static_cast<int>(8 * mult);
  return c;
}

}  // namespace xgan
