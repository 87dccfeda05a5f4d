// Reading and writing safetensors files (https://github.com/huggingface/safetensors, format
// section): the weight files xgan exchanges with PyTorch. The reader trusts nothing in the file:
// every field is checked before a byte of tensor data is allocated or read. The writer replaces the
// target atomically (temp file, fsync, rename). Tested by tests/test_safetensors.cpp.
#include "engine/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>
#include <utility>
#include <vector>

namespace xgan {

// Tensor data is memcpy'd between the file and host storage, which is only right when the host
// stores numbers little-endian like the format does (x86-64 and aarch64 Linux both do).
static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; a big-endian host would need byte swapping");

namespace {

using json = nlohmann::json;

// A header beyond this is not a weight file: PyTorch's largest checkpoints have headers of a few MB.
// The reference implementation uses the same 100 MB limit; it stops us allocating whatever 8 garbage
// bytes happen to say.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

const char* kSupported = "xgan reads F32, F64 and I64";

const char* dtype_code(DType t) {
  switch (t) {
    case DType::f32:
      return "F32";
    case DType::f64:
      return "F64";
    case DType::i64:
      return "I64";
  }
  return "?";
}

bool parse_dtype_code(const std::string& code, DType& out) {
  if (code == "F32") {
    out = DType::f32;
    return true;
  }
  if (code == "F64") {
    out = DType::f64;
    return true;
  }
  if (code == "I64") {
    out = DType::i64;
    return true;
  }
  return false;
}

// Dtypes the format defines that xgan has no element type for.
bool is_other_safetensors_dtype(const std::string& code) {
  static const char* const kOthers[] = {"BOOL", "U8",      "I8",      "F8_E5M2", "F8_E4M3", "I16",
                                        "U16",  "F16",     "BF16",    "I32",     "U32",     "U64",
                                        "F4",   "F6_E2M3", "F6_E3M2", "E8M0",    "F8_E8M0"};
  return std::any_of(std::begin(kOthers), std::end(kOthers), [&](const char* c) { return code == c; });
}

std::string in_quotes(const std::string& name) { return "'" + name + "'"; }

// A JSON value for an error message: numbers and short strings verbatim, containers by type only
// (dumping an adversarial, deeply nested header would be slow and recursive).
std::string describe(const json& j) {
  if (j.is_number() || j.is_boolean() || j.is_null()) return j.dump();
  if (j.is_string()) {
    const auto& s = j.get_ref<const std::string&>();
    return s.size() <= 40 ? json(s).dump(-1, ' ', false, json::error_handler_t::replace) : "a long string";
  }
  return std::string("an ") + (j.is_array() ? "array" : "object");
}

// A JSON integer in [0, 2^63): shapes and offsets. Floats (2.0), negatives and huge values fail.
bool as_index(const json& j, uint64_t& out) {
  if (j.is_number_unsigned()) {
    out = j.get<uint64_t>();
  } else if (j.is_number_integer()) {
    const int64_t v = j.get<int64_t>();
    if (v < 0) return false;
    out = static_cast<uint64_t>(v);
  } else {
    return false;
  }
  return out <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
}

struct Entry {
  std::string name;
  DType dtype = DType::f32;
  Shape shape;
  uint64_t begin = 0, end = 0;
};

class Reader {
 public:
  explicit Reader(std::string path) : path_(std::move(path)) {}

