// Data loading: IDX files (raw and gzip) and CIFAR-10 batches written byte by byte here, every way
// such a file can be damaged (each error must name the file), the PIL-exact resize against golden
// data (tests/golden/resize_reference.py), the [-1, 1] scaling, and the Loader's shuffling/resume.
// Run: ctest -R test_data. Real MNIST (data/mnist, from scripts/get_data.sh) is checked when present.
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "engine/safetensors.h"
#include "temp_dir.h"
#include "train/data.h"

#ifndef XGAN_GOLDEN_DIR
#define XGAN_GOLDEN_DIR "tests/golden"
#endif

namespace fs = std::filesystem;
using xgan::Dataset;
using xgan::DType;
using xgan::Loader;
using xgan::Tensor;
using Bytes = std::vector<uint8_t>;

namespace {

using TempDir = xgan::test::TempDir;

void write_bytes(const std::string& path, const Bytes& bytes) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

void put_be32(Bytes& b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(v >> s));
}

Bytes idx_images(uint32_t n, uint32_t rows, uint32_t cols, const Bytes& pixels) {
  Bytes b;
  put_be32(b, 0x803), put_be32(b, n), put_be32(b, rows), put_be32(b, cols);
  b.insert(b.end(), pixels.begin(), pixels.end());
  return b;
}

Bytes idx_labels(const Bytes& labels) {
  Bytes b;
  put_be32(b, 0x801), put_be32(b, static_cast<uint32_t>(labels.size()));
  b.insert(b.end(), labels.begin(), labels.end());
  return b;
}

// A gzip member (zlib's deflate with the gzip wrapper), as gzip(1) would write it.
Bytes gzip(const Bytes& in) {
  z_stream s{};
  REQUIRE(deflateInit2(&s, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  Bytes out(deflateBound(&s, in.size()) + 64);
  s.next_in = const_cast<Bytef*>(in.data());
  s.avail_in = static_cast<uInt>(in.size());
  s.next_out = out.data();
  s.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&s, Z_FINISH) == Z_STREAM_END);
  out.resize(s.total_out);
  deflateEnd(&s);
  return out;
}

Bytes random_bytes(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  Bytes b(n);
  for (auto& v : b) v = static_cast<uint8_t>(gen() & 0xff);
  return b;
}

// What the loader must produce for a pixel: ToTensor then Normalize(0.5, 0.5) in float32.
float scaled(uint8_t v) { return (static_cast<float>(v) / 255.0f - 0.5f) / 0.5f; }

// Runs fn, requires a std::runtime_error whose message names `path` and contains every `parts`.
void require_error(const std::function<void()>& fn, const std::string& path,
                   const std::vector<std::string>& parts) {
  try {
    fn();
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    INFO("message: " << msg);
    CHECK(msg.find(path) != std::string::npos);
    for (const auto& p : parts) {
      INFO("expected to contain: " << p);
      CHECK(msg.find(p) != std::string::npos);
    }
    return;
  }
  FAIL("no std::runtime_error thrown (expected one naming " << path << ")");
}

std::vector<float> floats(const Tensor& t) {
  REQUIRE(t.dtype() == DType::f32);
  return std::vector<float>(t.data<float>(), t.data<float>() + t.numel());
}

// A toy data set whose image i is filled with the value i, so a batch tells which samples it holds.
Dataset numbered(int64_t n) {
  Dataset d;
  d.name = "numbered";
  d.images = xgan::empty({n, 1, 2, 2});
  for (int64_t i = 0; i < n; ++i)
    for (int p = 0; p < 4; ++p) d.images.data<float>()[i * 4 + p] = static_cast<float>(i);
  d.labels.assign(n, 0);
  return d;
}

