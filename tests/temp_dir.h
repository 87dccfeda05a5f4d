// A fresh directory per test under the system temp directory, removed with everything in it
// when the test ends; listing() lets a test check that nothing (e.g. a temp file) was left behind.
#pragma once
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <random>
#include <string>
#include <system_error>
#include <vector>

namespace xgan::test {

struct TempDir {
  explicit TempDir(const std::string& tag = "tmp") {
    static int counter = 0;
    std::random_device rd;
    dir = std::filesystem::temp_directory_path() /
          ("xgan_test_" + tag + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++) + "_" +
           std::to_string(rd()));
    std::filesystem::create_directories(dir);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (dir / name).string(); }
  std::vector<std::string> listing() const {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(dir))
      names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
  std::filesystem::path dir;
};

}  // namespace xgan::test
