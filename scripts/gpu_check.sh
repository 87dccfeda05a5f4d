#!/usr/bin/env bash
# The GPU checks of the CUDA backend, in one run, for a machine with an NVIDIA GPU (docs/cuda.md):
#   1. build with -DXGAN_CUDA=ON and run ctest (test_cuda_parity and test_cuda_step run instead of
#      reporting "skipped");
#   2. a few iterations of `xgan train --device cuda` on MNIST under compute-sanitizer (memcheck,
#      with the allocator's cache off so every out-of-bounds access is seen), and racecheck on the
#      parity test's sections whose kernels use shared memory (the block reductions);
#   3. `xgan bench --device cuda --loss all --xai all --iters 50`, if this xgan has `bench`.
# Usage: bash scripts/gpu_check.sh [BUILD_DIR]    (default build-gpu; logs go to $OUT or /tmp)
# About 8 minutes on a 16-core machine with an H200. Exits non-zero if any step failed.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu}
jobs=$(nproc)
logs=${OUT:-/tmp/xgan-gpu-check}
mkdir -p "$logs"
failed=()
say() { echo "== gpu_check: $*"; }
step() {  # step NAME SECONDS CMD...: runs CMD with a time limit, logs it, records a failure
  local name=$1 limit=$2
  shift 2
  say "$name"
  if ! timeout "$limit" "$@" > >(tee "$logs/$name.log") 2>&1; then
    failed+=("$name")
    say "$name FAILED (log: $logs/$name.log)"
  fi
}

nvidia-smi -L || { say "no GPU visible (nvidia-smi failed)"; exit 1; }

# Micro-benchmarks (Google Benchmark) are not needed here and cost build time.
step configure 120 cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DXGAN_CUDA=ON -DXGAN_BUILD_BENCH=OFF
step build 300 cmake --build "$build" -j"$jobs"
[ -x "$build/xgan" ] || { say "build failed: ${failed[*]}"; exit 1; }

export OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive
step ctest-cuda 180 ctest --test-dir "$build" -R '^test_cuda_' --output-on-failure -j1
step ctest-rest 240 ctest --test-dir "$build" -E '^test_cuda_' --output-on-failure -j"$jobs"

data=data/mnist
[ -f "$data/train-images-idx3-ubyte" ] || [ -f "$data/train-images-idx3-ubyte.gz" ] ||
  timeout 60 bash scripts/get_data.sh "$data" || true
if command -v compute-sanitizer >/dev/null; then
  if [ -f "$data/train-images-idx3-ubyte" ] || [ -f "$data/train-images-idx3-ubyte.gz" ]; then
    for cfg in "dcgan none" "wgan-gp deeplift" "ragan saliency"; do
      set -- $cfg
      step "memcheck-train-$1-$2" 150 env XGAN_CUDA_NO_CACHE=1 compute-sanitizer --tool memcheck --error-exitcode 1 \
        "$build/xgan" train --dataset mnist --data-dir "$data" --loss "$1" --xai "$2" --iters 2 --batch 8 \
        --width 16 --log-every 1 --device cuda --out "$logs/run-$1-$2"
    done
  else
    say "skipping the sanitizer training runs: no MNIST in $data (bash scripts/get_data.sh $data)"
  fi
  # The kernels with shared memory (block reductions), each a section of the parity test.
  for op in sum max softmax batch_norm_train binary_cross_entropy binary_cross_entropy_with_logits; do
    step "racecheck-$op" 60 compute-sanitizer --tool racecheck --error-exitcode 1 \
      "$build/tests/test_cuda_parity" "every op in ops.def*" -c "$op"
  done
  step racecheck-xai_guidance 60 compute-sanitizer --tool racecheck --error-exitcode 1 \
    "$build/tests/test_cuda_parity" "every backend kernel*" -c xai_guidance
else
  say "compute-sanitizer not found (it ships with the CUDA toolkit, /usr/local/cuda/bin)"
  failed+=(compute-sanitizer)
fi

if "$build/xgan" bench --help >/dev/null 2>&1; then
  step bench 150 "$build/xgan" bench --device cuda --loss all --xai all --iters 50 --json "$logs/bench.json"
else
  say "this xgan has no bench command; skipped"
fi

if [ ${#failed[@]} -gt 0 ]; then
  say "FAILED: ${failed[*]}"
  exit 1
fi
say "all GPU checks passed"
