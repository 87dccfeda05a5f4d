// The --device option of `xgan step` and `xgan explain`: cpu, cuda (= cuda:0) or auto (the GPU
// when this build has CUDA and one is visible, else the CPU). `xgan train` resolves its own, with
// a probe step (train/trainer.cpp resolve_device).
#pragma once
#include <string>

#include "engine/dtype.h"

namespace xgan::cli {

inline const char* kDeviceHelp = "Where to run: cpu, cuda (the first GPU; needs a CUDA build) or auto";

// Throws std::invalid_argument naming the value and why it cannot be used.
Device parse_device(const std::string& s);

}  // namespace xgan::cli
