// safetensors reader and writer: bit-exact round trips, the on-disk layout, a file built byte by
// byte from the format description, every way a file can be damaged, and the atomic save.
// Run: ctest -R test_safetensors (or build/tests/test_safetensors directly).
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "engine/safetensors.h"
#include "temp_dir.h"

namespace fs = std::filesystem;
using xgan::DType;
using xgan::Tensor;

namespace {

using TempDir = xgan::test::TempDir;

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

// A safetensors file: 8-byte little-endian header length, the header, the data buffer.
std::string make_file(const std::string& header, const std::string& data = "") {
  return le64(header.size()) + header + data;
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Loading `path` throws std::runtime_error whose message starts with the path and contains `needle`.
void require_load_error(const std::string& path, const std::string& needle) {
  std::string message;
  bool threw = false;
  try {
    xgan::load_safetensors(path);
  } catch (const std::runtime_error& e) {
    threw = true;
    message = e.what();
  }
  INFO("path: " << path << "\nmessage: " << message);
  REQUIRE(threw);
  CHECK(message.rfind(path + ": ", 0) == 0);
  CHECK_THAT(message, Catch::Contains(needle));
}

// Writes a file with this header and data buffer, then expects loading it to fail with `needle`.
void require_header_error(const TempDir& tmp, const std::string& header, const std::string& data,
                          const std::string& needle) {
  const std::string path = tmp.file("bad.safetensors");
  write_bytes(path, make_file(header, data));
  require_load_error(path, needle);
}

template <class T>
Tensor tensor_of(const std::vector<T>& values, const xgan::Shape& shape, DType dtype) {
  Tensor t = xgan::empty(shape, dtype);
  REQUIRE(static_cast<size_t>(t.numel()) == values.size());
  if (!values.empty()) std::memcpy(t.raw(), values.data(), values.size() * sizeof(T));
  return t;
}

// Same dtype, shape, device and the very same bytes (NaN payloads and -0.0 included).
void require_bit_equal(const Tensor& got, const Tensor& want) {
  INFO("got " << got.str() << ", want " << want.str());
  REQUIRE(got.dtype() == want.dtype());
  REQUIRE(got.shape() == want.shape());
  REQUIRE(got.device().is_cpu());
  CHECK(std::memcmp(got.raw(), want.raw(), want.nbytes()) == 0);
}

// A small valid file: F32 matrix, I64 scalar, an empty tensor and metadata.
std::string small_valid_file(const TempDir& tmp) {
  const std::string path = tmp.file("small.safetensors");
  xgan::save_safetensors(path,
                         {{"w", tensor_of<float>({1, 2, 3, 4, 5, 6}, {2, 3}, DType::f32)},
                          {"count", tensor_of<int64_t>({7}, {}, DType::i64)},
                          {"none", xgan::empty({0, 3}, DType::f64)}},
                         {{"format", "pt"}});
  return read_bytes(path);
}

}  // namespace

TEST_CASE("safetensors round-trips F32, F64 and I64 tensors bit-exactly, with metadata") {
  TempDir tmp;
  const float fnan = std::numeric_limits<float>::quiet_NaN();
  const double dnan = std::numeric_limits<double>::quiet_NaN();
  std::map<std::string, Tensor> tensors = {
      {"main.Conv2d_0.weight",
       tensor_of<float>({1.5f, -0.0f, std::numeric_limits<float>::infinity(), fnan,
                         std::numeric_limits<float>::denorm_min(), std::numeric_limits<float>::max()},
                        {2, 1, 3}, DType::f32)},
      {"bias64", tensor_of<double>({1.0 / 3.0, -std::numeric_limits<double>::infinity(),
                                    std::numeric_limits<double>::denorm_min(), dnan},
                                   {4}, DType::f64)},
      // Beyond 2^53: must survive without a detour through double.
      {"num_batches_tracked", tensor_of<int64_t>({123456789012345678}, {}, DType::i64)},
      {"ids",
       tensor_of<int64_t>({std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(), -1}, {3},
                          DType::i64)},
      {"scalar", tensor_of<float>({2.5f}, {}, DType::f32)},
      {"empty", xgan::empty({0, 3}, DType::f32)},
  };
  const std::map<std::string, std::string> metadata = {
      {"format", "pt"}, {"note", "h\xc3\xa9llo \"quoted\" \\ and a newline\n"}, {"", "empty key"}};
  const std::string path = tmp.file("round.safetensors");
  xgan::save_safetensors(path, tensors, metadata);

  const xgan::TensorFile f = xgan::load_safetensors(path);
  REQUIRE(f.tensors.size() == tensors.size());
  for (const auto& [name, want] : tensors) {
    INFO("tensor " << name);
    REQUIRE(f.tensors.count(name) == 1);
    require_bit_equal(f.tensors.at(name), want);
  }
  CHECK(f.tensors.at("scalar").dim() == 0);
  CHECK(f.tensors.at("scalar").item() == 2.5);
  CHECK(f.tensors.at("empty").numel() == 0);
  CHECK(f.tensors.at("num_batches_tracked").data<int64_t>()[0] == 123456789012345678);
  CHECK(f.metadata == metadata);

  SECTION("no metadata and no tensors are fine too") {
    xgan::save_safetensors(path, {});
    const xgan::TensorFile g = xgan::load_safetensors(path);
    CHECK(g.tensors.empty());
    CHECK(g.metadata.empty());
  }
}

TEST_CASE("safetensors layout: length prefix, padded header, tensors sorted by name and contiguous") {
  TempDir tmp;
  const std::string path = tmp.file("layout.safetensors");
  const Tensor b = tensor_of<float>({1, 2, 3}, {3}, DType::f32);
  const Tensor a = tensor_of<int64_t>({-5, 9}, {2}, DType::i64);
  xgan::save_safetensors(path, {{"b", b}, {"a", a}}, {{"k", "v"}});
  const std::string bytes = read_bytes(path);
  REQUIRE(bytes.size() >= 8);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[i]);
  CHECK(n % 8 == 0);
  REQUIRE(bytes.size() == 8 + n + 16 + 12);