std::vector<int64_t> ids(const Tensor& batch) {
  std::vector<int64_t> v;
  for (int64_t b = 0; b < batch.size(0); ++b) {
    const float* p = batch.data<float>() + b * 4;
    REQUIRE((p[0] == p[1] && p[0] == p[2] && p[0] == p[3]));  // whole images are copied
    v.push_back(static_cast<int64_t>(p[0]));
  }
  return v;
}

}  // namespace

TEST_CASE("IDX files load, raw or gzip, detected by content not name", "[data][idx]") {
  TempDir t;
  const uint32_t n = 5, rows = 4, cols = 3;
  const Bytes pixels = random_bytes(n * rows * cols, 1);
  const Bytes labels = {3, 0, 9, 1, 7};
  const Bytes img = idx_images(n, rows, cols, pixels), lab = idx_labels(labels);
  write_bytes(t.file("raw-images"), img);
  write_bytes(t.file("raw-labels"), lab);
  write_bytes(t.file("images.gz"), gzip(img));
  write_bytes(t.file("gz-labels-no-suffix"), gzip(lab));
  // Two concatenated gzip members decode as one stream (what `cat a.gz b.gz` gives).
  Bytes two = gzip(Bytes(img.begin(), img.begin() + 20));
  const Bytes rest = gzip(Bytes(img.begin() + 20, img.end()));
  two.insert(two.end(), rest.begin(), rest.end());
  write_bytes(t.file("two-members.gz"), two);

  // Native size 4x3 stretched to 4x4 needs a resize; check against resize_bilinear_u8 per image.
  for (const auto& [ipath, lpath] :
       std::vector<std::pair<std::string, std::string>>{{"raw-images", "raw-labels"},
                                                        {"images.gz", "gz-labels-no-suffix"},
                                                        {"two-members.gz", "raw-labels"}}) {
    INFO(ipath << " + " << lpath);
    const Dataset d = xgan::load_idx(t.file(ipath), t.file(lpath), 4);
    REQUIRE(d.images.shape() == xgan::Shape{5, 1, 4, 4});
    CHECK(d.labels == labels);
    const std::vector<float> got = floats(d.images);
    for (uint32_t i = 0; i < n; ++i) {
      const Bytes r = xgan::resize_bilinear_u8(pixels.data() + i * rows * cols, rows, cols, 4, 4);
      for (int p = 0; p < 16; ++p) CHECK(got[i * 16 + p] == scaled(r[p]));
    }
  }

  // At native size nothing is resampled: the pixels come through exactly, row-major.
  write_bytes(t.file("sq-images"), idx_images(2, 3, 3, random_bytes(18, 2)));
  write_bytes(t.file("sq-labels"), idx_labels({4, 5}));
  const Dataset sq = xgan::load_idx(t.file("sq-images"), t.file("sq-labels"), 3);
  const Bytes px = random_bytes(18, 2);
  const std::vector<float> got = floats(sq.images);
  for (int i = 0; i < 18; ++i) CHECK(got[i] == scaled(px[i]));
}

