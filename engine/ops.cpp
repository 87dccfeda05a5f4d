// The engine's op functions and every op's backward (vjp).
// Each function checks shapes, builds the op object with its attributes and calls apply(), which
// runs the forward on the inputs' device and records the op when a gradient is needed. Every vjp
// is written with these same functions, so when the backward runs under create_graph it is
// recorded too and can be differentiated again.
#include "engine/ops.h"

#include <algorithm>
#include <atomic>
#include <stdexcept>

#include "engine/autograd.h"
#include "engine/backend.h"
#include "engine/primitives.h"

namespace xgan {

const char* op_name(OpId id) {
  static const char* const names[] = {
#define XGAN_OP(Class, name) #name,
#include "engine/ops.def"
  };
  return names[static_cast<int>(id)];
}

namespace {
std::atomic<uint64_t> g_seq{0};

[[noreturn]] void fail(const char* op, const std::string& what) {
  throw std::runtime_error(std::string(op) + ": " + what);
}

// Checks the shared preconditions of apply(): defined, float, one device, one dtype.
void check_inputs(const char* op, const std::vector<Tensor>& in) {
  for (size_t i = 0; i < in.size(); ++i) {
    if (!in[i].defined()) fail(op, "input " + std::to_string(i) + " is undefined");
    if (in[i].dtype() == DType::i64) fail(op, "int64 tensors are storage only; convert to float first");
    if (in[i].dtype() != in[0].dtype())
      fail(op, "inputs have different dtypes (" + in[0].str() + " and " + in[i].str() + ")");
    if (in[i].device() != in[0].device())
      fail(op, "inputs are on different devices (" + in[0].str() + " and " + in[i].str() + ")");
  }
}

// Records `op` as the producer of `out` if grad mode is on and an input requires grad.
void record(const std::shared_ptr<Op>& op, std::vector<Tensor>& in, Tensor& out) {
  if (!GradMode::enabled() || !op->differentiable()) return;
  bool any = std::any_of(in.begin(), in.end(), [](const Tensor& t) { return t.requires_grad(); });
  if (!any) return;
  op->input_versions.clear();
  for (const auto& t : in) op->input_versions.push_back(t.version());
  op->inputs = std::move(in);
  op->seq = g_seq.fetch_add(1, std::memory_order_relaxed);
  out.impl()->grad_fn = op;
  out.impl()->requires_grad = true;
}

Tensor like_scalar(const Tensor& t, double v) { return scalar(v, t.dtype(), t.device()); }

int norm_dim(const char* op, int d, int64_t ndim) {
  if (d < 0) d += static_cast<int>(ndim);
  if (d < 0 || d >= ndim)
    fail(op, "dim " + std::to_string(d) + " out of range for " + std::to_string(ndim) + "-d tensor");
  return d;
}

std::vector<int> norm_dims(const char* op, std::vector<int> dims, int64_t ndim) {
  if (dims.empty())
    for (int d = 0; d < ndim; ++d) dims.push_back(d);
  for (auto& d : dims) d = norm_dim(op, d, ndim);
  std::sort(dims.begin(), dims.end());
  if (std::adjacent_find(dims.begin(), dims.end()) != dims.end()) fail(op, "repeated dim");
  return dims;
}

Shape reduced_shape(const Shape& s, const std::vector<int>& dims, bool keepdim) {
  Shape out;
  for (int d = 0; d < static_cast<int>(s.size()); ++d) {
    bool r = std::find(dims.begin(), dims.end(), d) != dims.end();
    if (!r)
      out.push_back(s[d]);
    else if (keepdim)
      out.push_back(1);
  }
  return out;
}

Shape keepdim_shape(const Shape& s, const std::vector<int>& dims) { return reduced_shape(s, dims, true); }

}  // namespace

Tensor apply(std::shared_ptr<Op> op, std::vector<Tensor> in, const Shape& out_shape) {
  check_inputs(op->name(), in);
  Tensor out = empty(out_shape, in[0].dtype(), in[0].device());
  if (out.device().is_cpu())
    op->eval_cpu(in, out);
  else
    op->eval_cuda(in, out);
  record(op, in, out);
  return out;
}

// ---------------------------------------------------------------- elementwise binary
Shape broadcast_shapes(const Shape& a, const Shape& b) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    if (da != db && da != 1 && db != 1)
      throw std::runtime_error("cannot broadcast shapes " + shape_str(a) + " and " + shape_str(b));
    out[i] = da == 1 ? db : da;
  }
  return out;
}

namespace {
template <class OpT>
Tensor binary(const Tensor& a, const Tensor& b) {
  auto op = std::make_shared<OpT>();
  Shape s;
  try {
    s = broadcast_shapes(a.shape(), b.shape());
  } catch (const std::exception& e) {
    fail(op->name(), e.what());
  }
  return apply(op, {a, b}, s);
}
}  // namespace

