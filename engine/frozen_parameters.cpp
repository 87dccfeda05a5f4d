// The FrozenParameters scope of engine/backend.h: a per-thread depth; the outermost scope's end
// tells the kernels to drop what they kept. Tested by tests/test_winograd.cpp.
#include "engine/backend.h"

namespace xgan {

namespace {
thread_local int t_frozen_depth = 0;
}

FrozenParameters::FrozenParameters() { ++t_frozen_depth; }

FrozenParameters::~FrozenParameters() {
  if (--t_frozen_depth == 0) cpu::drop_parameter_forms();
}

bool FrozenParameters::active() { return t_frozen_depth > 0; }

}  // namespace xgan