  const std::string text = bytes.substr(8, n);
  const auto header = nlohmann::json::parse(text);
  CHECK(header["a"]["dtype"] == "I64");
  CHECK(header["a"]["shape"] == nlohmann::json::array({2}));
  CHECK(header["a"]["data_offsets"] == nlohmann::json::array({0, 16}));
  CHECK(header["b"]["dtype"] == "F32");
  CHECK(header["b"]["shape"] == nlohmann::json::array({3}));
  CHECK(header["b"]["data_offsets"] == nlohmann::json::array({16, 28}));
  CHECK(header["__metadata__"] == nlohmann::json({{"k", "v"}}));
  // The JSON itself ends with '}'; anything after it is padding, and padding is spaces.
  const size_t close = text.find_last_of('}');
  REQUIRE(close != std::string::npos);
  CHECK(text.find_first_not_of(' ', close + 1) == std::string::npos);
  CHECK(text.find("\"a\"") < text.find("\"b\""));  // sorted by name in the header as in the data
  CHECK(std::memcmp(bytes.data() + 8 + n, a.raw(), 16) == 0);
  CHECK(std::memcmp(bytes.data() + 8 + n + 16, b.raw(), 12) == 0);

  SECTION("every padding amount 0..7 gives a header length that is a multiple of 8") {
    std::set<size_t> unpadded_mod8;
    for (int len = 1; len <= 16; ++len) {
      const std::string name(static_cast<size_t>(len), 'x');
      xgan::save_safetensors(path, {{name, b}});
      const std::string out = read_bytes(path);
      uint64_t m = 0;
      for (int i = 7; i >= 0; --i) m = (m << 8) | static_cast<unsigned char>(out[i]);
      INFO("name length " << len);
      CHECK(m % 8 == 0);
      const std::string t = out.substr(8, m);
      unpadded_mod8.insert((t.find_last_of('}') + 1) % 8);
      CHECK(xgan::load_safetensors(path).tensors.at(name).to_vector() == std::vector<double>{1, 2, 3});
    }
    CHECK(unpadded_mod8.size() == 8);  // the loop really exercised every amount of padding
  }
}