Tensor add(const Tensor& a, const Tensor& b) { return binary<Add>(a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary<Sub>(a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary<Mul>(a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return binary<Div>(a, b); }
Tensor equal(const Tensor& a, const Tensor& b) { return binary<Equal>(a, b); }
Tensor add(const Tensor& a, double b) { return add(a, like_scalar(a, b)); }
Tensor sub(const Tensor& a, double b) { return sub(a, like_scalar(a, b)); }
Tensor mul(const Tensor& a, double b) { return mul(a, like_scalar(a, b)); }
Tensor div(const Tensor& a, double b) { return div(a, like_scalar(a, b)); }
Tensor rsub(double a, const Tensor& b) { return sub(like_scalar(b, a), b); }

std::vector<Tensor> Add::vjp(const std::vector<Tensor>& in, const Tensor& g, const std::vector<bool>& need) {
  return {need[0] ? sum_to(g, in[0].shape()) : Tensor(), need[1] ? sum_to(g, in[1].shape()) : Tensor()};
}
std::vector<Tensor> Sub::vjp(const std::vector<Tensor>& in, const Tensor& g, const std::vector<bool>& need) {
  return {need[0] ? sum_to(g, in[0].shape()) : Tensor(), need[1] ? sum_to(neg(g), in[1].shape()) : Tensor()};
}
std::vector<Tensor> Mul::vjp(const std::vector<Tensor>& in, const Tensor& g, const std::vector<bool>& need) {
  return {need[0] ? sum_to(g * in[1], in[0].shape()) : Tensor(),
          need[1] ? sum_to(g * in[0], in[1].shape()) : Tensor()};
}
std::vector<Tensor> Div::vjp(const std::vector<Tensor>& in, const Tensor& g, const std::vector<bool>& need) {
  // d(a/b)/da = 1/b; d(a/b)/db = -a/b^2
  Tensor ga, gb;
  if (need[0]) ga = sum_to(g / in[1], in[0].shape());
  if (need[1]) gb = sum_to(neg(g * in[0] / square(in[1])), in[1].shape());
  return {ga, gb};
}
std::vector<Tensor> Equal::vjp(const std::vector<Tensor>&, const Tensor&, const std::vector<bool>&) {
  throw std::logic_error("equal is not differentiable and is never recorded");
}

// ---------------------------------------------------------------- elementwise unary
namespace {
template <class OpT, class... Args>
Tensor unary(const Tensor& x, Args... args) {
  return apply(std::make_shared<OpT>(args...), {x}, x.shape());
}
}  // namespace

Tensor neg(const Tensor& x) { return unary<Neg>(x); }
Tensor exp(const Tensor& x) { return unary<Exp>(x); }
Tensor log(const Tensor& x) { return unary<Log>(x); }
Tensor sqrt(const Tensor& x) { return unary<Sqrt>(x); }
Tensor pow(const Tensor& x, double p) { return unary<Pow>(x, p); }
Tensor square(const Tensor& x) { return x * x; }
Tensor abs(const Tensor& x) { return unary<Abs>(x); }
Tensor sign(const Tensor& x) { return unary<Sign>(x); }
Tensor relu(const Tensor& x) { return leaky_relu(x, 0.0); }
Tensor leaky_relu(const Tensor& x, double slope) { return unary<LeakyRelu>(x, slope); }
Tensor tanh(const Tensor& x) { return unary<Tanh>(x); }
Tensor sigmoid(const Tensor& x) { return unary<Sigmoid>(x); }
Tensor leaky_relu_grad(const Tensor& x, const Tensor& g, double slope) {
  auto op = std::make_shared<LeakyReluGrad>(slope);
  if (x.shape() != g.shape()) fail(op->name(), "x " + x.str() + " and g " + g.str() + " differ in shape");
  return apply(op, {x, g}, x.shape());
}

#define XGAN_UNARY_VJP(Class, expr)                                                                          \
  std::vector<Tensor> Class::vjp(const std::vector<Tensor>& in, const Tensor& g, const std::vector<bool>&) { \
    const Tensor& x = in[0];                                                                                 \
    (void)x;                                                                                                 \
    return {expr};                                                                                           \
  }
XGAN_UNARY_VJP(Neg, neg(g))
XGAN_UNARY_VJP(Exp, g* exp(x))
XGAN_UNARY_VJP(Log, g / x)
XGAN_UNARY_VJP(Sqrt, g / (sqrt(x) * 2.0))
XGAN_UNARY_VJP(Pow, g* pow(x, exponent - 1.0) * exponent)
XGAN_UNARY_VJP(Abs, g* sign(x))
XGAN_UNARY_VJP(LeakyRelu, leaky_relu_grad(x, g, slope))
// tanh' = 1 - tanh^2 and sigmoid' = s (1 - s), recomputed from x rather than saved from the
// output: saving the output would make a reference cycle output -> op -> output.
XGAN_UNARY_VJP(Tanh, g*(1.0 - square(tanh(x))))
XGAN_UNARY_VJP(Sigmoid, g* sigmoid(x) * (1.0 - sigmoid(x)))
#undef XGAN_UNARY_VJP

std::vector<Tensor> Sign::vjp(const std::vector<Tensor>&, const Tensor&, const std::vector<bool>&) {
  throw std::logic_error("sign is not differentiable and is never recorded");
}
std::vector<Tensor> LeakyReluGrad::vjp(const std::vector<Tensor>& in, const Tensor& g,
                                       const std::vector<bool>& need) {
  // Linear in its second input with the same mask; piecewise constant in x (zero derivative).
  return {need[0] ? zeros_like(in[0]) : Tensor(), need[1] ? leaky_relu_grad(in[0], g, slope) : Tensor()};
}

// ---------------------------------------------------------------- shapes
Tensor reshape(const Tensor& x, Shape shape) {
  int infer = -1;
  int64_t known = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      if (infer >= 0) fail("reshape", "only one dim can be -1 in " + shape_str(shape));
      infer = static_cast<int>(i);
    } else if (shape[i] < 0) {
      fail("reshape", "bad dim in " + shape_str(shape));
    } else {
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    if (known == 0 || x.numel() % known)
      fail("reshape", "cannot reshape " + x.str() + " to " + shape_str(shape));
    shape[static_cast<size_t>(infer)] = x.numel() / known;
  }
  if (numel_of(shape) != x.numel()) fail("reshape", "cannot reshape " + x.str() + " to " + shape_str(shape));
  // A view: same storage, new shape. Recorded like any op so gradients flow through it.
  auto op = std::make_shared<Reshape>();
  std::vector<Tensor> in{x};
  check_inputs(op->name(), in);
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = shape;
  impl->dtype = x.dtype();
  impl->storage = x.impl()->storage;
  Tensor out(impl);
  record(op, in, out);
  return out;
}
void Reshape::eval_cpu(const std::vector<Tensor>& in, Tensor& out) { out.copy_(in[0]); }
std::vector<Tensor> Reshape::vjp(const std::vector<Tensor>& in, const Tensor& g, const std::vector<bool>&) {
  return {reshape(g, in[0].shape())};
}

Tensor broadcast_to(const Tensor& x, const Shape& shape) {
  auto op = std::make_shared<BroadcastTo>();
  Shape s;
  try {
    s = broadcast_shapes(x.shape(), shape);
  } catch (const std::exception& e) {
    fail(op->name(), e.what());
  }
  if (s != shape) fail(op->name(), "cannot broadcast " + x.str() + " to " + shape_str(shape));
  if (x.shape() == shape) return x;
  return apply(op, {x}, shape);
}
std::vector<Tensor> BroadcastTo::vjp(const std::vector<Tensor>& in, const Tensor& g,
                                     const std::vector<bool>&) {
  return {sum_to(g, in[0].shape())};
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  // Sum the leading dims x has in excess, and the dims where `shape` has 1 and x does not.
  const size_t lead = x.shape().size() - shape.size();
  if (x.shape().size() < shape.size()) fail("sum_to", "cannot sum " + x.str() + " to " + shape_str(shape));
  std::vector<int> dims;
  for (size_t i = 0; i < x.shape().size(); ++i)
    if (i < lead || (shape[i - lead] == 1 && x.shape()[i] != 1)) dims.push_back(static_cast<int>(i));
  Tensor r = dims.empty() ? x : sum(x, dims, true);
  return reshape(r, shape);
}

// ---------------------------------------------------------------- reductions
Tensor sum(const Tensor& x) { return sum(x, {}, false); }
Tensor sum(const Tensor& x, std::vector<int> dims, bool keepdim) {
  dims = norm_dims("sum", dims, x.dim());
  return apply(std::make_shared<Sum>(dims, keepdim), {x}, reduced_shape(x.shape(), dims, keepdim));
}
std::vector<Tensor> Sum::vjp(const std::vector<Tensor>& in, const Tensor& g, const std::vector<bool>&) {
  return {broadcast_to(reshape(g, keepdim_shape(in[0].shape(), dims)), in[0].shape())};
}

Tensor mean(const Tensor& x) { return mean(x, {}, false); }
Tensor mean(const Tensor& x, std::vector<int> dims, bool keepdim) {
  dims = norm_dims("mean", dims, x.dim());
  int64_t n = 1;
  for (int d : dims) n *= x.shape()[static_cast<size_t>(d)];
  if (n == 0) fail("mean", "mean over zero elements of " + x.str());
  return sum(x, dims, keepdim) / static_cast<double>(n);
}

Tensor max(const Tensor& x) { return max(x, {}, false); }
Tensor max(const Tensor& x, std::vector<int> dims, bool keepdim) {
  dims = norm_dims("max", dims, x.dim());
  for (int d : dims)
    if (x.shape()[static_cast<size_t>(d)] == 0) fail("max", "max over an empty dim of " + x.str());
  return apply(std::make_shared<Max>(dims, keepdim), {x}, reduced_shape(x.shape(), dims, keepdim));
}
std::vector<Tensor> Max::vjp(const std::vector<Tensor>& in, const Tensor& g, const std::vector<bool>&) {
  // Recompute the max without history: the positions of the maxima are piecewise constant.
  Tensor m;
  {
    NoGradGuard ng;
    m = max(in[0].detach(), dims, true);
  }
  Tensor mask = equal(in[0].detach(), m);
  Tensor count = sum(mask, dims, true);
  Tensor gk = reshape(g, keepdim_shape(in[0].shape(), dims));
  return {mask * (gk / count)};
}
Tensor min(const Tensor& x) { return neg(max(neg(x))); }
Tensor min(const Tensor& x, std::vector<int> dims, bool keepdim) { return neg(max(neg(x), dims, keepdim)); }

// ---------------------------------------------------------------- convolutions
namespace {
void check_conv(const char* op, const Tensor& x, const Tensor& w, int stride, Pad2d pad) {
  if (x.dim() != 4) fail(op, "input must be [N, C, H, W], got " + x.str());
  if (w.dim() != 4) fail(op, "weight must be 4-d, got " + w.str());
  if (stride < 1 || pad.h < 0 || pad.w < 0) fail(op, "stride must be >= 1 and padding >= 0");
}
}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& w, int stride, Pad2d pad) {
  check_conv("conv2d", x, w, stride, pad);
  if (x.size(1) != w.size(1))
    fail("conv2d", "input " + x.str() + " has " + std::to_string(x.size(1)) + " channels but weight " +
                       w.str() + " expects " + std::to_string(w.size(1)));
  if (x.size(2) + 2 * pad.h < w.size(2) || x.size(3) + 2 * pad.w < w.size(3))
    fail("conv2d", "kernel " + shape_str(w.shape()) + " larger than padded input " + x.str());
  int64_t oh = (x.size(2) + 2 * pad.h - w.size(2)) / stride + 1;
  int64_t ow = (x.size(3) + 2 * pad.w - w.size(3)) / stride + 1;
  return apply(std::make_shared<Conv2d>(stride, pad), {x, w}, {x.size(0), w.size(0), oh, ow});
}
std::vector<Tensor> Conv2d::vjp(const std::vector<Tensor>& in, const Tensor& g,
                                const std::vector<bool>& need) {
  const Tensor &x = in[0], &w = in[1];
  Tensor gx, gw;
  if (need[0]) gx = conv_transpose2d(g, w, stride, pad, std::make_pair(x.size(2), x.size(3)));
  if (need[1]) gw = conv2d_weight_grad(x, g, w.size(2), w.size(3), stride, pad);
  return {gx, gw};
}

Tensor conv_transpose2d(const Tensor& x, const Tensor& w, int stride, Pad2d pad,
                        std::optional<std::pair<int64_t, int64_t>> out_hw) {
  check_conv("conv_transpose2d", x, w, stride, pad);
  if (x.size(1) != w.size(0))
    fail("conv_transpose2d", "input " + x.str() + " has " + std::to_string(x.size(1)) +
                                 " channels but weight " + w.str() + " expects " + std::to_string(w.size(0)));
  int64_t oh = (x.size(2) - 1) * stride - 2 * pad.h + w.size(2);
  int64_t ow = (x.size(3) - 1) * stride - 2 * pad.w + w.size(3);
  if (out_hw) {
    // Any size whose conv2d maps back to x's size is valid (PyTorch's output_padding < stride).
    auto [h, wd] = *out_hw;
    if (h < oh || h >= oh + stride || wd < ow || wd >= ow + stride)
      fail("conv_transpose2d",
           "output size " + std::to_string(h) + "x" + std::to_string(wd) + " impossible for " + x.str());
    oh = h, ow = wd;
  }
  if (oh < 1 || ow < 1) fail("conv_transpose2d", "empty output for " + x.str() + " and weight " + w.str());
  return apply(std::make_shared<ConvTranspose2d>(stride, pad, oh, ow), {x, w},
               {x.size(0), w.size(1), oh, ow});
}
std::vector<Tensor> ConvTranspose2d::vjp(const std::vector<Tensor>& in, const Tensor& g,
                                         const std::vector<bool>& need) {
  // y = conv2d^T(x; w), so dx = conv2d(g; w) and dw[ci,co] = sum x[ci] * g[co] shifted, which is
  // conv2d's weight gradient with the roles of input and upstream gradient swapped.
  const Tensor &x = in[0], &w = in[1];
  Tensor gx, gw;
  if (need[0]) gx = conv2d(g, w, stride, pad);
  if (need[1]) gw = conv2d_weight_grad(g, x, w.size(2), w.size(3), stride, pad);
  return {gx, gw};
}

Tensor conv2d_weight_grad(const Tensor& x, const Tensor& dy, int64_t kh, int64_t kw, int stride, Pad2d pad) {
  check_conv("conv2d_weight_grad", x, dy, stride, pad);
  if (x.size(0) != dy.size(0))
    fail("conv2d_weight_grad", "batch sizes differ: " + x.str() + " and " + dy.str());
  if ((x.size(2) + 2 * pad.h - kh) / stride + 1 != dy.size(2) ||
      (x.size(3) + 2 * pad.w - kw) / stride + 1 != dy.size(3))
    fail("conv2d_weight_grad", "upstream " + dy.str() + " does not match input " + x.str());
  return apply(std::make_shared<Conv2dWeightGrad>(stride, pad, kh, kw), {x, dy},
               {dy.size(1), x.size(1), kh, kw});
}
std::vector<Tensor> Conv2dWeightGrad::vjp(const std::vector<Tensor>& in, const Tensor& g,
                                          const std::vector<bool>& need) {
  // dw = W(x, dy) is bilinear: <g, W(x, dy)> = <dy, conv2d(x, g)> = <x, conv2d^T(dy, g)>.
  const Tensor &x = in[0], &dy = in[1];
  Tensor gx, gdy;
  if (need[0]) gx = conv_transpose2d(dy, g, stride, pad, std::make_pair(x.size(2), x.size(3)));
  if (need[1]) gdy = conv2d(x, g, stride, pad);
  return {gx, gdy};
}

// ---------------------------------------------------------------- batch norm
namespace {
// Dims reduced by batch norm and the broadcast shape of per-channel vectors.
std::vector<int> bn_dims(const Tensor& x) {
  return x.dim() == 4 ? std::vector<int>{0, 2, 3} : std::vector<int>{0};
}
Shape bn_channel_shape(const Tensor& x) {
  return x.dim() == 4 ? Shape{1, x.size(1), 1, 1} : Shape{1, x.size(1)};
}
}  // namespace

Tensor batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor running_mean,
                  Tensor running_var, bool training, double momentum, double eps) {
  const char* name = training ? "batch_norm_train" : "batch_norm_eval";
  if (x.dim() != 4 && x.dim() != 2) fail(name, "input must be [N, C, H, W] or [N, C], got " + x.str());
  const int64_t c = x.size(1);
  auto check_vec = [&](const Tensor& t, const char* what) {
    if (!t.defined()) fail(name, std::string(what) + " is undefined");
    if (t.shape() != Shape{c})
      fail(name, std::string(what) + " must be [" + std::to_string(c) + "], got " + t.str());
    if (t.dtype() != x.dtype() || t.device() != x.device())
      fail(name, std::string(what) + " " + t.str() + " does not match input " + x.str());
  };
  check_vec(gamma, "weight");
  check_vec(beta, "bias");
  if (training) {
    if (running_mean.defined() != running_var.defined())
      fail(name, "give both running statistics or neither");
    if (running_mean.defined()) {
      check_vec(running_mean, "running_mean");
      check_vec(running_var, "running_var");
    }
    return apply(std::make_shared<BatchNormTrain>(momentum, eps, running_mean, running_var), {x, gamma, beta},
                 x.shape());
  }
  check_vec(running_mean, "running_mean");
  check_vec(running_var, "running_var");
  return apply(std::make_shared<BatchNormEval>(eps),
               {x, gamma, beta, running_mean.detach(), running_var.detach()}, x.shape());
}

