// The trainer (train/trainer.h) on a tiny synthetic MNIST (64 random 28x28 images in IDX files,
// resized to 16x16; width 8, batch 4): a resumed run equals an uninterrupted one bit for bit,
// checkpoints leave no temporary files, a NaN stops the run with the last checkpoint intact, a
// resume with a different config fails listing the differences, and sample grids have the
// expected size. Run: ctest -R test_trainer
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "engine/safetensors.h"
#include "synthetic_mnist.h"
#include "train/trainer.h"

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace xgan;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "xgan_trainer_XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

using test::write_synthetic_mnist;

TrainConfig tiny_config(const fs::path& data, const fs::path& out, const std::string& loss, int64_t iters) {
  TrainConfig c;
  c.dataset = "mnist";
  c.data_dir = data.string();
  c.loss = loss;
  c.image_size = 16;
  c.width = 8;
  c.batch = 4;
  c.iters = iters;
  c.seed = 7;
  c.out_dir = out.string();
  c.log_every = 1;
  c.sample_every = 2;
  c.ckpt_every = 100;
  c.progress = false;
  return c;
}

std::vector<json> read_log(const fs::path& p) {
  std::ifstream f(p);
  std::vector<json> lines;
  std::string s;
  while (std::getline(f, s))
    if (!s.empty()) lines.push_back(json::parse(s));
  return lines;
}

std::string read_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

uint32_t be32_at(const std::string& s, size_t off) {
  auto b = [&](size_t i) { return static_cast<uint32_t>(static_cast<unsigned char>(s[off + i])); };
  return b(0) << 24 | b(1) << 16 | b(2) << 8 | b(3);
}

// Width, height, color type of a PNG (from its IHDR chunk, which must come first).
struct PngHeader {
  uint32_t w, h;
  int color_type;
};
PngHeader png_header(const fs::path& p) {
  const std::string s = read_bytes(p);
  REQUIRE(s.size() > 33);
  REQUIRE(s.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0);
  REQUIRE(s.compare(12, 4, "IHDR") == 0);
  REQUIRE(static_cast<int>(s[24]) == 8);  // bit depth
  return {be32_at(s, 16), be32_at(s, 20), static_cast<int>(s[25])};
}

// Every tensor bit-identical (exact equality: same computation, same order, same machine).
void require_same_tensors(const TensorFile& a, const TensorFile& b) {
  REQUIRE(a.tensors.size() == b.tensors.size());
  for (const auto& [name, ta] : a.tensors) {
    INFO(name);
    auto it = b.tensors.find(name);
    REQUIRE(it != b.tensors.end());
    const Tensor& tb = it->second;
    REQUIRE(ta.dtype() == tb.dtype());
    REQUIRE(ta.shape() == tb.shape());
    CHECK(std::memcmp(ta.raw(), tb.raw(), ta.nbytes()) == 0);
  }
}

bool any_tmp_file(const fs::path& dir) {
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.path().extension() == ".tmp") return true;
  return false;
}

}  // namespace

