#!/usr/bin/env bash
# The main command of README.md: installs dependencies, builds xgan and runs it.
# For now the tool is a skeleton, so this prints its help; later it trains a short MNIST run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DXGAN_CUDA=AUTO >/dev/null
cmake --build build -j"$(nproc)" --target xgan
./build/xgan --version
./build/xgan --help
