// A synthetic MNIST training pair for tests that need a data directory: 64 random 28x28 images
// and labels written as raw IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte).
#pragma once
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>

namespace xgan::test {

inline void put_be32(std::ofstream& f, uint32_t v) {
  const unsigned char b[4] = {static_cast<unsigned char>(v >> 24), static_cast<unsigned char>(v >> 16),
                              static_cast<unsigned char>(v >> 8), static_cast<unsigned char>(v)};
  f.write(reinterpret_cast<const char*>(b), 4);
}

inline void write_synthetic_mnist(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  std::mt19937 gen(12345);
  std::ofstream img(dir / "train-images-idx3-ubyte", std::ios::binary);
  put_be32(img, 0x00000803);
  put_be32(img, 64);
  put_be32(img, 28);
  put_be32(img, 28);
  for (int i = 0; i < 64 * 28 * 28; ++i) img.put(static_cast<char>(gen() & 0xff));
  std::ofstream lab(dir / "train-labels-idx1-ubyte", std::ios::binary);
  put_be32(lab, 0x00000801);
  put_be32(lab, 64);
  for (int i = 0; i < 64; ++i) lab.put(static_cast<char>(gen() % 10));
}

}  // namespace xgan::test
