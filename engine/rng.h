// Counter-based random numbers: Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy
// as 1, 2, 3", SC 2011). A draw is a pure function of (key = seed, counter), so element i of a
// tensor gets the same number on the CPU and on the GPU, in any thread order.
//
// Mapping used by both backends (documented in docs/architecture.md):
//   block b = philox4x32_10(counter = {lo32(offset + b), hi32(offset + b), 0, 0},
//                           key = {lo32(seed), hi32(seed)})  -> four uint32 words w0..w3
//   uniform, float32:  element i uses block i / 4, word i % 4:  u = (w >> 8) * 2^-24  in [0, 1)
//   uniform, float64:  element i uses block i / 2, words (2(i%2), 2(i%2)+1):
//                      u = ((w_a >> 5) * 2^26 + (w_b >> 6)) * 2^-53  in [0, 1)
//   normal (both):     element i uses block i / 2; pair (u1, u2) from words (2(i%2), 2(i%2)+1)
//                      as u1 = (w_a + 1) * 2^-32 in (0, 1], u2 = w_b * 2^-32,
//                      z = sqrt(-2 ln u1) * cos(2 pi u2), computed in double, cast to dtype.
// A Generator consumes ceil(numel / per_block) blocks per call, so its offset advances by that.
#pragma once
#include <array>
#include <cstdint>

#include "engine/tensor.h"

namespace xgan {

// One Philox4x32-10 block.
std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key);

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }  // blocks consumed so far
  void set_state(uint64_t seed, uint64_t offset) { seed_ = seed, offset_ = offset; }

  // New tensors of draws; advance the offset past the blocks they used.
  Tensor normal(const Shape& shape, double mean = 0.0, double stddev = 1.0, DType dtype = DType::f32,
                Device device = kCPU);
  Tensor uniform(const Shape& shape, double low = 0.0, double high = 1.0, DType dtype = DType::f32,
                 Device device = kCPU);
  // In-place versions (bump the tensor's version).
  void normal_(Tensor& t, double mean = 0.0, double stddev = 1.0);
  void uniform_(Tensor& t, double low = 0.0, double high = 1.0);

 private:
  uint64_t seed_;
  uint64_t offset_ = 0;
};

}  // namespace xgan