TEST_CASE("every damaged IDX file gets an error naming it", "[data][idx][errors]") {
  TempDir t;
  const uint32_t n = 4, rows = 5, cols = 4;
  const Bytes img = idx_images(n, rows, cols, random_bytes(n * rows * cols, 3));
  const Bytes lab = idx_labels({1, 2, 3, 4});
  const std::string good_img = t.file("good-images"), good_lab = t.file("good-labels");
  write_bytes(good_img, img);
  write_bytes(good_lab, lab);
  REQUIRE_NOTHROW(xgan::load_idx(good_img, good_lab, 8));

  SECTION("missing file") {
    const std::string p = t.file("nope-images");
    require_error([&] { xgan::load_idx(p, good_lab, 8); }, p, {"cannot open"});
  }
  SECTION("wrong magic: labels given as images, images as labels, garbage") {
    require_error([&] { xgan::load_idx(good_lab, good_img, 8); }, good_lab, {"0x00000801", "0x00000803"});
    require_error([&] { xgan::load_idx(good_img, good_img, 8); }, good_img, {"0x00000803", "0x00000801"});
    const std::string p = t.file("png-images");
    write_bytes(p, {0x89, 'P', 'N', 'G', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0});
    require_error([&] { xgan::load_idx(p, good_lab, 8); }, p, {"magic", "0x89504e47", "0x00000803"});
  }
  SECTION("images truncated at every interesting length") {
    const size_t full = img.size();
    for (size_t len : {size_t{0}, size_t{2}, size_t{4}, size_t{9}, size_t{15}, size_t{16}, size_t{17},
                       full / 2, full - 1}) {
      INFO("length " << len);
      const std::string p = t.file("trunc-images-" + std::to_string(len));
      write_bytes(p, Bytes(img.begin(), img.begin() + len));
      std::vector<std::string> parts = {"truncated"};
      if (len >= 16)
        parts.insert(parts.end(), {"expected " + std::to_string(n * rows * cols) + " bytes of pixel data",
                                   "got " + std::to_string(len - 16)});
      require_error([&] { xgan::load_idx(p, good_lab, 8); }, p, parts);
      // The same damage inside a valid gzip stream is reported the same way.
      const std::string pz = p + ".gz";
      write_bytes(pz, gzip(Bytes(img.begin(), img.begin() + len)));
      require_error([&] { xgan::load_idx(pz, good_lab, 8); }, pz, parts);
    }
  }
  SECTION("labels truncated") {
    for (size_t len : {size_t{3}, size_t{7}, size_t{8}, lab.size() - 1}) {
      INFO("length " << len);
      const std::string p = t.file("trunc-labels-" + std::to_string(len));
      write_bytes(p, Bytes(lab.begin(), lab.begin() + len));
      require_error([&] { xgan::load_idx(good_img, p, 8); }, p, {"truncated"});
    }
  }
  SECTION("bytes after the announced data") {
    Bytes longer = img;
    longer.push_back(0);
    const std::string p = t.file("long-images");
    write_bytes(p, longer);
    require_error([&] { xgan::load_idx(p, good_lab, 8); }, p, {"1 bytes after"});
  }
  SECTION("image and label counts differ") {
    const std::string p = t.file("three-labels");
    write_bytes(p, idx_labels({1, 2, 3}));
    require_error([&] { xgan::load_idx(good_img, p, 8); }, p, {good_img, "4 images", "3 labels"});
  }
  SECTION("zero images, label out of range, zero-sized images") {
    const std::string p0 = t.file("zero-images");
    write_bytes(p0, idx_images(0, 28, 28, {}));
    require_error([&] { xgan::load_idx(p0, good_lab, 8); }, p0, {"zero images"});
    const std::string pl = t.file("bad-label");
    write_bytes(pl, idx_labels({1, 2, 10, 4}));
    require_error([&] { xgan::load_idx(good_img, pl, 8); }, pl, {"label 10", "item 2"});
    const std::string pz = t.file("empty-rows");
    write_bytes(pz, idx_images(1, 0, 4, {}));
    require_error([&] { xgan::load_idx(pz, good_lab, 8); }, pz, {"image size"});
  }
  SECTION("corrupt gzip: flipped bytes, cut short, wrong CRC, header only") {
    const Bytes gz = gzip(img);
    Bytes flipped = gz;
    for (size_t i = 12; i < 20; ++i) flipped[i] ^= 0xff;
    const std::string pf = t.file("flipped.gz");
    write_bytes(pf, flipped);
    require_error([&] { xgan::load_idx(pf, good_lab, 8); }, pf, {"gzip"});

    const std::string pc = t.file("cut.gz");
    write_bytes(pc, Bytes(gz.begin(), gz.begin() + gz.size() / 2));
    require_error([&] { xgan::load_idx(pc, good_lab, 8); }, pc, {"gzip", "ends early"});

    Bytes crc = gz;
    crc[crc.size() - 8] ^= 0x01;  // the trailer: CRC32 then ISIZE, 4 bytes each
    const std::string pk = t.file("crc.gz");
    write_bytes(pk, crc);
    require_error([&] { xgan::load_idx(pk, good_lab, 8); }, pk, {"gzip"});

    const std::string ph = t.file("magic-only.gz");
    write_bytes(ph, {0x1f, 0x8b});
    require_error([&] { xgan::load_idx(ph, good_lab, 8); }, ph, {"gzip"});
  }
}

