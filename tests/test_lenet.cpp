// The offline metrics' classifier and scoring (models/lenet.h, train/eval.h): LeNet shapes and
// weights files (round trip, every differing tensor listed), classifier training on a tiny
// separable data set, the 0..255 image conventions, `eval` on a tiny trainer run, and the trainer's
// --eval-every (scores in the log, the run itself unchanged). Kept small to stay fast under ASan.
// Run: ctest -R test_lenet
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/rng.h"
#include "engine/safetensors.h"
#include "models/lenet.h"
#include "synthetic_mnist.h"
#include "temp_dir.h"
#include "train/eval.h"
#include "train/trainer.h"

using namespace xgan;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

Lenet random_lenet(uint64_t seed, int channels = 1) {
  Lenet net(channels);
  Generator rng(seed);
  net.init(rng);
  return net;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.dtype() == b.dtype() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

// Ten classes told apart by where a bright 8x8 square sits (a 4x4 grid of positions, the first
// ten), on a dark background with mild noise; `per_class` images each, labels 0..9 in turn.
Dataset separable_dataset(int per_class, uint32_t seed) {
  const int n = per_class * 10;
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> noise(-0.1f, 0.1f);
  std::vector<float> v(static_cast<size_t>(n) * 32 * 32);
  Dataset d;
  d.name = "separable";
  for (int i = 0; i < n; ++i) {
    const int c = i % 10, y0 = (c / 4) * 8, x0 = (c % 4) * 8;
    d.labels.push_back(static_cast<uint8_t>(c));
    for (int y = 0; y < 32; ++y)
      for (int x = 0; x < 32; ++x) {
        const bool in = y >= y0 && y < y0 + 8 && x >= x0 && x < x0 + 8;
        v[static_cast<size_t>((i * 32 + y) * 32 + x)] = (in ? 0.9f : -0.9f) + noise(gen);
      }
  }
  d.images = from_vector(v, {n, 1, 32, 32});
  return d;
}

using test::write_synthetic_mnist;

// A tiny GAN run (16x16 images, width 4) on the synthetic data.
TrainConfig tiny_run(const fs::path& data, const fs::path& out, int64_t iters) {
  TrainConfig c;
  c.dataset = "mnist";
  c.data_dir = data.string();
  c.image_size = 16;
  c.width = 4;
  c.z_dim = 8;
  c.batch = 4;
  c.iters = iters;
  c.seed = 3;
  c.out_dir = out.string();
  c.log_every = 1;
  c.sample_every = 100;
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

}  // namespace

TEST_CASE("LeNet: names, output shapes, shape errors", "[lenet]") {
  const Lenet net = random_lenet(1);
  std::vector<std::string> names;
  for (const auto& p : net.parameters()) names.push_back(p.name);
  CHECK(names == std::vector<std::string>{"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
                                          "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"});
  CHECK(net.state_dict().at("fc1.weight").shape() == Shape{128, 1600});

  Generator rng(2);
  const LenetOutput out = net.forward(rng.uniform({3, 1, 32, 32}, -1, 1));
  CHECK(out.features.shape() == Shape{3, 128});
  CHECK(out.logits.shape() == Shape{3, 10});
  double min_feature = 0;
  for (double v : out.features.to_vector()) min_feature = std::min(min_feature, v);
  CHECK(min_feature == 0.0);  // after a ReLU
  CHECK(random_lenet(1, 3).forward(rng.uniform({2, 3, 32, 32}, -1, 1)).logits.shape() == Shape{2, 10});
  CHECK_THROWS_WITH(net.forward(zeros({2, 1, 28, 28})), Catch::Contains("[N, 1, 32, 32]"));
  CHECK_THROWS_WITH(net.forward(zeros({2, 3, 32, 32})), Catch::Contains("[N, 1, 32, 32]"));
}

TEST_CASE("LeNet weights: round trip, missing file, every differing tensor listed", "[lenet]") {
  test::TempDir tmp("lenet");
  const Lenet net = random_lenet(5);
  const std::string path = tmp.file("sub/lenet.safetensors");  // the directory is created
  net.save(path, R"({"test_accuracy": 0.5})");
  CHECK(tmp.listing() == std::vector<std::string>{"sub"});  // no temporary file left

  std::string info;
  const Lenet back = Lenet::load(path, kCPU, &info);
  CHECK(json::parse(info).at("test_accuracy") == 0.5);
  for (const auto& [name, t] : net.state_dict()) {
    INFO(name);
    CHECK(same_bits(t, back.state_dict().at(name)));
  }
  Generator rng(3);
  const Tensor x = rng.uniform({2, 1, 32, 32}, -1, 1);
  CHECK(same_bits(net.forward(x).logits, back.forward(x).logits));

  CHECK_THROWS_WITH(Lenet::load(tmp.file("none.safetensors")), Catch::Contains("xgan train-classifier"));

  // Wrong shape, missing and unexpected tensors: one error naming each.
  auto sd = net.state_dict();
  sd["fc1.weight"] = zeros({128, 800});
  sd.erase("fc2.bias");
  sd["fc3.weight"] = zeros({2, 2});
  save_safetensors(tmp.file("bad.safetensors"), sd);
  try {
    Lenet::load(tmp.file("bad.safetensors"));
    FAIL("load did not throw");
  } catch (const std::runtime_error& e) {
    const std::string m = e.what();
    INFO(m);
    CHECK(m.find("fc1.weight (expected [128, 1600], got [128, 800])") != std::string::npos);
    CHECK(m.find("missing 1: fc2.bias") != std::string::npos);
    CHECK(m.find("unexpected 1: fc3.weight") != std::string::npos);
    CHECK(m.find("conv1.weight") == std::string::npos);  // the good ones are not listed
  }
}

TEST_CASE("train_classifier learns a separable data set and records its accuracy", "[lenet]") {
  test::TempDir tmp("lenet_train");
  const Dataset train = separable_dataset(2, 11), test = separable_dataset(1, 12);
  ClassifierConfig cfg;
  cfg.dataset = "separable";
  cfg.out = tmp.file("clf.safetensors");
  cfg.epochs = 12;
  cfg.batch = 10;
  cfg.lr = 3e-3;
  cfg.seed = 4;
  cfg.progress = false;

  // The untrained net is at chance: ln 10 = 2.30 nats, about 10% right.
  Lenet init(1);
  {
    Generator g(cfg.seed * 2 + 1);  // the initialisation train_classifier uses
    init.init(g);
  }
  CHECK(classifier_accuracy(init, test) < 0.5);

  const ClassifierResult r = train_classifier(cfg, train, test);
  CHECK(r.iterations == 24);  // 20 images / batch 10 = 2 per epoch
  // From chance (ln 10 = 2.30, +-0.3 for a random init) to well below: the loss of the last
  // iterations averages under half the first one's even with the early ones in the mean.
  CHECK(r.first_loss > 2.0);
  CHECK(r.last_loss < 0.5 * r.first_loss);
  CHECK(r.test_accuracy == 1.0);
  std::string info;
  const Lenet back = Lenet::load(cfg.out, kCPU, &info);
  CHECK(json::parse(info).at("test_accuracy").get<double>() == 1.0);
  CHECK(classifier_accuracy(back, train) == 1.0);

  // Deterministic given the seed: one epoch twice gives identical weights.
  cfg.epochs = 1;
  cfg.out = tmp.file("a.safetensors");
  train_classifier(cfg, train, test);
  cfg.out = tmp.file("b.safetensors");
  train_classifier(cfg, train, test);
  const TensorFile a = load_safetensors(tmp.file("a.safetensors")),
                   b = load_safetensors(tmp.file("b.safetensors"));
  for (const auto& [name, t] : a.tensors) {
    INFO(name);
    CHECK(same_bits(t, b.tensors.at(name)));
  }
}

TEST_CASE("image conventions: real pixels round-trip, fixed mapping rounds and clamps", "[lenet]") {
  // Every pixel value through the data pipeline's scaling and back: exactly the same integer, and
  // lenet_input gives back the pipeline's float bit for bit.
  std::vector<float> u(256), scaled(256);
  for (int i = 0; i < 256; ++i) {
    u[i] = static_cast<float>(i);
    scaled[i] = (static_cast<float>(i) / 255.0f - 0.5f) / 0.5f;  // train/data.cpp's formula
  }
  const Tensor x = from_vector(scaled, {1, 1, 16, 16});
  const Tensor back = real_to_uint8(x);
  CHECK(back.to_vector() == from_vector(u, {1, 1, 16, 16}).to_vector());
  // 16x16 is resized to the LeNet's 32x32; a 32x32 input passes unchanged.
  CHECK(lenet_input(back).shape() == Shape{1, 1, 32, 32});
  const Tensor x32 = from_vector(std::vector<float>(4 * 256, scaled[77]), {1, 1, 32, 32});
  CHECK(same_bits(lenet_input(real_to_uint8(x32)), x32));

  const Tensor g = from_vector(std::vector<float>{-1.5f, -1.0f, 0.0f, 0.999f, 1.0f, 3.0f}, {1, 1, 2, 3});
  CHECK(fake_to_uint8(g, false).to_vector() == std::vector<double>{0, 0, 128, 255, 255, 255});
  // The paper's min-max: the batch's minimum goes to 0 and its maximum to 255.
  const std::vector<double> mm = fake_to_uint8(g, true).to_vector();
  CHECK(mm.front() == 0);
  CHECK(mm.back() == 255);
}

TEST_CASE("eval scores a tiny run; --eval-every logs scores without changing the run", "[lenet]") {
  test::TempDir tmp("lenet_eval");
  write_synthetic_mnist(tmp.dir / "data");
  const std::string weights = tmp.file("lenet.safetensors");
  random_lenet(9).save(weights);  // untrained: the plumbing is under test here, not the scores
  const fs::path run = tmp.dir / "run";
  REQUIRE(train(tiny_run(tmp.dir / "data", run, 2), false) == 0);

  EvalConfig e;
  e.ckpt = run.string();
  e.n = 20;
  e.batch = 8;  // a partial last batch too
  e.weights = weights;
  e.progress = false;
  const EvalResult r = evaluate_checkpoint(e);
  CHECK(r.json_path == (run / "eval_lenet.json").string());
  const json j = json::parse(std::ifstream(r.json_path));
  for (const char* key : {"fid", "is_mean", "is_std"}) {
    INFO(key);
    CHECK(std::isfinite(j.at(key).get<double>()));
  }
  CHECK(j.at("fid").get<double>() == r.fid);
  CHECK(j.at("fid").get<double>() > 0);
  CHECK(j.at("is_mean").get<double>() >= 1.0);  // IS is exp(KL) >= 1
  CHECK(j.at("extractor") == "lenet");
  CHECK(j.at("n") == 20);
  CHECK(j.at("iteration") == 2);
  CHECK(j.at("ckpt") == checkpoint_path(run.string()));
  // Same seed, same scores; another noise seed, other scores.
  e.json = tmp.file("again.json");
  CHECK(evaluate_checkpoint(e).fid == r.fid);
  e.seed = 1;
  CHECK(evaluate_checkpoint(e).fid != r.fid);

  e.weights = tmp.file("missing.safetensors");
  CHECK_THROWS_WITH(evaluate_checkpoint(e), Catch::Contains("xgan train-classifier"));
  e.extractor = "inception";
  e.weights = "";
  CHECK_THROWS_WITH(evaluate_checkpoint(e), Catch::Contains("needs --weights"));
  e.extractor = "lenet";
  e.weights = weights;
  e.n = 65;
  CHECK_THROWS_WITH(evaluate_checkpoint(e), Catch::Contains("64 training images"));

  // --eval-every 2 over 3 iterations: scores at 2 and at the end; weights identical to a run
  // without scoring (scoring uses its own noise and G's eval mode).
  TrainConfig c = tiny_run(tmp.dir / "data", tmp.dir / "scored", 3);
  c.eval_every = 2;
  c.eval_n = 16;
  c.eval_weights = weights;
  REQUIRE(train(c, false) == 0);
  REQUIRE(train(tiny_run(tmp.dir / "data", tmp.dir / "plain", 3), false) == 0);
  const auto log = read_log(tmp.dir / "scored" / "log.jsonl");
  REQUIRE(log.size() == 3);
  CHECK_FALSE(log[0].contains("fid_lenet"));
  for (int i : {1, 2}) {
    INFO("log line " << i);
    CHECK(std::isfinite(log[i].at("fid_lenet").get<double>()));
    CHECK(log[i].at("is_lenet").get<double>() >= 1.0);
  }
  const TensorFile scored = load_safetensors(checkpoint_path((tmp.dir / "scored").string()));
  const TensorFile plain = load_safetensors(checkpoint_path((tmp.dir / "plain").string()));
  for (const auto& [name, t] : plain.tensors) {
    INFO(name);
    CHECK(same_bits(t, scored.tensors.at(name)));
  }
  c.out_dir = (tmp.dir / "nolenet").string();
  c.eval_weights = tmp.file("missing.safetensors");
  CHECK_THROWS_WITH(train(c, false), Catch::Contains("xgan train-classifier"));
}
