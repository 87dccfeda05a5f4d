// The user-facing functions of the engine: each computes one op of ops.def (or a short
// composition of them) and records it for autograd. Shapes are checked here, with messages that
// name the op and the shapes, before any kernel runs.
#pragma once
#include <optional>
#include <vector>

#include "engine/op.h"
#include "engine/tensor.h"

namespace xgan {

// Elementwise, NumPy broadcasting. Scalar overloads make a 0-d tensor of the other's dtype.
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor equal(const Tensor& a, const Tensor& b);  // mask (1/0), never requires grad
Tensor add(const Tensor& a, double b);
Tensor sub(const Tensor& a, double b);
Tensor mul(const Tensor& a, double b);
Tensor div(const Tensor& a, double b);
Tensor rsub(double a, const Tensor& b);  // a - b
inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator+(const Tensor& a, double b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, double b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, double b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, double b) { return div(a, b); }
inline Tensor operator*(double a, const Tensor& b) { return mul(b, a); }
inline Tensor operator-(double a, const Tensor& b) { return rsub(a, b); }

Tensor neg(const Tensor& x);
inline Tensor operator-(const Tensor& x) { return neg(x); }
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor pow(const Tensor& x, double p);
Tensor square(const Tensor& x);  // x * x
Tensor abs(const Tensor& x);
Tensor sign(const Tensor& x);  // never requires grad
Tensor relu(const Tensor& x);
Tensor leaky_relu(const Tensor& x, double slope);
Tensor leaky_relu_grad(const Tensor& x, const Tensor& g, double slope);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);

// Shapes. reshape shares storage (a view); one dim may be -1.
Tensor reshape(const Tensor& x, Shape shape);
Tensor broadcast_to(const Tensor& x, const Shape& shape);
// Sums a broadcast result back to `shape` (the adjoint of broadcast_to).
Tensor sum_to(const Tensor& x, const Shape& shape);
Shape broadcast_shapes(const Shape& a, const Shape& b);

// Reductions. dims may be negative; an empty list means all dims.
Tensor sum(const Tensor& x);
Tensor sum(const Tensor& x, std::vector<int> dims, bool keepdim = false);
Tensor mean(const Tensor& x);
Tensor mean(const Tensor& x, std::vector<int> dims, bool keepdim = false);
Tensor max(const Tensor& x);
Tensor max(const Tensor& x, std::vector<int> dims, bool keepdim = false);
Tensor min(const Tensor& x);
Tensor min(const Tensor& x, std::vector<int> dims, bool keepdim = false);

// Convolutions (see engine/primitives.h for shapes).
Tensor conv2d(const Tensor& x, const Tensor& w, int stride = 1, Pad2d pad = 0);
// out_hw: the output's (H, W); default (H - 1) * stride - 2 pad + k.
Tensor conv_transpose2d(const Tensor& x, const Tensor& w, int stride = 1, Pad2d pad = 0,
                        std::optional<std::pair<int64_t, int64_t>> out_hw = std::nullopt);
Tensor conv2d_weight_grad(const Tensor& x, const Tensor& dy, int64_t kh, int64_t kw, int stride, Pad2d pad);

// Batch norm. training: batch statistics, and running_mean/var (if defined) updated in place.
Tensor batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor running_mean,
                  Tensor running_var, bool training, double momentum = 0.1, double eps = 1e-5);

// Mean-reduced losses, shape [].
Tensor binary_cross_entropy(const Tensor& p, const Tensor& target);
Tensor binary_cross_entropy_with_logits(const Tensor& x, const Tensor& target);

Tensor resize_bilinear(const Tensor& x, int64_t out_h, int64_t out_w);
Tensor resize_bilinear_grad(const Tensor& g, int64_t in_h, int64_t in_w);

// Metrics ops (engine/primitives.h). Pooling on [N, C, H, W]; stride defaults to the kernel size.
Tensor max_pool2d(const Tensor& x, int kernel, int stride = 0, Pad2d pad = 0);
Tensor max_pool2d_select(const Tensor& x, const Tensor& t, int kernel, int stride, Pad2d pad);
Tensor max_pool2d_grad(const Tensor& x, const Tensor& g, int kernel, int stride, Pad2d pad);
Tensor avg_pool2d(const Tensor& x, int kernel, int stride = 0, Pad2d pad = 0,
                  bool count_include_pad = true);
Tensor avg_pool2d_grad(const Tensor& g, int kernel, int stride, Pad2d pad, bool count_include_pad,
                       int64_t in_h, int64_t in_w);
Tensor concat(const std::vector<Tensor>& xs, int dim);  // dim may be negative
Tensor slice(const Tensor& x, int dim, int64_t start, int64_t length);
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);
// x[N, in] @ w[out, in]^T (+ bias[out] when defined), like torch.nn.Linear.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias = Tensor());
Tensor softmax(const Tensor& x, int dim);
Tensor log_softmax(const Tensor& x, int dim);  // x - logsumexp, composed of engine ops

}  // namespace xgan
