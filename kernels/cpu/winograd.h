// Winograd F(2x2, 2x2) and F(4x4, 2x2) convolutions for kernel 4, stride 2, padding 1: the middle
// layers of the paper's D (conv2d) and G (conv_transpose2d), which carry ~95% of a training
// iteration's arithmetic. Each output needs 9/16 (2x2 tiles) or 25/64 (4x4 tiles) of the
// multiplications of the direct method. Float32 on
// AVX-512; kernels/cpu/conv.cpp takes this path where `winograd_applies` says so, and im2col +
// GEMM everywhere else (and for float64, the exact reference). The math is in winograd.cpp and
// docs/performance.md; tests/test_winograd.cpp checks every entry point against the direct method.
#pragma once
#include <cstdint>

namespace xgan::cpu {

// The convolution y = conv2d(x, w, stride 2, padding 1) with x [N, Ci, 2 OH, 2 OW],
// w [Co, Ci, 4, 4] and y [N, Co, OH, OW]. The three entry points are its forward, its adjoint
// in x (conv2d's input gradient, which is conv_transpose2d's forward) and its weight gradient.
// `tile` is the output tile's side: 2, or 4 where OH and OW are multiples of 4 (winograd_tile).
struct WinogradConv {
  int64_t N, Ci, Co, OH, OW;
  int tile = 2;
};

// True when this build has the AVX-512 transforms, the convolution is k4 s2 p1 on an input of
// exactly twice the output size, OH and OW are even, Ci and Co are multiples of 16, the tensors
// are small enough for 32-bit gather offsets, and the environment does not set XGAN_CONV=direct
// (which keeps the direct method everywhere, to compare the two).
bool winograd_applies(int64_t Ci, int64_t Co, int64_t H, int64_t W, int64_t OH, int64_t OW, int64_t N,
                      int64_t kh, int64_t kw, int64_t stride, int64_t pad_h, int64_t pad_w);

// The tile side for an OH x OW output: 4 (fewer products: 25 per 16 outputs and phase, against
// 9 per 4) where both are multiples of 4 and the map has at least kF4MinOutputs positions, else
// 2. Small maps keep 2x2 tiles: with one 4x4 tile per image the GEMMs are too thin to pay for
// weights 25/9 the size. XGAN_WINOGRAD_TILE=2 or 4 in the environment forces one (4 only where
// it divides the map), to compare the two.
constexpr int64_t kF4MinOutputs = 64;
int winograd_tile(int64_t OH, int64_t OW);

// The forward and the input gradient take the weights in their transformed form U = G w G^T
// (winograd_weight_floats(s) floats, depending only on w, Ci, Co and the tile), so that a caller
// can transform a weight once and use it for several convolutions (kernels/cpu/conv.cpp keeps the
// forms of parameters inside a FrozenParameters scope, engine/backend.h). U holds P = 9 or 25
// matrices [Co, 4 Ci] in sgemm's column panels (PackedPanels): the input gradient's GEMM reads
// them in place as its B, the forward's as its A through offset tables, so one form serves both.
int64_t winograd_weight_floats(const WinogradConv& s);
void winograd_transform_weights(const WinogradConv& s, const float* w, float* U);

// y = conv2d(x, w) with U = transformed w. Requires winograd_applies for the shape; y is
// overwritten.
void winograd_conv2d(const WinogradConv& s, const float* x, const float* U, float* y);
// dx = conv2d's gradient in x for upstream dy [N, Co, OH, OW] and U = transformed w;
// dx [N, Ci, 2 OH, 2 OW] is overwritten.
void winograd_conv2d_data_grad(const WinogradConv& s, const float* dy, const float* U, float* dx);
// dw = conv2d's gradient in w for input x and upstream dy; dw [Co, Ci, 4, 4] is overwritten.
void winograd_conv2d_weight_grad(const WinogradConv& s, const float* x, const float* dy, float* dw);

}  // namespace xgan::cpu