TEST_CASE("a resumed run equals an uninterrupted one, bit for bit", "[trainer]") {
  TempDir tmp;
  write_synthetic_mnist(tmp.path / "data");
  for (const std::string loss : {"dcgan", "wgan-gp", "ragan"}) {
    INFO("loss " << loss);
    const fs::path a = tmp.path / ("straight-" + loss), b = tmp.path / ("resumed-" + loss);
    REQUIRE(train(tiny_config(tmp.path / "data", a, loss, 6), false) == 0);
    REQUIRE(train(tiny_config(tmp.path / "data", b, loss, 3), false) == 0);
    // A crash after the checkpoint may have logged iterations past it; resume drops them.
    std::ofstream(b / "log.jsonl", std::ios::app) << R"({"iteration": 4, "loss_D": 0, "loss_G": 0})"
                                                  << "\n";
    REQUIRE(train(tiny_config(tmp.path / "data", b, loss, 6), true) == 0);

    const TensorFile fa = load_safetensors(checkpoint_path(a.string()));
    const TensorFile fb = load_safetensors(checkpoint_path(b.string()));
    require_same_tensors(fa, fb);
    CHECK(fa.tensors.count("G.main.Start-ConvTranspose2d.weight") == 1);
    CHECK(fa.tensors.count("optD.exp_avg_sq.main.End-Conv2d.weight") == 1);
    const json ma = json::parse(fa.metadata.at("xgan")), mb = json::parse(fb.metadata.at("xgan"));
    CHECK(ma.at("iteration") == 6);
    for (const char* key : {"iteration", "rng", "loader", "adam", "config"}) CHECK(ma.at(key) == mb.at(key));

    const auto la = read_log(a / "log.jsonl"), lb = read_log(b / "log.jsonl");
    REQUIRE(la.size() == 6);
    REQUIRE(lb.size() == 6);
    for (size_t i = 0; i < la.size(); ++i) {
      INFO("log line " << i);
      CHECK(la[i].at("iteration") == static_cast<int64_t>(i + 1));
      CHECK(lb[i].at("iteration") == la[i].at("iteration"));
      CHECK(lb[i].at("epoch") == la[i].at("epoch"));
      CHECK(lb[i].at("loss_D").get<double>() == la[i].at("loss_D").get<double>());
      CHECK(lb[i].at("loss_G").get<double>() == la[i].at("loss_G").get<double>());
      CHECK(std::isfinite(la[i].at("loss_D").get<double>()));
      CHECK(la[i].contains("gp") == (loss == "wgan-gp"));
      if (loss == "wgan-gp") CHECK(lb[i].at("gp").get<double>() == la[i].at("gp").get<double>());
      CHECK(la[i].contains("ms_per_iter"));
      CHECK(la[i].contains("data_ms"));
    }
    // Samples on the fixed noise are identical too.
    CHECK(read_bytes(a / "samples_latest.png") == read_bytes(b / "samples_latest.png"));
    CHECK(fs::exists(a / "samples_000002.png"));
    CHECK(fs::exists(a / "samples_000006.png"));
    // No temporary file of an atomic write is left behind.
    CHECK_FALSE(any_tmp_file(a));
    CHECK_FALSE(any_tmp_file(b));
  }
}

TEST_CASE("different seeds give different runs; --epochs counts whole batches", "[trainer]") {
  TempDir tmp;
  write_synthetic_mnist(tmp.path / "data");
  TrainConfig c1 = tiny_config(tmp.path / "data", tmp.path / "s1", "dcgan", 2);
  TrainConfig c2 = tiny_config(tmp.path / "data", tmp.path / "s2", "dcgan", 2);
  c2.seed = 8;
  REQUIRE(train(c1, false) == 0);
  REQUIRE(train(c2, false) == 0);
  CHECK(read_log(tmp.path / "s1" / "log.jsonl")[0].at("loss_D") !=
        read_log(tmp.path / "s2" / "log.jsonl")[0].at("loss_D"));

  TrainConfig e = tiny_config(tmp.path / "data", tmp.path / "epochs", "dcgan", 0);
  e.epochs = 2;  // 64 images / batch 4 = 16 iterations per epoch
  e.log_every = 5;
  REQUIRE(train(e, false) == 0);
  const auto log = read_log(tmp.path / "epochs" / "log.jsonl");
  REQUIRE(log.size() == 7);  // 5, 10, ..., 30 and the last, 32
  CHECK(log.back().at("iteration") == 32);
  CHECK(log.back().at("epoch") == 1);
  CHECK(log[3].at("iteration") == 20);
  CHECK(log[3].at("epoch") == 1);
  CHECK(log[2].at("epoch") == 0);
}

TEST_CASE("a NaN stops the run and leaves the last checkpoint intact", "[trainer]") {
  TempDir tmp;
  write_synthetic_mnist(tmp.path / "data");
  // DCGAN's BCE rejects a NaN probability (an exception inside the step); WGAN-GP's loss is NaN.
  for (const std::string loss : {"dcgan", "wgan-gp"}) {
    INFO("loss " << loss);
    const fs::path out = tmp.path / loss;
    REQUIRE(train(tiny_config(tmp.path / "data", out, loss, 3), false) == 0);
    const std::string ckpt = checkpoint_path(out.string());
    const std::string before = read_bytes(ckpt);

    // The same run continued on poisoned data: D(real) is NaN.
    Dataset poisoned{"mnist", full({64, 1, 16, 16}, std::nan("")), std::vector<uint8_t>(64, 0)};
    TrainConfig c = tiny_config(tmp.path / "data", out, loss, 6);
    c.ckpt_every = 1;  // would overwrite the checkpoint at every iteration, were it not stopped
    CHECK(train(c, true, poisoned) == kExitNonFinite);
    CHECK(read_bytes(ckpt) == before);
    const TensorFile f = load_safetensors(ckpt);
    CHECK(json::parse(f.metadata.at("xgan")).at("iteration") == 3);
    CHECK(read_log(out / "log.jsonl").size() == 3);  // the NaN iteration is not logged
    CHECK_FALSE(any_tmp_file(out));
    // And the run can still be continued from it on good data.
    CHECK(train(c, true) == 0);
  }
}

