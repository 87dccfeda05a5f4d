#!/usr/bin/python3
"""PyTorch timings of the cases in bench/bench_conv.cpp (DCGAN conv shapes, batch 32, float32, CPU),
so xgan's numbers have a reference on the same machine and thread count.
Run: /usr/bin/python3 bench/torch_conv_bench.py [--threads 2] [--json out.json]
(Debian's python3-torch 1.13.1 lives under /usr/bin/python3, not a pyenv python3.)
"""
import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F

BATCH = 32

# name, ci, co, h, w, k, stride, pad -- kept in step with bench/bench_conv.cpp.
DISCRIMINATOR_CONVS = [
    ("D1_1to128_32x32", 1, 128, 32, 32, 4, 2, 1),  # MNIST input
    ("D1_3to128_32x32", 3, 128, 32, 32, 4, 2, 1),  # CIFAR-10 input
    ("D2_128to256_16x16", 128, 256, 16, 16, 4, 2, 1),
    ("D3_256to512_8x8", 256, 512, 8, 8, 4, 2, 1),
    ("D4_512to1_4x4", 512, 1, 4, 4, 4, 1, 0),  # the logit
]
GENERATOR_CONVS = [
    ("G1_128to512_1x1", 128, 512, 1, 1, 4, 1, 0),  # noise -> 4x4
    ("G2_512to256_4x4", 512, 256, 4, 4, 4, 2, 1),
    ("G3_256to128_8x8", 256, 128, 8, 8, 4, 2, 1),
    ("G4_128to1_16x16", 128, 1, 16, 16, 4, 2, 1),  # -> 32x32 image
]


def conv_flops(ci, co, h, w, k, stride, pad, transposed):
    """2 x multiply-adds of one product: conv2d on its output grid, conv_transpose2d on its input grid."""
    if transposed:
        grid = h * w
    else:
        grid = ((h + 2 * pad - k) // stride + 1) * ((w + 2 * pad - k) // stride + 1)
    return 2.0 * BATCH * ci * co * grid * k * k


def make_step(case, transposed, with_backward):
    _, ci, co, h, w, k, stride, pad = case
    gen = torch.Generator().manual_seed(1234)
    x = torch.randn(BATCH, ci, h, w, generator=gen)
    wt = torch.randn(*((ci, co) if transposed else (co, ci)), k, k, generator=gen) * 0.02
    conv = F.conv_transpose2d if transposed else F.conv2d
    with torch.no_grad():
        gy = torch.randn_like(conv(x, wt, stride=stride, padding=pad))  # the fixed upstream gradient
    if not with_backward:
        return lambda: conv(x, wt, stride=stride, padding=pad)
    x.requires_grad_(True)
    wt.requires_grad_(True)

    def step():
        y = conv(x, wt, stride=stride, padding=pad)
        return torch.autograd.grad([y], [x, wt], [gy])

    return step


def time_case(step, warmup, repeats, min_sample_s):
    """Median seconds per call; each sample runs enough calls to last min_sample_s."""
    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    step()
    one = max(time.perf_counter() - t0, 1e-6)
    calls = max(1, int(min_sample_s / one))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            step()
        samples.append((time.perf_counter() - t0) / calls)
    return statistics.median(samples)


def all_cases():
    for family, cases, transposed in (("conv2d", DISCRIMINATOR_CONVS, False),
                                      ("conv_transpose2d", GENERATOR_CONVS, True)):
        for with_backward in (False, True):
            for case in cases:
                suffix = "fwdbwd" if with_backward else "fwd"
                yield f"{family}_{suffix}/{case[0]}", case, transposed, with_backward


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed calls per case")
    ap.add_argument("--repeats", type=int, default=7, help="timed samples per case; the median is reported")
    ap.add_argument("--min-sample-s", type=float, default=0.1, help="minimum length of one sample (s)")
    ap.add_argument("--filter", default="", help="only cases whose name contains this")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON ('-' for stdout)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results = []
    table = sys.stderr if args.json == "-" else sys.stdout
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"mkldnn {torch.backends.mkldnn.is_available()}", file=table)
    print(f"{'case':<42} {'ms':>9} {'GFLOP/s':>9}", file=table)
    for name, case, transposed, with_backward in all_cases():
        if args.filter not in name:
            continue
        flops = conv_flops(*case[1:], transposed) * (3.0 if with_backward else 1.0)
        seconds = time_case(make_step(case, transposed, with_backward), args.warmup, args.repeats,
                            args.min_sample_s)
        gflops = flops / seconds / 1e9
        results.append({"name": name, "time_ms": seconds * 1e3, "gflops": gflops, "flops": flops})
        print(f"{name:<42} {seconds * 1e3:9.3f} {gflops:9.2f}", file=table, flush=True)

    if args.json:
        doc = {"torch_version": torch.__version__, "threads": torch.get_num_threads(), "results": results}
        if args.json == "-":
            json.dump(doc, sys.stdout, indent=1)
        else:
            with open(args.json, "w") as f:
                json.dump(doc, f, indent=1)


if __name__ == "__main__":
    main()
