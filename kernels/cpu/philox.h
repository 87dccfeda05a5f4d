// Philox4x32-10 (Salmon et al., SC 2011; constants as in Random123), header-only so the CPU random
// kernels inline it in their loops. engine/rng.cpp's philox4x32_10 is a thin wrapper over it; the
// known-answer vectors in tests/test_rng.cpp pin it down. constexpr, so it is checked at compile
// time below and nvcc (--expt-relaxed-constexpr) can call the same code from device kernels.
#pragma once
#include <array>
#include <cstdint>

namespace xgan::cpu {

inline constexpr uint32_t kPhiloxM0 = 0xD2511F53u, kPhiloxM1 = 0xCD9E8D57u;  // round multipliers
inline constexpr uint32_t kPhiloxW0 = 0x9E3779B9u, kPhiloxW1 = 0xBB67AE85u;  // Weyl key increments

// One block: 10 rounds, the key bumped between rounds (9 bumps).
constexpr std::array<uint32_t, 4> philox_block(std::array<uint32_t, 4> c, std::array<uint32_t, 2> k) {
  for (int round = 0; round < 10; ++round) {
    if (round > 0) k[0] += kPhiloxW0, k[1] += kPhiloxW1;
    const uint64_t p0 = static_cast<uint64_t>(kPhiloxM0) * c[0];
    const uint64_t p1 = static_cast<uint64_t>(kPhiloxM1) * c[2];
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    c = {hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0};
  }
  return c;
}

// The block of a draw (engine/rng.h): counter = offset + b as a 64-bit little-endian pair, key = seed.
constexpr std::array<uint32_t, 4> philox_block_at(uint64_t seed, uint64_t block) {
  return philox_block({static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), 0u, 0u},
                      {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)});
}

// Random123's first kat_vectors entry for philox4x32_10 (counter 0, key 0).
static_assert(philox_block({0, 0, 0, 0}, {0, 0}) ==
              std::array<uint32_t, 4>{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u});

}  // namespace xgan::cpu