TEST_CASE("CIFAR-10 binary batches: layout, both directory layouts, damaged files", "[data][cifar]") {
  TempDir t;
  constexpr size_t kRec = 3073;
  // Record r of batch b: label (b + r) % 10, then R, G, B planes filled from one seed.
  auto batch = [&](int b, int records) {
    Bytes out;
    for (int r = 0; r < records; ++r) {
      out.push_back(static_cast<uint8_t>((b + r) % 10));
      const Bytes px = random_bytes(3072, static_cast<uint32_t>(100 * b + r));
      out.insert(out.end(), px.begin(), px.end());
    }
    return out;
  };
  const fs::path sub = t.dir / "cifar-10-batches-bin";  // where the official tarball unpacks
  for (int b = 1; b <= 5; ++b)
    write_bytes((sub / ("data_batch_" + std::to_string(b) + ".bin")).string(), batch(b, 2));
  write_bytes((t.dir / "test_batch.bin").string(), batch(0, 3));

  const Dataset train = xgan::load_cifar10(t.dir.string(), 32, true);
  REQUIRE(train.images.shape() == xgan::Shape{10, 3, 32, 32});
  const std::vector<float> x = floats(train.images);
  for (int b = 1; b <= 5; ++b)
    for (int r = 0; r < 2; ++r) {
      const int i = (b - 1) * 2 + r;
      CHECK(train.labels[i] == (b + r) % 10);
      const Bytes px = random_bytes(3072, static_cast<uint32_t>(100 * b + r));
      for (size_t p = 0; p < 3072; p += 97) CHECK(x[i * 3072 + p] == scaled(px[p]));  // planes in order
    }
  const Dataset test = xgan::load_dataset("cifar10", t.dir.string(), 16, false);
  CHECK(test.name == "cifar10");
  REQUIRE(test.images.shape() == xgan::Shape{3, 3, 16, 16});
  {  // Each plane resized on its own, like PIL on an RGB image.
    const Bytes px = random_bytes(3072, 2);
    const Bytes g = xgan::resize_bilinear_u8(px.data() + 1024, 32, 32, 16, 16);
    const std::vector<float> y = floats(test.images);
    for (int p = 0; p < 256; ++p) CHECK(y[(2 * 3 + 1) * 256 + p] == scaled(g[p]));
  }

  SECTION("a batch whose size is not a multiple of 3073") {
    const std::string p = (sub / "data_batch_3.bin").string();
    Bytes bad = batch(3, 2);
    bad.resize(2 * kRec + 5);
    write_bytes(p, bad);
    require_error([&] { xgan::load_cifar10(t.dir.string(), 32, true); }, p,
                  {"3073", std::to_string(2 * kRec + 5)});
    bad.resize(kRec - 1);
    write_bytes(p, bad);
    require_error([&] { xgan::load_cifar10(t.dir.string(), 32, true); }, p, {"3073"});
    write_bytes(p, {});
    require_error([&] { xgan::load_cifar10(t.dir.string(), 32, true); }, p, {"empty"});
  }
  SECTION("a missing batch, a missing directory") {
    fs::remove(sub / "data_batch_4.bin");
    const std::string p = (sub / "data_batch_4.bin").string();
    require_error([&] { xgan::load_cifar10(t.dir.string(), 32, true); }, p, {"not found"});
    const std::string nowhere = t.file("nowhere");
    require_error([&] { xgan::load_cifar10(nowhere, 32, true); }, nowhere, {"data_batch_1.bin", "not found"});
  }
  SECTION("a label outside 0..9") {
    Bytes bad = batch(0, 3);
    bad[kRec] = 11;
    const std::string p = (t.dir / "test_batch.bin").string();
    write_bytes(p, bad);
    require_error([&] { xgan::load_cifar10(t.dir.string(), 32, false); }, p, {"label 11", "item 1"});
  }
}

