#!/usr/bin/env bash
# The main command of README.md: installs dependencies, builds xgan, fetches MNIST and trains a
# short DCGAN run on the CPU (a few minutes on 2 cores), then says where its samples and log are.
#   bash scripts/run.sh                     runs/mnist-dcgan, ITERS iterations (default below)
#   OUT=runs/x ITERS=2000 bash scripts/run.sh
# Run it again and it continues the run from its checkpoint (--resume); with a larger ITERS it
# trains further, otherwise there is nothing left to do and it only prints where the files are.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/mnist-dcgan}
# Width 32 rather than the paper's 128 and the DCGAN paper's lr 2e-4 rather than X-GAN's 1e-4 keep
# this to minutes on two CPU cores: digits take shape after ~500 iterations and are legible by ~1000.
iters=${ITERS:-1200}
# OpenMP threads that spin while waiting slow everything down threefold when the cores are shared
# with other work; sleeping costs little when they are not.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DXGAN_CUDA=AUTO >/dev/null
cmake --build build -j"$(nproc)" --target xgan
bash scripts/get_data.sh data/mnist

resume=()
[[ -f $out/ckpt/ckpt.safetensors ]] && resume=(--resume)
start=$(date +%s)
./build/xgan train --dataset mnist --data-dir data/mnist --loss dcgan --image-size 32 --width 32 \
  --batch 32 --lr 2e-4 --iters "$iters" --seed 0 --device cpu --out "$out" \
  --log-every 50 --sample-every 250 --ckpt-every 250 "${resume[@]}"
echo
echo "run.sh: trained in $(( $(date +%s) - start )) s"
echo "run.sh: sample grid (8x8, fixed noise): $out/samples_latest.png (and $out/samples_<iter>.png)"
echo "run.sh: log (JSON lines):               $out/log.jsonl"
echo "run.sh: checkpoint:                     $out/ckpt/ckpt.safetensors"
echo "run.sh: more samples:  ./build/xgan sample --ckpt $out --out grid.png --seed 1"
