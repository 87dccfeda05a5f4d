// Google Benchmark cases for conv2d and conv_transpose2d at the paper's DCGAN shapes (batch 32,
// 32x32 images, width 128), forward alone and forward + grad() of input and weight, float32, CPU.
// Reports GFLOP/s; bench/torch_conv_bench.py times the same cases in PyTorch and
// bench/compare_conv.sh puts the two side by side (results in docs/benchmarks.md).
// Run: OMP_NUM_THREADS=2 ./build/bench/xgan_bench_ops --benchmark_filter='^conv'
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/ops.h"
#include "engine/rng.h"
#include "engine/tensor.h"

namespace {

using xgan::Tensor;

constexpr int64_t kBatch = 32;

// One layer of the discriminator (conv2d) or generator (conv_transpose2d); h, w: the input map.
// Must stay in step with CASES in bench/torch_conv_bench.py (same names, same shapes).
struct ConvCase {
  const char* name;
  int64_t ci, co, h, w, k;
  int stride, pad;
};

const std::vector<ConvCase> kDiscriminatorConvs = {
    {"D1_1to128_32x32", 1, 128, 32, 32, 4, 2, 1},  // MNIST input
    {"D1_3to128_32x32", 3, 128, 32, 32, 4, 2, 1},  // CIFAR-10 input
    {"D2_128to256_16x16", 128, 256, 16, 16, 4, 2, 1}, {"D3_256to512_8x8", 256, 512, 8, 8, 4, 2, 1},
    {"D4_512to1_4x4", 512, 1, 4, 4, 4, 1, 0},  // the logit
};
const std::vector<ConvCase> kGeneratorConvs = {
    {"G1_128to512_1x1", 128, 512, 1, 1, 4, 1, 0},  // noise -> 4x4
    {"G2_512to256_4x4", 512, 256, 4, 4, 4, 2, 1},
    {"G3_256to128_8x8", 256, 128, 8, 8, 4, 2, 1},
    {"G4_128to1_16x16", 128, 1, 16, 16, 4, 2, 1},  // -> 32x32 image
};

int64_t conv_out(int64_t n, int64_t k, int stride, int pad) { return (n + 2 * pad - k) / stride + 1; }
int64_t convT_out(int64_t n, int64_t k, int stride, int pad) { return (n - 1) * stride - 2 * pad + k; }

// Multiply-adds x 2 of one product: for conv2d counted on the output grid, for conv_transpose2d
// on the input grid (its adjoint conv2d's output), so both count only the non-padding work.
// The two backward products (input and weight gradient) each cost the same.
double conv_flops(const ConvCase& c, bool transposed) {
  const int64_t grid =
      transposed ? c.h * c.w : conv_out(c.h, c.k, c.stride, c.pad) * conv_out(c.w, c.k, c.stride, c.pad);
  return 2.0 * kBatch * c.ci * c.co * grid * c.k * c.k;
}

void set_flop_rate(benchmark::State& state, double flops_per_iteration) {
  // kIsIterationInvariantRate = kIsRate times the iteration count: GFLOP per second of real time.
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops_per_iteration / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

void run_case(benchmark::State& state, const ConvCase& c, bool transposed, bool with_backward) {
  xgan::Generator gen(1234);
  Tensor x = gen.normal({kBatch, c.ci, c.h, c.w});
  // conv2d weights are [Co, Ci, k, k], conv_transpose2d weights [Ci, Co, k, k].
  Tensor w = transposed ? gen.normal({c.ci, c.co, c.k, c.k}, 0.0, 0.02)
                        : gen.normal({c.co, c.ci, c.k, c.k}, 0.0, 0.02);
  const int64_t oh = transposed ? convT_out(c.h, c.k, c.stride, c.pad) : conv_out(c.h, c.k, c.stride, c.pad);
  const int64_t ow = transposed ? convT_out(c.w, c.k, c.stride, c.pad) : conv_out(c.w, c.k, c.stride, c.pad);
  Tensor gy = gen.normal({kBatch, c.co, oh, ow});  // the fixed upstream gradient
  if (with_backward) {
    x.set_requires_grad(true);
    w.set_requires_grad(true);
  }
  auto forward = [&] {
    return transposed ? xgan::conv_transpose2d(x, w, c.stride, c.pad) : xgan::conv2d(x, w, c.stride, c.pad);
  };
  for (auto _ : state) {
    Tensor y = forward();
    if (with_backward) {
      std::vector<Tensor> grads = xgan::grad({y}, {x, w}, {gy});
      benchmark::DoNotOptimize(grads[0].raw());
      benchmark::DoNotOptimize(grads[1].raw());
    }
    benchmark::DoNotOptimize(y.raw());
    benchmark::ClobberMemory();
  }
  set_flop_rate(state, conv_flops(c, transposed) * (with_backward ? 3.0 : 1.0));
}

void register_family(const std::string& family, const std::vector<ConvCase>& cases, bool transposed,
                     bool with_backward) {
  for (const ConvCase& c : cases) {
    benchmark::RegisterBenchmark(
        (family + "/" + c.name).c_str(),
        [c, transposed, with_backward](benchmark::State& s) { run_case(s, c, transposed, with_backward); })
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();  // the kernels run on OpenMP/Eigen threads, so CPU time of main misleads
  }
}

const bool kRegistered = [] {
  register_family("conv2d_fwd", kDiscriminatorConvs, false, false);
  register_family("conv2d_fwdbwd", kDiscriminatorConvs, false, true);
  register_family("conv_transpose2d_fwd", kGeneratorConvs, true, false);
  register_family("conv_transpose2d_fwdbwd", kGeneratorConvs, true, true);
  return true;
}();

}  // namespace
