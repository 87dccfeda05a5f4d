#!/usr/bin/env bash
# Side-by-side CPU timings of xgan's conv2d / conv_transpose2d (bench/bench_conv.cpp) and PyTorch's
# (bench/torch_conv_bench.py) at the paper's DCGAN shapes, on the same number of threads.
# Run: bench/compare_conv.sh [BUILD_DIR (default build)] [THREADS (default 2)]
#   needs BUILD_DIR/bench/xgan_bench_ops (Release) and Debian's python3-torch under /usr/bin/python3.
# Prints: case, xgan GFLOP/s, PyTorch GFLOP/s, ratio = xgan time / torch time (> 1: xgan slower).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build="${1:-build}"
threads="${2:-2}"
bench="$build/bench/xgan_bench_ops"
[[ -x "$bench" ]] || { echo "compare_conv.sh: $bench not found; build the Release tree first" >&2; exit 1; }

out="$(mktemp -d)"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
trap 'rm -rf "$out"' EXIT

# xgan: 5 repetitions per case, the median is compared with torch's median of 7 samples.
echo "xgan: $bench on $threads OpenMP threads ..." >&2
OMP_NUM_THREADS="$threads" "$bench" \
  --benchmark_filter='^conv(2d|_transpose2d)_(fwd|fwdbwd)/' \
  --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
  --benchmark_out="$out/xgan.json" --benchmark_out_format=json >/dev/null

echo "torch: bench/torch_conv_bench.py --threads $threads ..." >&2
OMP_NUM_THREADS="$threads" /usr/bin/python3 "$here/torch_conv_bench.py" --threads "$threads" \
  --json "$out/torch.json" >/dev/null

load_after="$(cut -d' ' -f1-3 /proc/loadavg)"
# Other processes on the cores wreck these numbers (a descheduled OpenMP thread stalls the other at
# every barrier), so the load average is printed with the table.
python3 - "$out/xgan.json" "$out/torch.json" "$load_before" "$load_after" <<'EOF'
import json, sys

xgan_doc = json.load(open(sys.argv[1]))
torch_doc = json.load(open(sys.argv[2]))
xgan = {}
for b in xgan_doc["benchmarks"]:
    if b.get("aggregate_name") != "median":
        continue
    name = b["run_name"].removesuffix("/real_time")
    assert b["time_unit"] == "ms", b["time_unit"]
    xgan[name] = (b["real_time"], b["GFLOP/s"])
torch = {r["name"]: (r["time_ms"], r["gflops"]) for r in torch_doc["results"]}

ctx = xgan_doc["context"]
print(f"host {ctx.get('host_name', '?')}, {ctx.get('num_cpus', '?')} CPUs, "
      f"torch {torch_doc['torch_version']} on {torch_doc['threads']} threads; "
      f"load average before {sys.argv[3]}, after {sys.argv[4]}")
print(f"| {'case':<40} | {'xgan ms':>8} | {'torch ms':>8} | {'xgan GFLOP/s':>12} | {'torch GFLOP/s':>13} | {'xgan/torch time':>15} |")
print(f"|{'-' * 42}|{'-' * 9}:|{'-' * 9}:|{'-' * 13}:|{'-' * 14}:|{'-' * 16}:|")
for name in [r["name"] for r in torch_doc["results"]]:
    if name not in xgan:
        print(f"| {name:<40} | {'missing':>8} |")
        continue
    (xt, xg), (tt, tg) = xgan[name], torch[name]
    print(f"| {name:<40} | {xt:8.2f} | {tt:8.2f} | {xg:12.2f} | {tg:13.2f} | {xt / tt:15.2f} |")
EOF
