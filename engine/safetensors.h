// safetensors files: the format PyTorch users exchange weights in.
// Layout: 8-byte little-endian header length N, N bytes of JSON header
//   {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"key": "value"}}
// then the data buffer; offsets are relative to the buffer's start.
// Reading validates everything before touching data: a truncated file, a malformed header,
// unknown dtypes, offsets outside the buffer or overlapping, or a size that does not match the
// shape all raise std::runtime_error naming the file and the problem. Writing goes to a
// temporary file in the same directory which is flushed and renamed over the target, so a crash
// never leaves a half-written file.
#pragma once
#include <map>
#include <string>

#include "engine/tensor.h"

namespace xgan {

struct TensorFile {
  std::map<std::string, Tensor> tensors;        // CPU tensors, F32 / F64 / I64
  std::map<std::string, std::string> metadata;  // "__metadata__"
};

TensorFile load_safetensors(const std::string& path);
// Tensors may live on any device (copied to the host). Dtypes written as F32, F64, I64.
void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace xgan