TEST_CASE("resuming with a different config fails and lists the differences", "[trainer]") {
  TempDir tmp;
  write_synthetic_mnist(tmp.path / "data");
  const fs::path out = tmp.path / "run";
  REQUIRE(train(tiny_config(tmp.path / "data", out, "dcgan", 2), false) == 0);

  TrainConfig c = tiny_config(tmp.path / "data", out, "wgan-gp", 4);
  c.image_size = 32;
  c.lr = 2e-4;
  try {
    train(c, true);
    FAIL("train did not throw");
  } catch (const std::runtime_error& e) {
    const std::string m = e.what();
    INFO(m);
    CHECK(m.find("differs") != std::string::npos);
    CHECK(m.find("loss: checkpoint \"dcgan\", now \"wgan-gp\"") != std::string::npos);
    CHECK(m.find("image_size: checkpoint 16, now 32") != std::string::npos);
    CHECK(m.find("lr:") != std::string::npos);
    CHECK(m.find("width") == std::string::npos);
  }
  // Starting afresh over an existing run, or resuming where there is none, are errors too.
  CHECK_THROWS_WITH(train(tiny_config(tmp.path / "data", out, "dcgan", 2), false),
                    Catch::Contains("--resume"));
  CHECK_THROWS_WITH(train(tiny_config(tmp.path / "data", tmp.path / "none", "dcgan", 2), true),
                    Catch::Contains("no checkpoint"));
  // More iterations and other intervals are fine.
  TrainConfig more = tiny_config(tmp.path / "data", out, "dcgan", 4);
  more.log_every = 3;
  CHECK(train(more, true) == 0);
}

TEST_CASE("sample grids: size, layout and the run's fixed noise", "[trainer]") {
  TempDir tmp;
  write_synthetic_mnist(tmp.path / "data");
  const fs::path out = tmp.path / "run";
  REQUIRE(train(tiny_config(tmp.path / "data", out, "dcgan", 2), false) == 0);

  // 8x8 grid of 16x16 images with 2-px padding: 8 * (16 + 2) + 2 = 146 pixels a side, grey.
  const PngHeader h = png_header(out / "samples_latest.png");
  CHECK(h.w == 146);
  CHECK(h.h == 146);
  CHECK(h.color_type == 0);

  // `xgan sample` without a seed reproduces the run's last grid; from the directory or the file.
  sample_from_checkpoint(out.string(), (tmp.path / "s.png").string(), 64, std::nullopt);
  CHECK(read_bytes(tmp.path / "s.png") == read_bytes(out / "samples_latest.png"));
  sample_from_checkpoint(checkpoint_path(out.string()), (tmp.path / "s10.png").string(), 10, 3);
  const PngHeader h10 = png_header(tmp.path / "s10.png");
  CHECK(h10.w == 146);  // 8 per row
  CHECK(h10.h == 38);   // 2 rows
  CHECK_THROWS_WITH(
      sample_from_checkpoint((tmp.path / "nothing").string(), (tmp.path / "x.png").string(), 4, 1),
      Catch::Contains("does not exist"));

  // RGB, and the value mapping [-1, 1] -> [0, 255].
  Tensor rgb = full({3, 3, 5, 7}, 1.0);
  write_image_grid((tmp.path / "rgb.png").string(), rgb, 2, 1);
  const PngHeader hr = png_header(tmp.path / "rgb.png");
  CHECK(hr.w == 2 * (7 + 1) + 1);
  CHECK(hr.h == 2 * (5 + 1) + 1);
  CHECK(hr.color_type == 2);
  CHECK_FALSE(any_tmp_file(tmp.path));
}
