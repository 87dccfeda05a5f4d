#!/usr/bin/env bash
# The test command of README.md (and of CI): installs dependencies, builds xgan (with the CUDA
# backend compiled where nvcc exists), runs every test, then builds the CPU engine again under
# AddressSanitizer + UndefinedBehaviorSanitizer and runs the tests there too.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

bash scripts/setup.sh

echo "== build (Release, XGAN_CUDA=AUTO)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DXGAN_CUDA=AUTO >/dev/null
cmake --build build -j"$jobs"
echo "== tests"
ctest --test-dir build --output-on-failure -j1

echo "== build (ASan + UBSan, CPU only)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DXGAN_CUDA=OFF -DXGAN_SANITIZE=ON \
  -DXGAN_BUILD_BENCH=OFF >/dev/null
cmake --build build-asan -j"$jobs"
echo "== tests under sanitizers"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j1