TEST_CASE("a safetensors file written byte by byte from the format description loads correctly") {
  TempDir tmp;
  // Offsets deliberately not in name order, the header not padded, extra whitespace, metadata
  // first: all allowed by the format.
  const std::string header =
      "{ \"__metadata__\": {\"source\": \"hand\"},\n"
      "  \"x\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [16, 24]},\n"
      "  \"n\": {\"dtype\": \"I64\", \"shape\": [], \"data_offsets\": [0, 8]},\n"
      "  \"d\": {\"shape\": [1, 1], \"dtype\": \"F64\", \"data_offsets\": [8, 16]},\n"
      "  \"e\": {\"dtype\": \"F32\", \"shape\": [0, 4], \"data_offsets\": [24, 24]} }";
  const unsigned char data[] = {
      0x2a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // n = 42 (int64 LE)
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xe0, 0x3f,  // d = 0.5 (0x3FE0000000000000)
      0x00, 0x00, 0xc0, 0x3f,                          // x[0] = 1.5f (0x3FC00000)
      0x00, 0x00, 0x00, 0xc0,                          // x[1] = -2.0f (0xC0000000)
  };
  const std::string path = tmp.file("hand.safetensors");
  write_bytes(path, make_file(header, std::string(reinterpret_cast<const char*>(data), sizeof data)));

  const xgan::TensorFile f = xgan::load_safetensors(path);
  REQUIRE(f.tensors.size() == 4);
  const Tensor& x = f.tensors.at("x");
  CHECK(x.dtype() == DType::f32);
  CHECK(x.shape() == xgan::Shape{2});
  CHECK(x.data<float>()[0] == 1.5f);
  CHECK(x.data<float>()[1] == -2.0f);
  const Tensor& n = f.tensors.at("n");
  CHECK(n.dtype() == DType::i64);
  CHECK(n.dim() == 0);
  CHECK(n.data<int64_t>()[0] == 42);
  const Tensor& d = f.tensors.at("d");
  CHECK(d.dtype() == DType::f64);
  CHECK(d.shape() == xgan::Shape{1, 1});
  CHECK(d.data<double>()[0] == 0.5);
  const Tensor& e = f.tensors.at("e");
  CHECK(e.shape() == xgan::Shape{0, 4});
  CHECK(e.numel() == 0);
  CHECK(f.metadata == std::map<std::string, std::string>{{"source", "hand"}});
}

TEST_CASE("safetensors: every truncation of a valid file throws, never crashes") {
  TempDir tmp;
  const std::string full = small_valid_file(tmp);
  const std::string path = tmp.file("cut.safetensors");
  write_bytes(path, full);
  REQUIRE_NOTHROW(xgan::load_safetensors(path));
  for (size_t len = 0; len < full.size(); ++len) {
    INFO("truncated to " << len << " of " << full.size() << " bytes");
    write_bytes(path, full.substr(0, len));
    require_load_error(path, "");
  }
  // Spot checks of the messages at the interesting cut points.
  write_bytes(path, full.substr(0, 5));
  require_load_error(path, "too short");
  write_bytes(path, full.substr(0, 20));
  require_load_error(path, "truncated");
  write_bytes(path, full.substr(0, full.size() - 1));
  require_load_error(path, "out of range");
}