std::vector<Tensor> BatchNormTrain::vjp(const std::vector<Tensor>& in, const Tensor& g,
                                        const std::vector<bool>& need) {
  // Recompute the normalisation from x with differentiable ops, so the gradient of this gradient
  // includes how the batch statistics move with x (WGAN-GP differentiates through it).
  //   xhat = (x - mu) * r,  r = 1/sqrt(var + eps)
  //   dx = gamma r (g - mean(g) - xhat mean(g xhat)),  dgamma = sum(g xhat),  dbeta = sum(g)
  const Tensor &x = in[0], &gamma = in[1];
  if (!GradMode::enabled() && x.device().is_cpu()) {
    // Nothing records a graph through this gradient: one fused kernel.
    Tensor gx = need[0] ? empty(x.shape(), x.dtype()) : Tensor();
    Tensor ggamma = need[1] ? empty(gamma.shape(), x.dtype()) : Tensor();
    Tensor gbeta = need[2] ? empty(gamma.shape(), x.dtype()) : Tensor();
    cpu::batch_norm_train_backward(x, g, gamma, eps, need[0] ? &gx : nullptr, need[1] ? &ggamma : nullptr,
                                   need[2] ? &gbeta : nullptr);
    return {gx, ggamma, gbeta};
  }
  const auto dims = bn_dims(x);
  const Shape cs = bn_channel_shape(x);
  Tensor mu = mean(x, dims, true);
  Tensor xc = x - mu;
  Tensor r = pow(mean(square(xc), dims, true) + eps, -0.5);
  Tensor xhat = xc * r;
  Tensor gx, ggamma, gbeta;
  if (need[0]) {
    Tensor gxhat = g * reshape(gamma, cs);
    gx = r * (gxhat - mean(gxhat, dims, true) - xhat * mean(gxhat * xhat, dims, true));
  }
  if (need[1]) ggamma = sum(g * xhat, dims);
  if (need[2]) gbeta = sum(g, dims);
  return {gx, ggamma, gbeta};
}

