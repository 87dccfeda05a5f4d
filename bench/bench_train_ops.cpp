// Google Benchmark cases for the ops of a training iteration other than the convolutions
// (bench_conv.cpp), at the paper's shapes: batch 32, 32x32 images, width 128, so the maps are
// [32, 128, 16, 16], [32, 256, 8, 8], [32, 512, 4, 4] in D and their mirror images in G.
// Batch norm (train, forward and backward), the activations and their backward, the broadcasting
// arithmetic and reductions of the composed batch-norm backward (WGAN-GP's double backward), the
// losses, Adam over each network's parameters, the noise, DeepLIFT's rescale rule and X-GAN's
// fused normalise-and-weight kernel.
// Each reports GB/s of the tensors it reads and writes (these ops are memory-bound).
// Run: OMP_NUM_THREADS=2 ./build/bench/xgan_bench_ops --benchmark_filter='^op/'
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <vector>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/ops.h"
#include "engine/optim.h"
#include "engine/rng.h"
#include "engine/tensor.h"

namespace {

using xgan::Shape;
using xgan::Tensor;

// D's hidden maps at the paper's size (G's are the same shapes in reverse order).
const std::vector<std::pair<const char*, Shape>> kMaps = {
    {"32x128x16x16", {32, 128, 16, 16}}, {"32x256x8x8", {32, 256, 8, 8}}, {"32x512x4x4", {32, 512, 4, 4}}};

Tensor normal(const Shape& s, uint64_t seed, bool grad = false) {
  xgan::Generator g(seed);
  Tensor t = g.normal(s);
  if (grad) t.set_requires_grad(true);
  return t;
}

void set_bytes(benchmark::State& state, double bytes_per_iteration) {
  state.counters["GB/s"] =
      benchmark::Counter(bytes_per_iteration / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

double bytes_of(const Shape& s) { return 4.0 * static_cast<double>(xgan::numel_of(s)); }

void register_map_cases() {
  for (const auto& [label, shape] : kMaps) {
    const Shape s = shape;
    const int64_t c = s[1];
    benchmark::RegisterBenchmark(
        ("op/batch_norm_train_fwd/" + std::string(label)).c_str(),
        [s, c](benchmark::State& st) {
          Tensor x = normal(s, 1), gamma = xgan::ones({c}), beta = xgan::zeros({c});
          Tensor rm = xgan::zeros({c}), rv = xgan::ones({c});
          xgan::NoGradGuard ng;
          for (auto _ : st) benchmark::DoNotOptimize(xgan::batch_norm(x, gamma, beta, rm, rv, true).raw());
          set_bytes(st, 2 * bytes_of(s));
        })
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(("op/batch_norm_train_fwd_bwd/" + std::string(label)).c_str(),
                                 [s, c](benchmark::State& st) {
                                   Tensor x = normal(s, 1, true), gamma = xgan::ones({c}),
                                          beta = xgan::zeros({c});
                                   gamma.set_requires_grad(true);
                                   beta.set_requires_grad(true);
                                   Tensor rm = xgan::zeros({c}), rv = xgan::ones({c});
                                   Tensor g = normal(s, 2);
                                   for (auto _ : st) {
                                     Tensor y = xgan::batch_norm(x, gamma, beta, rm, rv, true);
                                     auto gr = xgan::grad({y}, {x, gamma, beta}, {g});
                                     benchmark::DoNotOptimize(gr[0].raw());
                                   }
                                   set_bytes(st, 5 * bytes_of(s));
                                 })
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(("op/leaky_relu_fwd_bwd/" + std::string(label)).c_str(),
                                 [s](benchmark::State& st) {
                                   Tensor x = normal(s, 3, true), g = normal(s, 4);
                                   for (auto _ : st) {
                                     Tensor y = xgan::leaky_relu(x, 0.2);
                                     benchmark::DoNotOptimize(xgan::grad({y}, {x}, {g})[0].raw());
                                   }
                                   set_bytes(st, 5 * bytes_of(s));
                                 })
        ->Unit(benchmark::kMicrosecond);
    // DeepLIFT's rescale rule at D's LeakyReLUs: over the 2N batch [x; 0] of the explainer.
    benchmark::RegisterBenchmark(("op/deeplift_rescale/2x" + std::string(label)).c_str(),
                                 [s](benchmark::State& st) {
                                   const Shape s2{2 * s[0], s[1], s[2], s[3]};
                                   Tensor I = normal(s2, 12), g = normal(s2, 13), out = xgan::empty(s2);
                                   for (auto _ : st) {
                                     xgan::cpu::deeplift_rescale(I, g, xgan::DeepLiftNonlinearity::leaky_relu,
                                                                 0.2, out);
                                     benchmark::DoNotOptimize(out.raw());
                                   }
                                   set_bytes(st, 3 * bytes_of(s2));
                                 })
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(("op/mul_per_channel/" + std::string(label)).c_str(),
                                 [s, c](benchmark::State& st) {
                                   Tensor x = normal(s, 5), w = normal({1, c, 1, 1}, 6);
                                   xgan::NoGradGuard ng;
                                   for (auto _ : st) benchmark::DoNotOptimize(xgan::mul(x, w).raw());
                                   set_bytes(st, 2 * bytes_of(s));
                                 })
        ->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(("op/sum_per_channel/" + std::string(label)).c_str(),
                                 [s](benchmark::State& st) {
                                   Tensor x = normal(s, 7);
                                   xgan::NoGradGuard ng;
                                   for (auto _ : st)
                                     benchmark::DoNotOptimize(xgan::sum(x, {0, 2, 3}, true).raw());
                                   set_bytes(st, bytes_of(s));
                                 })
        ->Unit(benchmark::kMicrosecond);
  }
}

// The image-sized ops: G's output and D's input [32, 1, 32, 32] (MNIST) and [32, 3, 32, 32].
void register_image_cases() {
  for (int64_t ch : {1, 3}) {
    const Shape s{32, ch, 32, 32};
    const std::string label = "32x" + std::to_string(ch) + "x32x32";
    benchmark::RegisterBenchmark(("op/tanh_fwd_bwd/" + label).c_str(), [s](benchmark::State& st) {
      Tensor x = normal(s, 8, true), g = normal(s, 9);
      for (auto _ : st) {
        Tensor y = xgan::tanh(x);
        benchmark::DoNotOptimize(xgan::grad({y}, {x}, {g})[0].raw());
      }
      set_bytes(st, 4 * bytes_of(s));
    })->Unit(benchmark::kMicrosecond);
    benchmark::RegisterBenchmark(("op/xai_guidance/" + label).c_str(), [s](benchmark::State& st) {
      Tensor m = normal(s, 10), g = normal(s, 11), E = xgan::empty(s), out = xgan::empty(s);
      for (auto _ : st) {
        xgan::cpu::xai_guidance(m, g, false, false, E, out);
        benchmark::DoNotOptimize(out.raw());
      }
      set_bytes(st, 4 * bytes_of(s));
    })->Unit(benchmark::kMicrosecond);
  }
}

void register_small_cases() {
  benchmark::RegisterBenchmark("op/bce_sigmoid_fwd_bwd/32", [](benchmark::State& st) {
    Tensor x = normal({32}, 12, true), t = xgan::ones({32});
    for (auto _ : st) {
      Tensor l = xgan::binary_cross_entropy(xgan::sigmoid(x), t);
      benchmark::DoNotOptimize(xgan::grad({l}, {x})[0].raw());
    }
  })->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("op/bce_with_logits_fwd_bwd/32", [](benchmark::State& st) {
    Tensor x = normal({32}, 13, true), t = xgan::zeros({32});
    for (auto _ : st) {
      Tensor l = xgan::binary_cross_entropy_with_logits(x, t);
      benchmark::DoNotOptimize(xgan::grad({l}, {x})[0].raw());
    }
  })->Unit(benchmark::kMicrosecond);
  benchmark::RegisterBenchmark("op/random_normal/noise_32x128", [](benchmark::State& st) {
    xgan::Generator g(14);
    for (auto _ : st) benchmark::DoNotOptimize(g.normal({32, 128, 1, 1}).raw());
  })->Unit(benchmark::kMicrosecond);
  // Adam over parameter blocks the size of G's and D's largest layers (width 128).
  for (int64_t n : {int64_t{128} * 512 * 16, int64_t{512} * 256 * 16, int64_t{256} * 128 * 16}) {
    benchmark::RegisterBenchmark(("op/adam_step/" + std::to_string(n)).c_str(), [n](benchmark::State& st) {
      Tensor p = normal({n}, 15, true);
      p.set_grad(normal({n}, 16));
      xgan::Adam opt({p}, xgan::AdamConfig{1e-4, 0.5, 0.999, 1e-8, 0.0});
      for (auto _ : st) opt.step();
      set_bytes(st, 4.0 * 4 * static_cast<double>(n) + 4.0 * 3 * static_cast<double>(n));
    })->Unit(benchmark::kMicrosecond);
  }
}

const bool kRegistered = [] {
  register_map_cases();
  register_image_cases();
  register_small_cases();
  return true;
}();

}  // namespace