TEST_CASE("safetensors: garbage and bad header lengths are rejected") {
  TempDir tmp;
  const std::string path = tmp.file("garbage.safetensors");

  SECTION("missing file") { require_load_error(tmp.file("nope.safetensors"), "cannot open"); }
  SECTION("a directory") { require_load_error(tmp.dir.string(), "is a directory"); }
  SECTION("empty file") {
    write_bytes(path, "");
    require_load_error(path, "too short");
  }
  SECTION("a text file") {
    write_bytes(path, "this is not a safetensors file, just some text\n");
    require_load_error(path, "absurdly large");
  }
  SECTION("random bytes, with and without a plausible header length") {
    std::mt19937 rng(1234);
    for (int trial = 0; trial < 50; ++trial) {
      std::string bytes(1 + rng() % 300, '\0');
      for (char& c : bytes) c = static_cast<char>(rng() & 0xff);
      INFO("trial " << trial);
      write_bytes(path, bytes);
      require_load_error(path, "");
      if (bytes.size() > 8) {
        write_bytes(path, le64(rng() % (bytes.size() - 7)) + bytes.substr(8));
        require_load_error(path, "");
      }
    }
  }
  SECTION("header length over the limit") {
    write_bytes(path, le64(uint64_t{1} << 40) + "{}");
    require_load_error(path, "absurdly large");
    write_bytes(path, le64(100'000'001) + "{}");
    require_load_error(path, "absurdly large");
    write_bytes(path, le64(std::numeric_limits<uint64_t>::max()) + "{}");  // 8 + n would wrap
    require_load_error(path, "absurdly large");
  }
  SECTION("header length past the end of the file") {
    write_bytes(path, le64(3) + "{}");
    require_load_error(path, "truncated");
    require_load_error(path, "3 bytes but only 2");
  }
}