std::vector<Tensor> BatchNormEval::vjp(const std::vector<Tensor>& in, const Tensor& g,
                                       const std::vector<bool>& need) {
  // An affine map per channel; running statistics are constants.
  const Tensor &x = in[0], &gamma = in[1];
  const Shape cs = bn_channel_shape(x);
  Tensor r = reshape(pow(in[4] + eps, -0.5), cs);
  Tensor gx, ggamma, gbeta;
  if (need[0]) gx = g * (reshape(gamma, cs) * r);
  if (need[1]) ggamma = sum(g * ((x - reshape(in[3], cs)) * r), bn_dims(x));
  if (need[2]) gbeta = sum(g, bn_dims(x));
  return {gx, ggamma, gbeta, Tensor(), Tensor()};
}

// ---------------------------------------------------------------- losses
namespace {
void check_loss(const char* op, const Tensor& a, const Tensor& t) {
  if (a.shape() != t.shape()) fail(op, "input " + a.str() + " and target " + t.str() + " differ in shape");
  if (a.numel() == 0) fail(op, "empty input");
}
}  // namespace

Tensor binary_cross_entropy(const Tensor& p, const Tensor& target) {
  check_loss("binary_cross_entropy", p, target);
  return apply(std::make_shared<BinaryCrossEntropy>(), {p, target}, {});
}
std::vector<Tensor> BinaryCrossEntropy::vjp(const std::vector<Tensor>& in, const Tensor& g,
                                            const std::vector<bool>& need) {
  // PyTorch's rule: dp = g (p - t) / max(p (1 - p), 1e-12) / n. max(a, lo) = lo + relu(a - lo).
  const Tensor &p = in[0], &t = in[1];
  const double n = static_cast<double>(p.numel());
  Tensor gp, gt;
  if (need[0]) {
    Tensor denom = relu(p * (1.0 - p) - 1e-12) + 1e-12;
    gp = g * (p - t) / denom / n;
  }
  if (need[1]) {
    // d/dt of -(t log p + (1 - t) log(1 - p)) with PyTorch's -100 clamp on each log.
    Tensor lp = relu(log(p) + 100.0) - 100.0;
    Tensor l1p = relu(log(1.0 - p) + 100.0) - 100.0;
    gt = g * (l1p - lp) / n;
  }
  return {gp, gt};
}