TEST_CASE("load_dataset finds MNIST-style files and says what it looked for", "[data]") {
  TempDir t;
  const Bytes px = random_bytes(3 * 28 * 28, 5);
  write_bytes(t.file("train-images-idx3-ubyte.gz"), gzip(idx_images(3, 28, 28, px)));
  write_bytes(t.file("train-labels-idx1-ubyte"), idx_labels({7, 8, 9}));
  write_bytes(t.file("MNIST/raw/t10k-images-idx3-ubyte"),
              idx_images(1, 28, 28, Bytes(px.begin(), px.begin() + 784)));
  write_bytes(t.file("MNIST/raw/t10k-labels-idx1-ubyte"), idx_labels({7}));

  const Dataset d = xgan::load_dataset("mnist", t.dir.string(), 32);
  CHECK(d.name == "mnist");
  REQUIRE(d.images.shape() == xgan::Shape{3, 1, 32, 32});
  CHECK(d.labels == Bytes{7, 8, 9});
  const Dataset te = xgan::load_dataset("mnist", t.dir.string(), 32, false);  // torchvision's layout
  REQUIRE(te.images.shape() == xgan::Shape{1, 1, 32, 32});
  const std::vector<float> all = floats(d.images);
  CHECK(floats(te.images) == std::vector<float>(all.begin(), all.begin() + 1024));

  try {
    xgan::load_dataset("svhn", t.dir.string(), 32);
    FAIL("unknown data set accepted");
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    CHECK(msg.find("svhn") != std::string::npos);
    CHECK(msg.find("mnist, fashion-mnist, cifar10") != std::string::npos);
  }
  const std::string empty_dir = t.file("empty");
  fs::create_directories(empty_dir);
  require_error([&] { xgan::load_dataset("mnist", empty_dir, 32); }, empty_dir + "/train-images-idx3-ubyte",
                {"train-images-idx3-ubyte.gz", "get_data.sh"});
  CHECK_THROWS_WITH(xgan::load_dataset("mnist", t.dir.string(), 0), Catch::Contains("image size"));
}

TEST_CASE("scaling to [-1, 1] is ToTensor + Normalize(0.5, 0.5) bit for bit", "[data][scale]") {
  CHECK(scaled(0) == -1.0f);
  CHECK(scaled(255) == 1.0f);
  // All 256 values through the real loader (a 16x16 image of 0..255 at native size) against
  // torch's float32 result stored in the golden file.
  const xgan::TensorFile g = xgan::load_safetensors(std::string(XGAN_GOLDEN_DIR) + "/resize_u8.safetensors");
  TempDir t;
  Bytes ramp(256);
  for (int v = 0; v < 256; ++v) ramp[v] = static_cast<uint8_t>(v);
  write_bytes(t.file("i"), idx_images(1, 16, 16, ramp));
  write_bytes(t.file("l"), idx_labels({0}));
  const std::vector<float> x = floats(xgan::load_idx(t.file("i"), t.file("l"), 16).images);
  const std::vector<float> ref = floats(g.tensors.at("scale.x"));
  const std::vector<float> u8 = floats(g.tensors.at("scale.u8"));
  REQUIRE(ref.size() == 256);
  for (int v = 0; v < 256; ++v) {
    INFO("value " << v);
    CHECK(u8[v] == static_cast<float>(v));
    CHECK(x[v] == ref[v]);  // exact: the same float32 operations in the same order
  }
  CHECK(x[0] == -1.0f);
  CHECK(x[255] == 1.0f);
}