TEST_CASE("safetensors: malformed headers are rejected with a message that says why") {
  TempDir tmp;
  const std::string data8(8, '\0');
  const auto entry = [](const std::string& body) { return "{\"t\": {" + body + "}}"; };

  SECTION("JSON that does not parse") {
    require_header_error(tmp, "{\"a\": {", "", "not valid JSON");
    require_header_error(tmp, "{} trailing", "", "not valid JSON");
    require_header_error(tmp, "", "", "not valid JSON");
    require_header_error(tmp, "{\"\xff\xfe\": 1}", "", "not valid JSON");  // not UTF-8
    // A NUL ends nlohmann's input; the junk after it must not be silently ignored.
    require_header_error(tmp, std::string("{}\0junk", 6), "", "NUL byte at header offset 2");
  }
  SECTION("top level not an object") {
    require_header_error(tmp, "[1, 2]", "", "must be an object");
    require_header_error(tmp, "\"F32\"", "", "must be an object");
    require_header_error(tmp, "null", "", "must be an object");
  }
  SECTION("entries with missing fields or wrong types") {
    require_header_error(tmp, "{\"t\": 3}", "", "tensor 't': entry must be an object");
    require_header_error(tmp, entry("\"shape\": [2], \"data_offsets\": [0, 8]"), data8, "missing \"dtype\"");
    require_header_error(tmp, entry("\"dtype\": \"F32\", \"data_offsets\": [0, 8]"), data8,
                         "missing \"shape\"");
    require_header_error(tmp, entry("\"dtype\": \"F32\", \"shape\": [2]"), data8, "missing \"data_offsets\"");
    require_header_error(tmp, entry("\"dtype\": 32, \"shape\": [2], \"data_offsets\": [0, 8]"), data8,
                         "\"dtype\" must be a string");
    require_header_error(tmp, entry("\"dtype\": \"F32\", \"shape\": 2, \"data_offsets\": [0, 8]"), data8,
                         "\"shape\" must be an array");
    require_header_error(tmp, entry("\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8, 9]"), data8,
                         "\"data_offsets\" must be an array of two");
    require_header_error(tmp, entry("\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [-1, 7]"), data8,
                         "\"data_offsets\" must be an array of two");
    require_header_error(tmp, entry("\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0.0, 8]"), data8,
                         "\"data_offsets\" must be an array of two");
    require_header_error(tmp, entry("\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": {\"a\": 0}"),
                         data8, "\"data_offsets\" must be an array of two");
  }
  SECTION("bad shape dimensions") {
    require_header_error(tmp, entry("\"dtype\": \"F32\", \"shape\": [-2], \"data_offsets\": [0, 8]"), data8,
                         "non-negative integers, got -2");
    require_header_error(tmp, entry("\"dtype\": \"F32\", \"shape\": [2.0], \"data_offsets\": [0, 8]"), data8,
                         "non-negative integers, got 2.0");
    require_header_error(tmp, entry("\"dtype\": \"F32\", \"shape\": [\"2\"], \"data_offsets\": [0, 8]"),
                         data8, "non-negative integers");
    require_header_error(tmp, entry("\"dtype\": \"F32\", \"shape\": [[2]], \"data_offsets\": [0, 8]"), data8,
                         "non-negative integers, got an array");
    // 2^63 does not fit in int64.
    require_header_error(
        tmp, entry("\"dtype\": \"F32\", \"shape\": [9223372036854775808], \"data_offsets\": [0, 8]"), data8,
        "non-negative integers");
  }
  SECTION("element counts that overflow int64") {
    require_header_error(
        tmp, entry("\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296], \"data_offsets\": [0, 8]"),
        data8, "overflows");
    require_header_error(
        tmp, entry("\"dtype\": \"F64\", \"shape\": [2305843009213693952], \"data_offsets\": [0, 8]"), data8,
        "overflows");  // 2^61 elements * 8 bytes = 2^64
    // numel is 0 mathematically, but the running product overflows first.
    require_header_error(tmp,
                         entry("\"dtype\": \"F32\", \"shape\": [4611686018427387904, 4611686018427387904, "
                               "0], \"data_offsets\": [0, 0]"),
                         "", "overflows");
  }
  SECTION("dtypes xgan does not have") {
    for (const char* code : {"F16", "BF16", "I32", "U8", "BOOL"}) {
      INFO(code);
      require_header_error(tmp,
                           "{\"half_tensor\": {\"dtype\": \"" + std::string(code) +
                               "\", \"shape\": [2], \"data_offsets\": [0, 4]}}",
                           data8, "tensor 'half_tensor': dtype " + std::string(code) + " is not supported");
    }
    require_header_error(tmp, entry("\"dtype\": \"Q7\", \"shape\": [2], \"data_offsets\": [0, 8]"), data8,
                         "unknown dtype \"Q7\"");
  }
  SECTION("data offsets outside the buffer or inconsistent with the shape") {
    require_header_error(tmp, entry("\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]"), data8,
                         "data_offsets [0, 16] out of range: the data buffer holds only 8 bytes");
    require_header_error(tmp, entry("\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [9, 9]"), data8,
                         "out of range");
    require_header_error(tmp, entry("\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 4]"), data8,
                         "begin > end");
    require_header_error(tmp, entry("\"dtype\": \"F32\", \"shape\": [3], \"data_offsets\": [0, 8]"), data8,
                         "shape [3] of F32 needs 12 bytes but data_offsets [0, 8] span 8");
    require_header_error(tmp, entry("\"dtype\": \"I64\", \"shape\": [], \"data_offsets\": [0, 4]"), data8,
                         "needs 8 bytes");
  }
  SECTION("overlapping tensors") {
    const std::string data12(12, '\0');
    require_header_error(tmp,
                         "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
                         " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
                         data12, "overlap");
    require_header_error(tmp,
                         "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
                         " \"b\": {\"dtype\": \"I64\", \"shape\": [], \"data_offsets\": [0, 8]}}",
                         data12, "tensors 'a' [0, 8] and 'b' [0, 8] overlap");
    // An empty tensor occupies no bytes, so it overlaps nothing even inside another's range.
    const std::string path = tmp.file("ok.safetensors");
    write_bytes(path, make_file("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
                                " \"z\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [4, 4]}}",
                                data8));
    CHECK(xgan::load_safetensors(path).tensors.size() == 2);
  }
  SECTION("a tensor named twice") {
    require_header_error(tmp,
                         "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
                         " \"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}",
                         data8, "tensor name 'a' appears more than once");
  }
  SECTION("metadata must be an object of strings") {
    require_header_error(tmp, "{\"__metadata__\": {\"epoch\": 3}}", "",
                         "__metadata__ value for key 'epoch' must be a string, got 3");
    require_header_error(tmp, "{\"__metadata__\": {\"a\": \"b\", \"c\": null}}", "",
                         "must be a string, got null");
    require_header_error(tmp, "{\"__metadata__\": [\"a\"]}", "", "__metadata__ must be an object of strings");
    require_header_error(tmp, "{\"__metadata__\": \"a\"}", "", "__metadata__ must be an object of strings");
  }
}

TEST_CASE("safetensors: saving is atomic and checks its inputs") {
  TempDir tmp;
  const Tensor a = tensor_of<float>({1, 2}, {2}, DType::f32);
  const Tensor b = tensor_of<double>({3, 4, 5}, {3}, DType::f64);

  // Saving `tensors` to `path` throws std::runtime_error starting with the path and containing `needle`.
  const auto require_save_error = [](const std::string& path, const std::map<std::string, Tensor>& tensors,
                                     const std::string& needle) {
    std::string message;
    bool threw = false;
    try {
      xgan::save_safetensors(path, tensors);
    } catch (const std::runtime_error& e) {
      threw = true;
      message = e.what();
    }
    INFO("message: " << message);
    REQUIRE(threw);
    CHECK(message.rfind(path + ": ", 0) == 0);
    CHECK_THAT(message, Catch::Contains(needle));
  };

  SECTION("into a directory that does not exist: throws, leaves nothing behind") {
    const std::string path = (tmp.dir / "missing" / "w.safetensors").string();
    require_save_error(path, {{"a", a}}, "cannot create temporary file");
    CHECK(tmp.listing().empty());
  }
  SECTION("over an existing file: replaces it, no temp file left") {
    const std::string path = tmp.file("w.safetensors");
    xgan::save_safetensors(path, {{"a", a}}, {{"v", "1"}});
    xgan::save_safetensors(path, {{"b", b}}, {{"v", "2"}});
    const xgan::TensorFile f = xgan::load_safetensors(path);
    REQUIRE(f.tensors.size() == 1);
    require_bit_equal(f.tensors.at("b"), b);
    CHECK(f.metadata.at("v") == "2");
    CHECK(tmp.listing() == std::vector<std::string>{"w.safetensors"});
  }
  SECTION("when the final rename fails (the target is a directory): the temp file is removed") {
    const std::string path = tmp.file("w.safetensors");
    fs::create_directory(path);
    require_save_error(path, {{"a", a}}, "rename");
    CHECK(tmp.listing() == std::vector<std::string>{"w.safetensors"});
    CHECK(fs::is_directory(path));
  }
  SECTION("bad names are rejected before anything is written; the old file survives") {
    const std::string path = tmp.file("w.safetensors");
    xgan::save_safetensors(path, {{"a", a}});
    const std::string before = read_bytes(path);
    require_save_error(path, {{"", a}}, "empty tensor name");
    require_save_error(path, {{"__metadata__", a}}, "starts with \"__\"");
    require_save_error(path, {{"__x", a}, {"b", b}}, "'__x'");
    require_save_error(path, {{"a", Tensor()}}, "undefined");
    require_save_error(path, {{"bad\xff", a}}, "UTF-8");
    CHECK(read_bytes(path) == before);
    CHECK(tmp.listing() == std::vector<std::string>{"w.safetensors"});
  }
}