  TensorFile read() {
    open();
    const std::string header_text = read_header_text();
    const std::vector<Entry> entries = parse_header(header_text);
    check_overlaps(entries);
    for (const Entry& e : entries) file_.tensors.emplace(e.name, read_tensor(e));
    return std::move(file_);
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { throw std::runtime_error(path_ + ": " + what); }
  [[noreturn]] void fail(const std::string& name, const std::string& what) const {
    fail("tensor " + in_quotes(name) + ": " + what);
  }

  void open() {
    std::error_code ec;
    if (std::filesystem::is_directory(path_, ec)) fail("is a directory, not a safetensors file");
    errno = 0;
    in_.open(path_, std::ios::binary);
    if (!in_) {
      const int err = errno;  // std::ifstream does not promise errno; glibc's fopen sets it
      fail(std::string("cannot open for reading") + (err ? std::string(": ") + std::strerror(err) : ""));
    }
    in_.seekg(0, std::ios::end);
    const std::streamoff size = in_.tellg();
    if (!in_ || size < 0) fail("cannot determine the file size (not a regular file?)");
    file_size_ = static_cast<uint64_t>(size);
    in_.seekg(0, std::ios::beg);
    if (!in_) fail("cannot seek to the start of the file");
  }

  void read_exact(char* dst, uint64_t offset, uint64_t bytes) {
    in_.seekg(static_cast<std::streamoff>(offset), std::ios::beg);
    in_.read(dst, static_cast<std::streamsize>(bytes));
    if (!in_ || static_cast<uint64_t>(in_.gcount()) != bytes)
      fail("read of " + std::to_string(bytes) + " bytes at offset " + std::to_string(offset) +
           " failed (file truncated or changed while reading?)");
  }

  std::string read_header_text() {
    if (file_size_ < 8)
      fail("file is " + std::to_string(file_size_) +
           " bytes, too short for the 8-byte header length (truncated, or not a safetensors file)");
    unsigned char prefix[8];
    read_exact(reinterpret_cast<char*>(prefix), 0, 8);
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | prefix[i];  // little-endian, whatever the host
    if (n > kMaxHeaderBytes)
      fail("header length " + std::to_string(n) + " bytes is absurdly large (limit " +
           std::to_string(kMaxHeaderBytes) + "); not a safetensors file?");
    if (n > file_size_ - 8)
      fail("truncated: the header length says " + std::to_string(n) + " bytes but only " +
           std::to_string(file_size_ - 8) + " bytes follow the 8-byte prefix");
    data_start_ = 8 + n;
    data_bytes_ = file_size_ - data_start_;
    std::string text(n, '\0');
    if (n) read_exact(text.data(), 8, n);
    return text;
  }

  std::vector<Entry> parse_header(const std::string& text) {
    // nlohmann's lexer takes a NUL byte for the end of input and would ignore whatever follows it;
    // raw NULs are never valid JSON (control characters inside strings must be escaped).
    if (const size_t nul = text.find('\0'); nul != std::string::npos)
      fail("header is not valid JSON: NUL byte at header offset " + std::to_string(nul));
    // nlohmann keeps the last of duplicate keys silently; a file that names a tensor twice is
    // ambiguous, so top-level keys (depth 1) are tracked while parsing.
    std::set<std::string> seen;
    std::string duplicate;
    json header;
    try {
      header = json::parse(text, [&](int depth, json::parse_event_t event, json& parsed) {
        if (depth == 1 && event == json::parse_event_t::key && parsed.is_string()) {
          const auto& key = parsed.get_ref<const std::string&>();
          if (!seen.insert(key).second && duplicate.empty()) duplicate = key;
        }
        return true;
      });
    } catch (const json::exception& e) {
      fail(std::string("header is not valid JSON: ") + e.what());
    }
    if (!header.is_object()) fail("header JSON must be an object, got " + describe(header));
    if (!duplicate.empty())
      fail("tensor name " + in_quotes(duplicate) + " appears more than once in the header");

    std::vector<Entry> entries;
    for (const auto& [name, value] : header.items()) {
      if (name == "__metadata__") {
        read_metadata(value);
      } else {
        entries.push_back(parse_entry(name, value));
      }
    }
    return entries;
  }

  void read_metadata(const json& value) {
    if (!value.is_object()) fail("__metadata__ must be an object of strings, got " + describe(value));
    for (const auto& [key, v] : value.items()) {
      if (!v.is_string())
        fail("__metadata__ value for key " + in_quotes(key) + " must be a string, got " + describe(v));
      file_.metadata.emplace(key, v.get<std::string>());
    }
  }

  Entry parse_entry(const std::string& name, const json& value) const {
    Entry e;
    e.name = name;
    if (!value.is_object()) fail(name, "entry must be an object, got " + describe(value));
    for (const char* field : {"dtype", "shape", "data_offsets"})
      if (!value.contains(field)) fail(name, std::string("missing \"") + field + "\"");

    const json& dtype = value.at("dtype");
    if (!dtype.is_string()) fail(name, "\"dtype\" must be a string, got " + describe(dtype));
    const auto& code = dtype.get_ref<const std::string&>();
    if (!parse_dtype_code(code, e.dtype)) {
      if (is_other_safetensors_dtype(code))
        fail(name, "dtype " + code + " is not supported (" + kSupported + ")");
      fail(name, "unknown dtype " + describe(dtype) + " (" + kSupported + ")");
    }

    const json& shape = value.at("shape");
    if (!shape.is_array())
      fail(name, "\"shape\" must be an array of non-negative integers, got " + describe(shape));
    // numel * itemsize must fit in int64 (and so in size_t); checked as the dims are multiplied.
    const uint64_t limit = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
    uint64_t bytes = dtype_size(e.dtype);
    for (const json& d : shape) {
      uint64_t dim = 0;
      if (!as_index(d, dim)) fail(name, "shape dimensions must be non-negative integers, got " + describe(d));
      e.shape.push_back(static_cast<int64_t>(dim));
      if (dim != 0 && bytes > limit / dim)
        fail(name, "shape has too many elements (the byte size overflows int64)");
      bytes *= dim;
    }
    // Rejected even when a later dim is 0: numel_of() multiplies left to right and would overflow.

    const json& offsets = value.at("data_offsets");
    if (!offsets.is_array() || offsets.size() != 2 || !as_index(offsets[0], e.begin) ||
        !as_index(offsets[1], e.end))
      fail(name, "\"data_offsets\" must be an array of two non-negative integers [begin, end]");
    const std::string range = "[" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "]";
    if (e.begin > e.end) fail(name, "data_offsets " + range + " have begin > end");
    if (e.end > data_bytes_)
      fail(name, "data_offsets " + range + " out of range: the data buffer holds only " +
                     std::to_string(data_bytes_) + " bytes (file truncated?)");
    if (e.end - e.begin != bytes)
      fail(name, "shape " + shape_str(e.shape) + " of " + code + " needs " + std::to_string(bytes) +
                     " bytes but data_offsets " + range + " span " + std::to_string(e.end - e.begin));
    return e;
  }

  // Sorted by begin, each non-empty range must start at or after the previous one's end. Empty
  // tensors ([0, 3]) occupy no bytes and overlap nothing.
  void check_overlaps(const std::vector<Entry>& entries) const {
    std::vector<const Entry*> ranges;
    for (const Entry& e : entries)
      if (e.end > e.begin) ranges.push_back(&e);
    std::sort(ranges.begin(), ranges.end(),
              [](const Entry* a, const Entry* b) { return a->begin < b->begin; });
    for (size_t i = 1; i < ranges.size(); ++i) {
      const Entry& a = *ranges[i - 1];
      const Entry& b = *ranges[i];
      if (b.begin < a.end)
        fail("tensors " + in_quotes(a.name) + " [" + std::to_string(a.begin) + ", " + std::to_string(a.end) +
             "] and " + in_quotes(b.name) + " [" + std::to_string(b.begin) + ", " + std::to_string(b.end) +
             "] overlap in the data buffer");
    }
  }

  Tensor read_tensor(const Entry& e) {
    Tensor t = empty(e.shape, e.dtype, kCPU);
    if (e.end > e.begin) read_exact(static_cast<char*>(t.raw()), data_start_ + e.begin, e.end - e.begin);
    return t;
  }

  std::string path_;
  std::ifstream in_;
  uint64_t file_size_ = 0, data_start_ = 0, data_bytes_ = 0;
  TensorFile file_;
};

// The temporary file of one save: removed on destruction unless committed (renamed into place).
class TempFile {
 public:
  TempFile(std::string target, std::string tmp) : target_(std::move(target)), tmp_(std::move(tmp)) {
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd_ < 0) {
      const int err = errno;
      fail(err, "cannot create temporary file " + tmp_);
    }
  }
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(tmp_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  void write(const void* data, size_t bytes) {
    const char* p = static_cast<const char*>(data);
    while (bytes > 0) {
      const ssize_t n = ::write(fd_, p, bytes);
      if (n < 0) {
        const int err = errno;
        if (err == EINTR) continue;
        fail(err, "write to " + tmp_ + " failed");
      }
      if (n == 0) fail(0, "write to " + tmp_ + " made no progress");
      p += n;
      bytes -= static_cast<size_t>(n);
    }
  }

  // fsync so the data is on disk before the rename makes it visible under the target name.
  void commit() {
    if (::fsync(fd_) != 0) {
      const int err = errno;
      fail(err, "fsync of " + tmp_ + " failed");
    }
    const int fd = std::exchange(fd_, -1);
    if (::close(fd) != 0) {
      const int err = errno;
      fail(err, "close of " + tmp_ + " failed");
    }
    if (std::rename(tmp_.c_str(), target_.c_str()) != 0) {
      const int err = errno;
      fail(err, "rename of " + tmp_ + " over the target failed");
    }
    committed_ = true;
    // Best effort: persist the directory entry too. The file itself is complete either way.
    std::filesystem::path dir = std::filesystem::path(target_).parent_path();
    const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      (void)::fsync(dfd);
      ::close(dfd);
    }
  }