TEST_CASE("resize_bilinear_u8 matches PIL's Image.resize(BILINEAR) bit for bit", "[data][resize]") {
  const xgan::TensorFile g = xgan::load_safetensors(std::string(XGAN_GOLDEN_DIR) + "/resize_u8.safetensors");
  int cases = 0;
  for (const auto& [key, in] : g.tensors) {
    if (key.size() < 3 || key.substr(key.size() - 3) != ".in") continue;
    const std::string name = key.substr(0, key.size() - 3);
    INFO("case " << name);
    ++cases;
    const Tensor out = g.tensors.at(name + ".out");
    REQUIRE((in.dim() == 2 && out.dim() == 2));
    Bytes src;
    for (float v : floats(in)) src.push_back(static_cast<uint8_t>(v));
    const Bytes got =
        xgan::resize_bilinear_u8(src.data(), static_cast<int>(in.size(0)), static_cast<int>(in.size(1)),
                                 static_cast<int>(out.size(0)), static_cast<int>(out.size(1)));
    const std::vector<float> ref = floats(out);
    REQUIRE(got.size() == ref.size());
    int64_t mismatches = 0;
    for (size_t i = 0; i < got.size(); ++i) mismatches += static_cast<float>(got[i]) != ref[i];
    CHECK(mismatches == 0);  // exact: PIL's integer arithmetic replicated
  }
  CHECK(cases >= 6);  // 28->32, 28->64, 32->16, 28->28 and the odd ones
  CHECK_THROWS(xgan::resize_bilinear_u8(nullptr, 0, 4, 4, 4));
}

TEST_CASE("Loader: one permutation per epoch, drop last, resumable from (epoch, position)",
          "[data][loader]") {
  SECTION("each sample exactly once per epoch; epochs differ; seeds differ") {
    const Dataset d = numbered(12);
    Loader l(d, 3, 42);
    REQUIRE(l.batches_per_epoch() == 4);
    std::vector<std::vector<int64_t>> orders;
    for (int e = 0; e < 3; ++e) {
      std::vector<int64_t> order;
      for (int b = 0; b < 4; ++b) {
        CHECK(l.epoch() == e);
        CHECK(l.position() == b);
        const Tensor batch = l.next();
        REQUIRE(batch.shape() == xgan::Shape{3, 1, 2, 2});
        for (int64_t i : ids(batch)) order.push_back(i);
      }
      std::vector<int64_t> sorted = order;
      std::sort(sorted.begin(), sorted.end());
      for (int i = 0; i < 12; ++i) CHECK(sorted[i] == i);
      orders.push_back(order);
    }
    CHECK(orders[0] != orders[1]);
    CHECK(orders[1] != orders[2]);
    Loader other(d, 3, 43);
    std::vector<int64_t> o;
    for (int b = 0; b < 4; ++b)
      for (int64_t i : ids(other.next())) o.push_back(i);
    CHECK(o != orders[0]);
    Loader same(d, 3, 42);  // the order is a function of (seed, epoch) only
    std::vector<int64_t> s;
    for (int b = 0; b < 4; ++b)
      for (int64_t i : ids(same.next())) s.push_back(i);
    CHECK(s == orders[0]);
  }
  SECTION("the last incomplete batch is dropped, no sample repeats within an epoch") {
    const Dataset d = numbered(10);
    Loader l(d, 3, 7);
    REQUIRE(l.batches_per_epoch() == 3);
    for (int e = 0; e < 4; ++e) {
      std::set<int64_t> seen;
      for (int b = 0; b < 3; ++b)
        for (int64_t i : ids(l.next())) CHECK(seen.insert(i).second);
      CHECK(seen.size() == 9);
    }
    CHECK(l.epoch() == 4);  // the epoch rolls over with its last batch
    CHECK(l.position() == 0);
  }
  SECTION("set_state reproduces the batches of an uninterrupted run") {
    const Dataset d = numbered(11);
    const int batch = 2;  // 5 batches per epoch, one sample dropped
    Loader ref(d, batch, 123);
    std::vector<std::vector<int64_t>> seq;
    std::vector<std::pair<int64_t, int64_t>> state;
    for (int k = 0; k < 17; ++k) {
      state.emplace_back(ref.epoch(), ref.position());
      seq.push_back(ids(ref.next()));
    }
    for (int k = 0; k < 17; ++k) {
      INFO("resume before batch " << k << " (epoch " << state[k].first << ", position " << state[k].second
                                  << ")");
      Loader r(d, batch, 123);
      r.next();  // consume something first so set_state must really reset
      r.set_state(state[k].first, state[k].second);
      for (int j = k; j < 17; ++j) CHECK(ids(r.next()) == seq[j]);
    }
    Loader end(d, batch, 123);  // a checkpoint taken at the end of epoch 0 continues with epoch 1
    end.set_state(0, 5);
    CHECK(end.epoch() == 1);
    CHECK(end.position() == 0);
    CHECK(ids(end.next()) == seq[5]);
    CHECK_THROWS(end.set_state(0, 6));
    CHECK_THROWS(end.set_state(-1, 0));
  }
  SECTION("the first sample of an epoch is uniform over the data set") {
    // 4 samples, 4000 epochs: each should lead ~1000 times; the binomial sd is ~27, so +-150
    // (over 5 sd) only fails for a biased shuffle. Deterministic, so never flaky.
    const Dataset d = numbered(4);
    Loader l(d, 4, 9);
    std::map<int64_t, int> first;
    for (int e = 0; e < 4000; ++e) ++first[ids(l.next())[0]];
    for (int i = 0; i < 4; ++i) {
      INFO("sample " << i);
      CHECK(std::abs(first[i] - 1000) < 150);
    }
  }
  SECTION("batch size must fit the data set") {
    const Dataset d = numbered(5);
    CHECK_THROWS_WITH(Loader(d, 6, 0), Catch::Contains("batch size 6") && Catch::Contains("numbered"));
    CHECK_THROWS(Loader(d, 0, 0));
    CHECK_NOTHROW(Loader(d, 5, 0));
  }
}