Tensor binary_cross_entropy_with_logits(const Tensor& x, const Tensor& target) {
  check_loss("binary_cross_entropy_with_logits", x, target);
  return apply(std::make_shared<BceWithLogits>(), {x, target}, {});
}
std::vector<Tensor> BceWithLogits::vjp(const std::vector<Tensor>& in, const Tensor& g,
                                       const std::vector<bool>& need) {
  // loss = mean((1 - t) x + log(1 + e^-x)):  dx = (sigmoid(x) - t) / n,  dt = -x / n
  const Tensor &x = in[0], &t = in[1];
  const double n = static_cast<double>(x.numel());
  Tensor gx, gt;
  if (need[0]) gx = g * (sigmoid(x) - t) / n;
  if (need[1]) gt = neg(g * x) / n;
  return {gx, gt};
}

// ---------------------------------------------------------------- resize
Tensor resize_bilinear(const Tensor& x, int64_t out_h, int64_t out_w) {
  if (x.dim() != 4) fail("resize_bilinear", "input must be [N, C, H, W], got " + x.str());
  if (out_h < 1 || out_w < 1 || x.size(2) < 1 || x.size(3) < 1)
    fail("resize_bilinear", "empty input or output size");
  return apply(std::make_shared<ResizeBilinear>(out_h, out_w), {x}, {x.size(0), x.size(1), out_h, out_w});
}
std::vector<Tensor> ResizeBilinear::vjp(const std::vector<Tensor>& in, const Tensor& g,
                                        const std::vector<bool>&) {
  return {resize_bilinear_grad(g, in[0].size(2), in[0].size(3))};
}
Tensor resize_bilinear_grad(const Tensor& g, int64_t in_h, int64_t in_w) {
  if (g.dim() != 4) fail("resize_bilinear_grad", "gradient must be [N, C, H, W], got " + g.str());
  if (in_h < 1 || in_w < 1) fail("resize_bilinear_grad", "empty input size");
  return apply(std::make_shared<ResizeBilinearGrad>(in_h, in_w), {g}, {g.size(0), g.size(1), in_h, in_w});
}
std::vector<Tensor> ResizeBilinearGrad::vjp(const std::vector<Tensor>& in, const Tensor& g,
                                            const std::vector<bool>&) {
  return {resize_bilinear(g, in[0].size(2), in[0].size(3))};
}

