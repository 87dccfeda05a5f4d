// Element types and devices: the two small enums every tensor carries.
// float32 is the training type; float64 exists on the CPU so finite-difference checks are exact
// enough; int64 exists only so safetensors files with `num_batches_tracked` round-trip (no op uses it).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace xgan {

enum class DType : uint8_t { f32, f64, i64 };

inline size_t dtype_size(DType t) { return t == DType::f32 ? 4 : 8; }
inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32:
      return "float32";
    case DType::f64:
      return "float64";
    case DType::i64:
      return "int64";
  }
  return "?";
}

enum class DeviceType : uint8_t { cpu, cuda };

struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;
  bool operator==(const Device&) const = default;
  bool is_cpu() const { return type == DeviceType::cpu; }
  bool is_cuda() const { return type == DeviceType::cuda; }
  std::string str() const { return is_cpu() ? "cpu" : "cuda:" + std::to_string(index); }
};

inline constexpr Device kCPU{DeviceType::cpu, 0};

}  // namespace xgan
