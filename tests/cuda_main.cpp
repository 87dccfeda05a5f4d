// The Catch2 main of the tests that need a GPU (tests/test_cuda_*.cpp). Where xgan was built
// without CUDA or no GPU is visible it exits with 77, ctest's SKIP_RETURN_CODE, so those tests
// report "skipped" instead of failing. Run them on a GPU machine with scripts/gpu_check.sh.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <cstdio>

#include "engine/backend.h"

int main(int argc, char** argv) {
  if (!xgan::cuda::compiled() || xgan::cuda::device_count() == 0) {
    std::printf("skipped: %s\n",
                xgan::cuda::compiled() ? "no GPU is visible" : "xgan was built without CUDA");
    return 77;
  }
  std::printf("GPU: %s\n", xgan::cuda::device_name().c_str());
  return Catch::Session().run(argc, argv);
}