 private:
  // `err` is errno as the failing call left it (0: none), read by the caller before anything else.
  [[noreturn]] void fail(int err, const std::string& what) const {
    throw std::runtime_error(target_ + ": " + what + (err ? std::string(": ") + std::strerror(err) : ""));
  }

  std::string target_, tmp_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace

TensorFile load_safetensors(const std::string& path) { return Reader(path).read(); }

void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  auto fail = [&](const std::string& what) { throw std::runtime_error(path + ": " + what); };
  if (path.empty()) throw std::runtime_error("save_safetensors: empty path");

  // Header: std::map iterates by name, and so does nlohmann's object, so the JSON order and the
  // data order agree; offsets are contiguous from 0.
  json header = json::object();
  std::vector<Tensor> host;
  host.reserve(tensors.size());
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (name.empty()) fail("empty tensor name");
    if (name.rfind("__", 0) == 0)
      fail("tensor name " + in_quotes(name) + " starts with \"__\" (reserved by the format)");
    if (!t.defined()) fail("tensor " + in_quotes(name) + " is undefined");
    Tensor h = t.to(kCPU);
    const uint64_t bytes = h.nbytes();
    header[name] = {{"dtype", dtype_code(h.dtype())},
                    {"shape", h.shape()},
                    {"data_offsets", json::array({offset, offset + bytes})}};
    offset += bytes;
    host.push_back(std::move(h));
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;

  std::string text;
  try {
    text = header.dump();  // strict: a name or value that is not valid UTF-8 throws
  } catch (const json::exception& e) {
    fail(std::string("cannot encode the header (names and metadata must be UTF-8): ") + e.what());
  }
  // Pad with spaces so the data buffer starts 8-byte aligned, as the reference writer does.
  text.append((8 - text.size() % 8) % 8, ' ');
  unsigned char prefix[8];
  for (int i = 0; i < 8; ++i)
    prefix[i] = static_cast<unsigned char>(static_cast<uint64_t>(text.size()) >> (8 * i));

  TempFile out(path, path + ".tmp." + std::to_string(::getpid()));
  out.write(prefix, sizeof prefix);
  out.write(text.data(), text.size());
  for (const Tensor& h : host) out.write(h.raw(), h.nbytes());
  out.commit();
}

}  // namespace xgan
