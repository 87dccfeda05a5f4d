#!/usr/bin/env bash
# The main command of README.md: installs dependencies, builds xgan, fetches MNIST, trains a short
# DCGAN run on the CPU (a few minutes on 2 cores), then scores it with FID-LeNet / IS-LeNet beside
# an untrained generator, and says where its samples, log and scores are.
#   bash scripts/run.sh                     runs/mnist-dcgan, ITERS iterations (default below)
#   OUT=runs/x ITERS=2000 EVAL_N=10000 bash scripts/run.sh
# Run it again and it continues the run from its checkpoint (--resume); with a larger ITERS it
# trains further, otherwise there is nothing left to do and it only scores and prints.
# The offline metrics' classifier (runs/lenet-mnist.safetensors) is trained once, when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/mnist-dcgan}
# Width 32 rather than the paper's 128 and the DCGAN paper's lr 2e-4 rather than X-GAN's 1e-4 keep
# this to minutes on two CPU cores: digits take shape after ~500 iterations and are legible by ~1000.
iters=${ITERS:-1200}
# Images per FID/IS score: 5000 real and 5000 generated take seconds with the LeNet; the paper's
# 50000 (`xgan eval --n 50000`) gives less biased values.
eval_n=${EVAL_N:-5000}
lenet=runs/lenet-mnist.safetensors
untrained=${out}-untrained
# OpenMP threads that spin while waiting slow everything down threefold when the cores are shared
# with other work; sleeping costs little when they are not.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DXGAN_CUDA=AUTO >/dev/null
cmake --build build -j"$(nproc)" --target xgan
bash scripts/get_data.sh data/mnist

if [[ ! -f $lenet ]]; then
  echo "run.sh: training the classifier behind FID-LeNet / IS-LeNet (once; a few minutes)"
  start=$(date +%s)
  ./build/xgan train-classifier --data data/mnist --dataset mnist --seed 0 --out "$lenet"
  echo "run.sh: classifier trained in $(( $(date +%s) - start )) s"
fi

train_args=(--dataset mnist --data-dir data/mnist --loss dcgan --image-size 32 --width 32 --batch 32
            --lr 2e-4 --seed 0 --device cpu)
resume=()
[[ -f $out/ckpt/ckpt.safetensors ]] && resume=(--resume)
start=$(date +%s)
./build/xgan train "${train_args[@]}" --iters "$iters" --out "$out" \
  --log-every 50 --sample-every 250 --ckpt-every 250 --eval-every 400 --eval-n 1000 \
  --eval-weights "$lenet" "${resume[@]}"
echo
echo "run.sh: trained in $(( $(date +%s) - start )) s"

# The reference: the same generator after a single iteration, i.e. essentially untrained.
if [[ ! -f $untrained/ckpt/ckpt.safetensors ]]; then
  echo "run.sh: a 1-iteration run as the untrained reference"
  ./build/xgan train "${train_args[@]}" --iters 1 --out "$untrained"
fi
start=$(date +%s)
for run in "$out" "$untrained"; do
  echo "run.sh: scoring $run on $eval_n images"
  ./build/xgan eval --ckpt "$run" --n "$eval_n" --weights "$lenet" --seed 0
done
echo "run.sh: scored in $(( $(date +%s) - start )) s"

score() { sed -n "s/^ *\"$2\": \([^,]*\),*$/\1/p" "$1/eval_lenet.json"; }
echo
printf 'run.sh: %-28s %14s %12s\n' "" "FID-LeNet" "IS-LeNet"
printf 'run.sh: %-28s %14.3f %12.3f\n' "trained ($iters iterations)" "$(score "$out" fid)" "$(score "$out" is_mean)"
printf 'run.sh: %-28s %14.3f %12.3f\n' "untrained (1 iteration)" "$(score "$untrained" fid)" \
  "$(score "$untrained" is_mean)"
echo "run.sh: (FID: lower is better; two sets of 5000 real images score about 4. IS: higher is better;"
echo "run.sh:  at most 10, the number of classes; real images score about 9.5. See docs/metrics.md)"
echo "run.sh: sample grid (8x8, fixed noise): $out/samples_latest.png (and $out/samples_<iter>.png)"
echo "run.sh: log (JSON lines):               $out/log.jsonl (fid_lenet, is_lenet every 400 iterations)"
echo "run.sh: scores (JSON):                  $out/eval_lenet.json"
echo "run.sh: checkpoint:                     $out/ckpt/ckpt.safetensors"
echo "run.sh: more samples:  ./build/xgan sample --ckpt $out --out grid.png --seed 1"