// ---------------------------------------------------------------- metrics ops: pooling, concat, slice,
// matmul, softmax (the Inception and LeNet feature extractors)
namespace {
// Output size of a k x k window with stride s along an axis of n padded by p on both sides; checks
// PyTorch's rule p <= k/2, which keeps at least one image position in every window.
int64_t pooled_size(const char* op, int64_t n, int k, int s, int p) {
  if (k < 1 || s < 1 || p < 0 || 2 * p > k)
    fail(op, "needs kernel >= 1, stride >= 1 and 0 <= padding <= kernel/2, got kernel " + std::to_string(k) +
                 ", stride " + std::to_string(s) + ", padding " + std::to_string(p));
  if (n + 2 * p < k)
    fail(op, "kernel " + std::to_string(k) + " larger than the padded size " + std::to_string(n + 2 * p));
  return (n + 2 * p - k) / s + 1;
}
Shape pooled_shape(const char* op, const Tensor& x, int k, int s, Pad2d pad) {
  if (x.dim() != 4) fail(op, "input must be [N, C, H, W], got " + x.str());
  return {x.size(0), x.size(1), pooled_size(op, x.size(2), k, s, pad.h),
          pooled_size(op, x.size(3), k, s, pad.w)};
}
}  // namespace

Tensor max_pool2d(const Tensor& x, int kernel, int stride, Pad2d pad) {
  // The first input only says where each window's maximum is; detached, it records nothing.
  return max_pool2d_select(x.detach(), x, kernel, stride == 0 ? kernel : stride, pad);
}
Tensor max_pool2d_select(const Tensor& x, const Tensor& t, int kernel, int stride, Pad2d pad) {
  const Shape s = pooled_shape("max_pool2d", x, kernel, stride, pad);
  if (t.shape() != x.shape()) fail("max_pool2d", "x " + x.str() + " and t " + t.str() + " differ in shape");
  return apply(std::make_shared<MaxPool2d>(kernel, stride, pad), {x, t}, s);
}
std::vector<Tensor> MaxPool2d::vjp(const std::vector<Tensor>& in, const Tensor& g,
                                   const std::vector<bool>& need) {
  // Linear in t; the argmax positions are piecewise constant in x (zero derivative).
  return {need[0] ? zeros_like(in[0]) : Tensor(),
          need[1] ? max_pool2d_grad(in[0], g, kernel, stride, pad) : Tensor()};
}
Tensor max_pool2d_grad(const Tensor& x, const Tensor& g, int kernel, int stride, Pad2d pad) {
  const Shape s = pooled_shape("max_pool2d_grad", x, kernel, stride, pad);
  if (g.shape() != s)
    fail("max_pool2d_grad",
         "gradient " + g.str() + " does not match the pooled shape " + shape_str(s) + " of " + x.str());
  return apply(std::make_shared<MaxPool2dGrad>(kernel, stride, pad), {x, g}, x.shape());
}
std::vector<Tensor> MaxPool2dGrad::vjp(const std::vector<Tensor>& in, const Tensor& g,
                                       const std::vector<bool>& need) {
  // <gg, scatter(x, g)> = <select(x, gg), g>: the adjoint of scattering is reading back.
  return {need[0] ? zeros_like(in[0]) : Tensor(),
          need[1] ? max_pool2d_select(in[0], g, kernel, stride, pad) : Tensor()};
}