TEST_CASE("real MNIST and Fashion-MNIST, where present", "[data][real]") {
  const fs::path mnist = fs::path(XGAN_GOLDEN_DIR) / ".." / ".." / "data" / "mnist";
  if (fs::exists(mnist / "train-images-idx3-ubyte") || fs::exists(mnist / "train-images-idx3-ubyte.gz")) {
    const Dataset tr = xgan::load_dataset("mnist", mnist.string(), 32, true);
    REQUIRE(tr.images.shape() == xgan::Shape{60000, 1, 32, 32});
    const Dataset te = xgan::load_dataset("mnist", mnist.string(), 32, false);
    REQUIRE(te.images.shape() == xgan::Shape{10000, 1, 32, 32});
    std::vector<int> count(10);
    for (uint8_t l : tr.labels) ++count.at(l);
    for (int c : count) CHECK(c > 5000);  // MNIST's classes hold 5421..6742 training images
    CHECK(tr.labels[0] == 5);             // the famous first training digit
    const float* x = tr.images.data<float>();
    CHECK(*std::min_element(x, x + tr.images.numel()) == -1.0f);
    CHECK(*std::max_element(x, x + tr.images.numel()) == 1.0f);
  } else {
    WARN("data/mnist absent (run scripts/get_data.sh): real MNIST not checked");
  }
  if (fs::exists("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")) {
    const Dataset f = xgan::load_dataset("fashion-mnist", "/nonexistent-xgan-dir", 32, false);
    REQUIRE(f.images.shape() == xgan::Shape{10000, 1, 32, 32});
    CHECK(f.labels.size() == 10000);
  } else {
    WARN("Debian's dataset-fashion-mnist absent: real Fashion-MNIST not checked");
  }
}
