// Generator: a (seed, offset) pair over Philox4x32-10. Each call hands its tensor to the device's
// random kernel with the current offset, then moves the offset past the blocks that kernel used
// (engine/rng.h), so a run is reproducible from (seed, offset) alone. Tested by tests/test_rng.cpp.
#include "engine/rng.h"

#include <stdexcept>

#include "engine/backend.h"
#include "kernels/cpu/philox.h"

namespace xgan {

std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key) {
  return cpu::philox_block(counter, key);
}

namespace {

// Blocks one draw of `t` consumes: float32 uniform packs four elements a block, the rest two.
uint64_t blocks_for(const Tensor& t, bool uniform) {
  const uint64_t per_block = uniform && t.dtype() == DType::f32 ? 4 : 2;
  return (static_cast<uint64_t>(t.numel()) + per_block - 1) / per_block;
}

void fill_normal(Tensor& t, uint64_t seed, uint64_t offset, double mean, double stddev) {
  if (t.device().is_cpu())
    cpu::random_normal(t, seed, offset, mean, stddev);
  else
    cuda::random_normal(t, seed, offset, mean, stddev);
}

void fill_uniform(Tensor& t, uint64_t seed, uint64_t offset, double low, double high) {
  if (t.device().is_cpu())
    cpu::random_uniform(t, seed, offset, low, high);
  else
    cuda::random_uniform(t, seed, offset, low, high);
}

}  // namespace

Tensor Generator::normal(const Shape& shape, double mean, double stddev, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  fill_normal(t, seed_, offset_, mean, stddev);
  offset_ += blocks_for(t, false);
  return t;
}

Tensor Generator::uniform(const Shape& shape, double low, double high, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  fill_uniform(t, seed_, offset_, low, high);
  offset_ += blocks_for(t, true);
  return t;
}

void Generator::normal_(Tensor& t, double mean, double stddev) {
  if (!t.defined()) throw std::runtime_error("Generator::normal_: undefined tensor");
  fill_normal(t, seed_, offset_, mean, stddev);
  offset_ += blocks_for(t, false);
  t.bump_version();
}

void Generator::uniform_(Tensor& t, double low, double high) {
  if (!t.defined()) throw std::runtime_error("Generator::uniform_: undefined tensor");
  fill_uniform(t, seed_, offset_, low, high);
  offset_ += blocks_for(t, true);
  t.bump_version();
}

}  // namespace xgan
