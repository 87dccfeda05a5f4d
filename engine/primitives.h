// The op classes of ops.def with their attributes. Forwards live in kernels/cpu/*.cpp and
// kernels/cuda/*; backwards (vjp) in engine/ops.cpp. Kernels include this header and nothing above
// the engine.
#pragma once
#include "engine/op.h"

namespace xgan {

#define XGAN_OP_BODY(Class)                                                      \
  OpId id() const override { return OpId::Class; }                               \
  void eval_cpu(const std::vector<Tensor>& in, Tensor& out) override;            \
  void eval_cuda(const std::vector<Tensor>& in, Tensor& out) override;           \
  std::vector<Tensor> vjp(const std::vector<Tensor>& in, const Tensor& grad_out, \
                          const std::vector<bool>& need) override;

// Binary elementwise, broadcasting both inputs to the output shape.
struct Add : Op {
  XGAN_OP_BODY(Add)
};
struct Sub : Op {
  XGAN_OP_BODY(Sub)
};
struct Mul : Op {
  XGAN_OP_BODY(Mul)
};
struct Div : Op {
  XGAN_OP_BODY(Div)
};
struct Equal : Op {
  XGAN_OP_BODY(Equal)
  bool differentiable() const override { return false; }
};

// Unary elementwise.
struct Neg : Op {
  XGAN_OP_BODY(Neg)
};
struct Exp : Op {
  XGAN_OP_BODY(Exp)
};
struct Log : Op {
  XGAN_OP_BODY(Log)
};
struct Sqrt : Op {
  XGAN_OP_BODY(Sqrt)
};
struct Pow : Op {
  explicit Pow(double p) : exponent(p) {}
  double exponent;
  XGAN_OP_BODY(Pow)
};
struct Abs : Op {
  XGAN_OP_BODY(Abs)
};
struct Sign : Op {
  XGAN_OP_BODY(Sign)
  bool differentiable() const override { return false; }
};
struct LeakyRelu : Op {
  explicit LeakyRelu(double s) : slope(s) {}
  double slope;
  XGAN_OP_BODY(LeakyRelu)
};
// Inputs (x, g): g where x > 0, slope * g elsewhere. Linear in g, piecewise constant in x.
struct LeakyReluGrad : Op {
  explicit LeakyReluGrad(double s) : slope(s) {}
  double slope;
  XGAN_OP_BODY(LeakyReluGrad)
};
struct Tanh : Op {
  XGAN_OP_BODY(Tanh)
};
struct Sigmoid : Op {
  XGAN_OP_BODY(Sigmoid)
};

// Shapes. Reshape shares nothing at the op level (a copy of contiguous data; cheap next to convs).
struct Reshape : Op {
  XGAN_OP_BODY(Reshape)
};
struct BroadcastTo : Op {
  XGAN_OP_BODY(BroadcastTo)
};

// Reductions over `dims` (sorted, unique, non-negative); keepdim keeps them as size 1.
struct Sum : Op {
  Sum(std::vector<int> d, bool k) : dims(std::move(d)), keepdim(k) {}
  std::vector<int> dims;
  bool keepdim;
  XGAN_OP_BODY(Sum)
};
// Max over dims; the gradient is shared evenly between tied maxima (like torch.amax).
struct Max : Op {
  Max(std::vector<int> d, bool k) : dims(std::move(d)), keepdim(k) {}
  std::vector<int> dims;
  bool keepdim;
  XGAN_OP_BODY(Max)
};

// Convolutions on NCHW, square stride, padding pad.h rows and pad.w columns, no bias, no dilation,
// one group. conv2d: in (x[N,Ci,H,W], w[Co,Ci,kh,kw]) -> y[N,Co,OH,OW], OH = (H + 2 pad.h - kh) / s + 1.
struct Conv2d : Op {
  Conv2d(int s, Pad2d p) : stride(s), pad(p) {}
  int stride;
  Pad2d pad;
  XGAN_OP_BODY(Conv2d)
};
// conv_transpose2d: in (x[N,Ci,H,W], w[Ci,Co,kh,kw]) -> y[N,Co,OH,OW], the adjoint of conv2d;
// OH = (H - 1) * s - 2 pad.h + kh + output padding, fixed by out_h/out_w.
struct ConvTranspose2d : Op {
  ConvTranspose2d(int s, Pad2d p, int64_t oh, int64_t ow) : stride(s), pad(p), out_h(oh), out_w(ow) {}
  int stride;
  Pad2d pad;
  int64_t out_h, out_w;
  XGAN_OP_BODY(ConvTranspose2d)
};
// conv2d_weight_grad: in (x[N,Ci,H,W], dy[N,Co,OH,OW]) -> dw[Co,Ci,kh,kw], the weight gradient
// of conv2d(x, w) for upstream dy.
struct Conv2dWeightGrad : Op {
  Conv2dWeightGrad(int s, Pad2d p, int64_t h, int64_t w) : stride(s), pad(p), kh(h), kw(w) {}
  int stride;
  Pad2d pad;
  int64_t kh, kw;
  XGAN_OP_BODY(Conv2dWeightGrad)
};

// Batch norm over (N, H, W) per channel C. in (x[N,C,H,W] or [N,C], gamma[C], beta[C]).
// Training: normalises with the batch's biased variance and, if running_mean/var are defined,
// updates them in place: r = (1 - momentum) r + momentum * batch stat (unbiased variance).
struct BatchNormTrain : Op {
  BatchNormTrain(double m, double e, Tensor rm, Tensor rv)
      : momentum(m), eps(e), running_mean(std::move(rm)), running_var(std::move(rv)) {}
  double momentum, eps;
  Tensor running_mean, running_var;
  XGAN_OP_BODY(BatchNormTrain)
};
// Inference: in (x, gamma, beta, running_mean, running_var); statistics are constants.
struct BatchNormEval : Op {
  explicit BatchNormEval(double e) : eps(e) {}
  double eps;
  XGAN_OP_BODY(BatchNormEval)
};

// Mean binary cross-entropy on probabilities, in (p, target); like PyTorch, each log is clamped
// at -100 so p = 0 or 1 gives a finite loss. Output shape [].
struct BinaryCrossEntropy : Op {
  XGAN_OP_BODY(BinaryCrossEntropy)
};
// Mean binary cross-entropy on logits, in (x, target), computed stably. Output shape [].
struct BceWithLogits : Op {
  XGAN_OP_BODY(BceWithLogits)
};

// Bilinear resize of [N,C,H,W] to [N,C,out_h,out_w], half-pixel centres (align_corners=False),
// source coordinates clamped at 0 (torch.nn.functional.interpolate's rule).
struct ResizeBilinear : Op {
  ResizeBilinear(int64_t h, int64_t w) : out_h(h), out_w(w) {}
  int64_t out_h, out_w;
  XGAN_OP_BODY(ResizeBilinear)
};
// Its adjoint: in (g[N,C,out_h,out_w]) -> [N,C,in_h,in_w].
struct ResizeBilinearGrad : Op {
  ResizeBilinearGrad(int64_t h, int64_t w) : in_h(h), in_w(w) {}
  int64_t in_h, in_w;
  XGAN_OP_BODY(ResizeBilinearGrad)
};

// ------------------------------------------------------------- metrics ops
// Pooling windows: k x k, square stride, padding pad (rows, columns); OH = (H + 2 pad.h - k) / s + 1.
// max_pool2d(x) is MaxPool2d on (x, x): the op reads, for each window, the value of its second
// input at the position where its first input is largest (the first such position in row-major
// window order; padding never wins, as PyTorch pads with -inf). Splitting "where" from "what"
// makes the pair MaxPool2d/MaxPool2dGrad closed under differentiation: each is linear in its
// second input, piecewise constant in its first, and each one's vjp is the other.
struct MaxPool2d : Op {
  MaxPool2d(int k, int s, Pad2d p) : kernel(k), stride(s), pad(p) {}
  int kernel, stride;
  Pad2d pad;
  XGAN_OP_BODY(MaxPool2d)
};
// in (x[N,C,H,W], g[N,C,OH,OW]) -> [N,C,H,W]: each g added at its window's argmax of x.
struct MaxPool2dGrad : Op {
  MaxPool2dGrad(int k, int s, Pad2d p) : kernel(k), stride(s), pad(p) {}
  int kernel, stride;
  Pad2d pad;
  XGAN_OP_BODY(MaxPool2dGrad)
};
// Mean over each window. count_include_pad: divide by k*k (PyTorch's default) or by the number of
// window positions inside the image (the FID Inception's average pools).
struct AvgPool2d : Op {
  AvgPool2d(int k, int s, Pad2d p, bool cip) : kernel(k), stride(s), pad(p), count_include_pad(cip) {}
  int kernel, stride;
  Pad2d pad;
  bool count_include_pad;
  XGAN_OP_BODY(AvgPool2d)
};
// Its adjoint: in (g[N,C,OH,OW]) -> [N,C,in_h,in_w].
struct AvgPool2dGrad : Op {
  AvgPool2dGrad(int k, int s, Pad2d p, bool cip, int64_t h, int64_t w)
      : kernel(k), stride(s), pad(p), count_include_pad(cip), in_h(h), in_w(w) {}
  int kernel, stride;
  Pad2d pad;
  bool count_include_pad;
  int64_t in_h, in_w;
  XGAN_OP_BODY(AvgPool2dGrad)
};
// Inputs joined along `dim` (non-negative); all other sizes equal.
struct Concat : Op {
  explicit Concat(int d) : dim(d) {}
  int dim;
  XGAN_OP_BODY(Concat)
};
// x[..., start:start+length, ...] along `dim` (non-negative), copied out contiguous.
struct Slice : Op {
  Slice(int d, int64_t s, int64_t l) : dim(d), start(s), length(l) {}
  int dim;
  int64_t start, length;
  XGAN_OP_BODY(Slice)
};
// in (a, b), 2-D: op(a) @ op(b), op = transpose where the flag says so.
struct MatMul : Op {
  MatMul(bool ta, bool tb) : trans_a(ta), trans_b(tb) {}
  bool trans_a, trans_b;
  XGAN_OP_BODY(MatMul)
};
// exp(x - max) / sum(exp(x - max)) along `dim` (non-negative).
struct Softmax : Op {
  explicit Softmax(int d) : dim(d) {}
  int dim;
  XGAN_OP_BODY(Softmax)
};

#undef XGAN_OP_BODY

}  // namespace xgan