Tensor avg_pool2d(const Tensor& x, int kernel, int stride, Pad2d pad, bool count_include_pad) {
  if (stride == 0) stride = kernel;
  const Shape s = pooled_shape("avg_pool2d", x, kernel, stride, pad);
  return apply(std::make_shared<AvgPool2d>(kernel, stride, pad, count_include_pad), {x}, s);
}
std::vector<Tensor> AvgPool2d::vjp(const std::vector<Tensor>& in, const Tensor& g, const std::vector<bool>&) {
  return {avg_pool2d_grad(g, kernel, stride, pad, count_include_pad, in[0].size(2), in[0].size(3))};
}
Tensor avg_pool2d_grad(const Tensor& g, int kernel, int stride, Pad2d pad, bool count_include_pad,
                       int64_t in_h, int64_t in_w) {
  const char* op = "avg_pool2d_grad";
  if (g.dim() != 4) fail(op, "gradient must be [N, C, H, W], got " + g.str());
  if (in_h < 1 || in_w < 1) fail(op, "empty input size");
  if (pooled_size(op, in_h, kernel, stride, pad.h) != g.size(2) ||
      pooled_size(op, in_w, kernel, stride, pad.w) != g.size(3))
    fail(op, "gradient " + g.str() + " is not the pooled shape of a " + std::to_string(in_h) + "x" +
                 std::to_string(in_w) + " input");
  return apply(std::make_shared<AvgPool2dGrad>(kernel, stride, pad, count_include_pad, in_h, in_w), {g},
               {g.size(0), g.size(1), in_h, in_w});
}
std::vector<Tensor> AvgPool2dGrad::vjp(const std::vector<Tensor>&, const Tensor& g,
                                       const std::vector<bool>&) {
  return {avg_pool2d(g, kernel, stride, pad, count_include_pad)};
}

Tensor concat(const std::vector<Tensor>& xs, int dim) {
  if (xs.empty()) fail("concat", "needs at least one input");
  for (const auto& t : xs)
    if (!t.defined()) fail("concat", "an input is undefined");
  const Shape& first = xs[0].shape();
  dim = norm_dim("concat", dim, xs[0].dim());
  Shape out = first;
  out[static_cast<size_t>(dim)] = 0;
  for (const auto& t : xs) {
    bool fits = t.dim() == xs[0].dim();
    for (int d = 0; fits && d < t.dim(); ++d) fits = d == dim || t.size(d) == first[static_cast<size_t>(d)];
    if (!fits)
      fail("concat", "along dim " + std::to_string(dim) + ", " + t.str() + " does not match " + xs[0].str());
    out[static_cast<size_t>(dim)] += t.size(dim);
  }
  if (xs.size() == 1) return xs[0];
  return apply(std::make_shared<Concat>(dim), xs, out);
}
std::vector<Tensor> Concat::vjp(const std::vector<Tensor>& in, const Tensor& g,
                                const std::vector<bool>& need) {
  std::vector<Tensor> out(in.size());
  int64_t start = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    const int64_t len = in[i].size(dim);
    if (need[i]) out[i] = slice(g, dim, start, len);
    start += len;
  }
  return out;
}

Tensor slice(const Tensor& x, int dim, int64_t start, int64_t length) {
  if (!x.defined()) fail("slice", "input is undefined");
  dim = norm_dim("slice", dim, x.dim());
  if (start < 0 || length < 0 || start + length > x.size(dim))
    fail("slice", "range [" + std::to_string(start) + ", " + std::to_string(start + length) +
                      ") outside dim " + std::to_string(dim) + " of " + x.str());
  Shape s = x.shape();
  s[static_cast<size_t>(dim)] = length;
  return apply(std::make_shared<Slice>(dim, start, length), {x}, s);
}
std::vector<Tensor> Slice::vjp(const std::vector<Tensor>& in, const Tensor& g, const std::vector<bool>&) {
  // g padded with zeros (constants) back to the input's extent along dim.
  const Tensor& x = in[0];
  std::vector<Tensor> parts;
  auto zero_block = [&](int64_t n) {
    Shape s = x.shape();
    s[static_cast<size_t>(dim)] = n;
    return zeros(s, g.dtype(), g.device());
  };
  const int64_t after = x.size(dim) - start - length;
  if (start > 0) parts.push_back(zero_block(start));
  parts.push_back(g);
  if (after > 0) parts.push_back(zero_block(after));
  return {concat(parts, dim)};
}

Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) {
  if (!a.defined() || !b.defined()) fail("matmul", "an operand is undefined");
  if (a.dim() != 2 || b.dim() != 2)
    fail("matmul", "operands must be 2-D, got " + a.str() + " and " + b.str());
  const int64_t m = trans_a ? a.size(1) : a.size(0), ka = trans_a ? a.size(0) : a.size(1);
  const int64_t kb = trans_b ? b.size(1) : b.size(0), n = trans_b ? b.size(0) : b.size(1);
  if (ka != kb)
    fail("matmul",
         "inner sizes differ: " + a.str() + (trans_a ? "^T" : "") + " @ " + b.str() + (trans_b ? "^T" : ""));
  return apply(std::make_shared<MatMul>(trans_a, trans_b), {a, b}, {m, n});
}
std::vector<Tensor> MatMul::vjp(const std::vector<Tensor>& in, const Tensor& g,
                                const std::vector<bool>& need) {
  // C = A' B' with A' = op(A), B' = op(B): dA' = G B'^T, dB' = A'^T G; transposing back where
  // the operand itself was transposed gives each case as one matmul with flags.
  const Tensor &a = in[0], &b = in[1];
  Tensor ga, gb;
  if (need[0]) ga = trans_a ? matmul(b, g, trans_b, true) : matmul(g, b, false, !trans_b);
  if (need[1]) gb = trans_b ? matmul(g, a, true, trans_a) : matmul(a, g, !trans_a, false);
  return {ga, gb};
}

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias) {
  if (!x.defined() || !w.defined()) fail("linear", "input or weight is undefined");
  if (x.dim() != 2 || w.dim() != 2 || x.size(1) != w.size(1))
    fail("linear", "input " + x.str() + " must be [N, in] and weight " + w.str() + " [out, in]");
  Tensor y = matmul(x, w, false, true);
  if (!bias.defined()) return y;
  if (bias.shape() != Shape{w.size(0)})
    fail("linear",
         "bias " + bias.str() + " must be [" + std::to_string(w.size(0)) + "] for weight " + w.str());
  return y + bias;
}

Tensor softmax(const Tensor& x, int dim) {
  if (!x.defined()) fail("softmax", "input is undefined");
  dim = norm_dim("softmax", dim, x.dim());
  return apply(std::make_shared<Softmax>(dim), {x}, x.shape());
}
std::vector<Tensor> Softmax::vjp(const std::vector<Tensor>& in, const Tensor& g, const std::vector<bool>&) {
  // y is recomputed (not saved: that would be a cycle) as an op, so second derivatives see it move.
  Tensor y = softmax(in[0], dim);
  return {y * (g - sum(g * y, {dim}, true))};
}

Tensor log_softmax(const Tensor& x, int dim) {
  if (!x.defined()) fail("log_softmax", "input is undefined");
  dim = norm_dim("log_softmax", dim, x.dim());
  // logsumexp shifted by the max for stability; the shift cancels exactly in value and
  // derivative, so it is a constant (detached).
  Tensor m = max(x.detach(), {dim}, true);
  return x - (m + log(sum(exp(x - m), {dim}, true)));
}

}  // namespace xgan
